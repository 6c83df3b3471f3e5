"""The first key frame's candidates centred: one read of the rolled candidates and their twins (`rerank`, now)
against the earlier way, written out here: read the candidates as drawn to score them, then feed the kept one
rolled (`centring.recentre`). The shipped model's built pass, two guided candidates, one thread; 30 interleaved
repeats, medians. Not a test (no assertions); the README quotes its output.

    python tests/centred_read_speed.py
"""
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, centring, rerank  # noqa: E402
from flashvideo.layout import KEY, UNKNOWN  # noqa: E402
from flashvideo.pipeline import _generator  # noqa: E402

torch.set_num_threads(1)
pipe = FlashVideoPipeline.from_pretrained()
if not pipe.compile("aoti"):
    raise SystemExit("no built step: python -m flashvideo.aot build")
L, h, G, s = pipe.layout, pipe.layout.header_len, pipe.config.grid, pipe.default_sampling
text = pipe.encode_prompt("red circle moves right")
plan = torch.cat([L.header(KEY, text, 1), torch.full((G * G,), UNKNOWN)])[None]
twin = torch.cat([L.header(KEY, L.null_text(), 1), torch.full((G * G,), UNKNOWN)])[None]
n = 2
many = pipe._decoder([_generator(c) for c in range(n)], s, None)
tokens = many.run(plan.expand(n, -1).clone(), twin.expand(n, -1).clone())


def old():
    k = int(rerank.score(rerank.read(pipe.model, tokens)[0], tokens, h).argmax())
    dec = pipe._decoder([_generator(0)], s, None)
    done = tokens[k:k + 1]
    rolled = centring.centred(done[0, h:].view(G, G)).flatten()
    dec.run(torch.cat([plan[0, :h], rolled])[None], torch.cat([twin[0, :h], rolled])[None])


def new():
    codes = torch.stack([centring.centred(c.view(G, G)).flatten() for c in tokens[:, h:]])
    t = torch.cat([plan[:, :h].expand(n, -1), codes], 1)
    rows = torch.cat([t, torch.cat([twin[:, :h].expand(n, -1), codes], 1)])
    logits, state = rerank.read(pipe.model, rows)
    int(rerank.score(logits[:n], t, h).argmax())


res = {"earlier: read, then feed": [], "now: one read": []}
for _ in range(3):
    old()
    new()
for _ in range(30):
    for name, f in zip(res, (old, new)):
        t0 = time.perf_counter()
        f()
        res[name].append(time.perf_counter() - t0)
for name, v in res.items():
    print(f"{name}: {statistics.median(v) * 1e3:.2f} ms")
