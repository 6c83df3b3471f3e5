"""Does the model's own score pick out first frames that show the prompted colour and shape? First key frames drawn
alone (no lead-in, one per seed) for every seen combination, each scored by its mean log-probability under the prompt
(`rerank.log_likelihood`) and by that minus its mean log-probability under no prompt; the detector says which are
right. Prints each score's AUC (right against wrong) and how often the best of n by the mean log-probability is right.
A script behind a README figure, not a test.

    python tests/rerank_probe.py [MODEL_FOLDER] [SEEDS]     # default: checkpoints/shapes 4
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, rerank  # noqa: E402
from flashvideo.data import shapes  # noqa: E402
from flashvideo.layout import KEY  # noqa: E402


def auc(x, right):
    return float(np.mean([[a > b for b in x[~right]] for a in x[right]]))


def main(folder: str, seeds: int) -> None:
    torch.set_num_threads(1)
    pipe = FlashVideoPipeline.from_pretrained(folder)
    L, G, h = pipe.layout, pipe.config.grid, pipe.layout.header_len
    rows = []  # combination, seed, right, log p under the prompt, minus log p under no prompt
    for ci, (colour, shape, motion) in enumerate(shapes.TRAIN_COMBOS):
        text = pipe.encode_prompt(shapes.make_prompt(colour, shape, motion))
        for seed in range(seeds):
            codes = next(pipe.key_frame_codes(text, 1, 1000 * seed + ci, lead_in=0, first_candidates=1)).flatten()
            both = torch.stack([torch.cat([L.header(KEY, t, 1), codes]) for t in (text, L.null_text())])
            cond, uncond = rerank.log_likelihood(pipe.model, both, h).tolist()
            m = shapes.measure(np.asarray(pipe.decode_frame(codes.view(G, G)))[None])
            rows.append((ci, seed, m["shapes"][0] == shape and m["colours"][0] == colour, cond, cond - uncond))
    r = np.array(rows, dtype=float)
    right = r[:, 2] > 0
    print(f"{folder}: {len(r)} first frames, {right.mean():.1%} right")
    print(f"AUC, mean log-probability: {auc(r[:, 3], right):.3f}; against no prompt: {auc(r[:, 4], right):.3f}")
    for n in (2, 4, 8):
        if n <= seeds:
            best = [max((x for x in r if x[0] == ci and x[1] < n), key=lambda x: x[3])[2]
                    for ci in range(len(shapes.TRAIN_COMBOS))]
            print(f"best of {n} by mean log-probability right: {np.mean(best):.1%}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/shapes", int(sys.argv[2]) if len(sys.argv) > 2 else 4)
