"""Does a model keep its object over long streams? Not a test (no assertions); the README quotes its output.

    python tests/long_probe.py [MODEL ...]      # default: the shipped model; about 5 min per model on 1 core

For each model: 12 streams (3 prompts x 4 seeds) of 150 key frames without in-between frames, the prompt switching
at key frame 60 (same object, new motion), sampled with the model's defaults on the eager step (so that models are
compared alike). Prints, per stream and in all, the key frames in which `shapes.measure` finds no object."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from flashvideo import FlashVideoPipeline
from flashvideo.data import shapes
from flashvideo.endless import EndlessStream

PROMPTS = [("a red circle moves right", "a red circle moves down"), ("a blue square moves up", "a blue square moves left"),
           ("a green triangle moves left", "a green triangle moves up")]
SWITCH_AT, AFTER, SEEDS = 60, 90, range(4)


def main():
    torch.set_num_threads(1)
    for model in sys.argv[1:] or [None]:
        pipe = FlashVideoPipeline.from_pretrained(model)
        lost = []
        for seed in SEEDS:
            for prompt, then in PROMPTS:
                stream = EndlessStream(pipe, prompt, interp_frames=0, seed=seed)
                frames = [e.image for e in stream.frames(SWITCH_AT)]
                stream.prompt = then
                frames += [e.image for e in stream.frames(AFTER)]
                empty = np.flatnonzero(shapes.measure(np.stack(frames))["area"] == 0)
                lost.append(len(empty))
                print(model or "shipped", seed, prompt, "empty key frames:", len(empty), "first:", empty[:1], flush=True)
        print(f"== {model or 'shipped'}: streams with an empty key frame: {sum(n > 0 for n in lost)} of {len(lost)}; "
              f"empty key frames in all: {sum(lost)} of {(SWITCH_AT + AFTER) * len(lost)}", flush=True)


if __name__ == "__main__":
    main()
