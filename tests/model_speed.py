"""The default video (4 key frames, 3 in between, rho 0.2, each model's default sampling) from two or more model
folders, each with its float32 built step (`python -m flashvideo.aot build --model FOLDER` first), timed interleaved:
medians of 7, and each model's time over the first one's. A script behind a README figure, not a test.

    python tests/model_speed.py checkpoints/shapes path/to/other_model
"""
import sys
import time

import numpy as np
import torch

from flashvideo import FlashVideoPipeline, aot

PROMPT, REPS = "a red circle moves right", 7


def main(folders):
    torch.set_num_threads(1)
    pipes = {}
    for folder in folders:
        pipe = FlashVideoPipeline.from_pretrained(folder)
        aot.load_step(pipe.model, precision="float32")
        pipe(PROMPT, seed=0)  # warm-up
        pipes[folder] = pipe
    total, first = {f: [] for f in pipes}, {f: [] for f in pipes}
    for rep in range(REPS):
        for folder, pipe in pipes.items():
            t0, t_first = time.perf_counter(), None
            for _ in pipe.stream(PROMPT, seed=rep):
                t_first = t_first or time.perf_counter() - t0
            total[folder].append(time.perf_counter() - t0)
            first[folder].append(t_first)
    base = np.median(total[folders[0]])
    for folder, pipe in pipes.items():
        t = np.median(total[folder])
        print(f"{folder} ({pipe.model.config.n_layers} layers, step {pipe.model.step_backend}): {t * 1e3:.0f} ms = "
              f"{13 / t:.1f} frames/s, first frame {np.median(first[folder]) * 1e3:.0f} ms, {t / base:.2f}x the first")


if __name__ == "__main__":
    main(sys.argv[1:] or ["checkpoints/shapes"])
