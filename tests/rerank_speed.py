"""The default video with 1, 2 and 4 first-frame candidates (`flashvideo.rerank`), one model, one thread, the built
step, interleaved: medians of 7 of the whole video and of the time to its first frame. A script behind a README
figure, not a test.

    python tests/rerank_speed.py [MODEL_FOLDER]      # default: checkpoints/shapes
"""
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, aot  # noqa: E402

PROMPT, REPS, CANDIDATES = "a red circle moves right", 7, (1, 2, 4)


def main(folder: str) -> None:
    torch.set_num_threads(1)
    pipe = FlashVideoPipeline.from_pretrained(folder)
    aot.load_step(pipe.model)
    settings = {n: replace(pipe.default_sampling, first_candidates=n) for n in CANDIDATES}
    for n in CANDIDATES:  # warm-up
        list(pipe.stream(PROMPT, seed=0, sampling=settings[n]))
    total, first = {n: [] for n in CANDIDATES}, {n: [] for n in CANDIDATES}
    for rep in range(REPS):
        for n in CANDIDATES:
            t0, t_first = time.perf_counter(), None
            for _ in pipe.stream(PROMPT, seed=rep, sampling=settings[n]):
                t_first = t_first or time.perf_counter() - t0
            total[n].append(time.perf_counter() - t0)
            first[n].append(t_first)
    base = statistics.median(total[1])
    print(f"{folder}, step {pipe.model.step_backend}, 1 thread")
    for n in CANDIDATES:
        t = statistics.median(total[n])
        print(f"{n} candidate(s): {t * 1e3:.0f} ms ({t / base:.2f}x), first frame {statistics.median(first[n]) * 1e3:.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/shapes")
