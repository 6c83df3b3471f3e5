"""The default demo video with the float32 build and with the bfloat16 build of the step, interleaved, one thread.
Not a test (no timing assertions); needs both builds (`python -m flashvideo.aot build [--precision bfloat16]`).

    python tests/bf16_speed.py [RUNS]"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from flashvideo import FlashVideoPipeline, aot


def main(runs: int = 9) -> None:
    torch.set_num_threads(1)
    pipes = {}
    for precision in aot.PRECISIONS:
        pipe = FlashVideoPipeline.from_pretrained()
        if not aot.load_step(pipe.model, precision=precision):
            sys.exit(f"no {precision} build: run `python -m flashvideo.aot build --precision {precision}`")
        pipes[precision] = pipe

    def video(pipe, seed):
        t0 = time.perf_counter()
        v = pipe("a red circle moves right", key_frames=4, interp_frames=3, inherit_ratio=0.2, seed=seed)
        return time.perf_counter() - t0, v.frames

    for pipe in pipes.values():
        video(pipe, 0)  # warm-up
    times, same = {p: [] for p in pipes}, []
    for seed in range(runs):
        frames = {}
        for precision, pipe in pipes.items():
            t, frames[precision] = video(pipe, seed)
            times[precision].append(t)
        same.append(np.mean([np.array_equal(a, b) for a, b in zip(*frames.values())]))
    for precision, ts in times.items():
        print(f"{precision}: median {np.median(ts) * 1e3:.0f} ms over {runs} runs")
    ratio = np.median(np.array(times["bfloat16"]) / np.array(times["float32"]))
    print(f"bfloat16 / float32 (median of per-run ratios): {ratio:.2f}; frames identical: {np.mean(same):.0%}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
