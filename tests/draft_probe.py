"""Does drafted decoding draw what token-by-token decoding draws? Not a test (no assertions); the README quotes its
output. For 40 training prompts, 5 key frames each (no lead-in), drafted (the default, draft_len 8) and then token by
token (draft_len 0): the mean log-probability per code of the codes drawn, under the distribution they are drawn
from (guidance 1.5 on the model's logits, temperature 0.8), by one forward pass over each video. A sampler that drew
from another distribution would move it; the two should agree within their standard errors.

    python tests/draft_probe.py
"""
import statistics as st
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, aot
from flashvideo.data import shapes
from flashvideo.sampler import guide
torch.set_num_threads(1)
pipe = FlashVideoPipeline.from_pretrained()
aot.load_step(pipe.model)
L = pipe.layout
combos = shapes.TRAIN_COMBOS[:40]
for dl in (8, 0):
    pipe.draft_len = dl
    lls = []
    for i, (c, s, m) in enumerate(combos):
        text = pipe.encode_prompt(shapes.make_prompt(c, s, m))
        codes = torch.stack(list(pipe.key_frame_codes(text, 5, 1000 + i, lead_in=0)))
        tok, unc = L.key_sequence(text, codes)[None], L.key_sequence(L.null_text(), codes)[None]
        with torch.no_grad():
            lc, lu = pipe.model(tok)[0], pipe.model(unc)[0]
        lp = (guide(lc[0].float(), lu[0].float(), 1.5) / 0.8).log_softmax(-1)
        tot = []
        for k in range(5):
            pos = L.code_positions(k)
            idx = torch.arange(pos.start, pos.stop)
            tot.append(lp[idx - 1, codes[k].flatten()].mean().item())
        lls.append(sum(tot) / 5)
    print(dl, f"mean log p per code {st.mean(lls):.4f} ± {st.stdev(lls)/len(lls)**0.5:.4f}")
