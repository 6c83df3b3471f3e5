"""The default video with other first-frame settings, one model, one thread, the built step, interleaved: medians of
7 of the whole video and of the time to its first frame. By default 1, 2 and 4 first-frame candidates
(`flashvideo.rerank`); or each JSON object given, a change to the model's own sampling (the first is the baseline of
the ratios). A script behind a README figure, not a test.

    python tests/rerank_speed.py [MODEL_FOLDER] [SETTINGS_JSON ...]   # default: checkpoints/shapes
    python tests/rerank_speed.py checkpoints/shapes '{"centre_first": false}' '{"centre_first": true}'
"""
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, aot  # noqa: E402

PROMPT, REPS = "a red circle moves right", 7
CANDIDATES = ['{"first_candidates": 1}', '{"first_candidates": 2}', '{"first_candidates": 4}']


def main(folder: str, variants: list[str]) -> None:
    torch.set_num_threads(1)
    pipe = FlashVideoPipeline.from_pretrained(folder)
    aot.load_step(pipe.model)
    settings = {v: replace(pipe.default_sampling, **json.loads(v)) for v in variants}
    for s in settings.values():  # warm-up
        list(pipe.stream(PROMPT, seed=0, sampling=s))
    total, first = {v: [] for v in variants}, {v: [] for v in variants}
    for rep in range(REPS):
        for v, s in settings.items():
            t0, t_first = time.perf_counter(), None
            for _ in pipe.stream(PROMPT, seed=rep, sampling=s):
                t_first = t_first or time.perf_counter() - t0
            total[v].append(time.perf_counter() - t0)
            first[v].append(t_first)
    base = statistics.median(total[variants[0]])
    print(f"{folder}, step {pipe.model.step_backend}, 1 thread, the model's sampling {pipe.default_sampling}")
    for v in variants:
        t = statistics.median(total[v])
        print(f"{v}: {t * 1e3:.0f} ms ({t / base:.2f}x), first frame {statistics.median(first[v]) * 1e3:.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/shapes", sys.argv[2:] or CANDIDATES)
