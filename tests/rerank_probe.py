"""Does the model's own score pick out good first frames? First key frames drawn alone (no lead-in, no centring, one
per seed) for every seen combination, each scored three ways: the mean log-probability of all its codes under the
prompt, that minus their mean log-probability under no prompt, and `rerank.score` (the mean log-probability of its
content codes only). The detector says which frames are right (the prompt's colour and shape) and which are
garbled (the eval's rule: no object, or stray pixels). Prints each score's AUC, right against wrong and clean
against garbled, and what the best of n by each score keeps. A script behind a README figure, not a test.

    python tests/rerank_probe.py [MODEL_FOLDER] [SEEDS]     # default: checkpoints/shapes 4
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, evaluate, rerank  # noqa: E402
from flashvideo.data import shapes  # noqa: E402
from flashvideo.layout import KEY  # noqa: E402


def auc(x, positive):
    a, b = x[positive], x[~positive]
    return float(((a[:, None] > b[None]) + 0.5 * (a[:, None] == b[None])).mean())


def main(folder: str, seeds: int) -> None:
    torch.set_num_threads(1)
    pipe = FlashVideoPipeline.from_pretrained(folder)
    pipe.compile("aoti")
    L, G, h = pipe.layout, pipe.config.grid, pipe.layout.header_len
    rows = []  # combination, seed, right, garbled, then the three scores
    for ci, (colour, shape, motion) in enumerate(shapes.TRAIN_COMBOS):
        text = pipe.encode_prompt(shapes.make_prompt(colour, shape, motion))
        for seed in range(seeds):
            codes = next(pipe.key_frame_codes(text, 1, 1000 * seed + ci, lead_in=0, first_candidates=1,
                                              centre_first=False)).flatten()
            both = torch.stack([torch.cat([L.header(KEY, t, 1), codes]) for t in (text, L.null_text())])
            logits, _ = rerank.read(pipe.model, both)
            cond, uncond = rerank.log_probabilities(logits, both, h).mean(1).tolist()
            content = float(rerank.score(logits[:1], both[:1], h))
            m = shapes.measure(np.asarray(pipe.decode_frame(codes.view(G, G)))[None])
            garbled = m["area"][0] == 0 or m["stray"][0] > evaluate.GARBLED_STRAY
            right = m["shapes"][0] == shape and m["colours"][0] == colour
            rows.append((ci, seed, right, garbled, cond, cond - uncond, content))
    r = np.array(rows, dtype=float)
    right, garbled = r[:, 2] > 0, r[:, 3] > 0
    print(f"{folder}: {len(r)} first frames, {right.mean():.1%} right, {int(garbled.sum())} garbled")
    for col, name in ((4, "mean log-probability"), (5, "against no prompt"), (6, "rerank.score (content codes)")):
        line = f"{name}: AUC right {auc(r[:, col], right):.3f}, clean {auc(r[:, col], ~garbled):.3f}"
        for n in (2, 4):
            if n <= seeds:
                kept = [max((x for x in r if x[0] == ci and g <= x[1] < g + n), key=lambda x: x[col])
                        for ci in range(len(shapes.TRAIN_COMBOS)) for g in range(0, seeds - n + 1, n)]
                line += f"; best of {n}: right {np.mean([k[2] for k in kept]):.1%}, garbled {int(sum(k[3] for k in kept))} of {len(kept)}"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/shapes", int(sys.argv[2]) if len(sys.argv) > 2 else 4)
