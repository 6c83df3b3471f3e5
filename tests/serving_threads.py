"""Serving's batches on 1 and on 2 threads (`torch_threads` in `Server._decode_together` replaced), 1 and 16
simultaneous users of the default video, interleaved, 3 runs each. A script behind a README figure, not a test.

    python tests/serving_threads.py [MODEL_FOLDER]      # default: checkpoints/shapes
"""
import statistics as st
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, aot, sampling, serving  # noqa: E402
from flashvideo.bench.users import serve_users  # noqa: E402

torch.set_num_threads(2)
pipe = FlashVideoPipeline.from_pretrained(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/shapes")
aot.load_step(pipe.model)
P = "a red circle moves right"


def with_threads(n):
    serving.torch_threads = lambda _: sampling.torch_threads(n)


res = {}
for n in (1, 2):
    with_threads(n)
    serve_users(pipe, 4, P)  # warm-up
for rep in range(3):
    for n in (1, 2):
        with_threads(n)
        for users in (1, 16):
            r = serve_users(pipe, users, P)
            res.setdefault((n, users), []).append(r["wall"])
for k, v in sorted(res.items()):
    print(f"threads {k[0]}, {k[1]} users: median {st.median(v):.3f} s  {[round(x, 3) for x in v]}")
