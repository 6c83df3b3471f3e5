"""`flashvideo/serving.py` against its version at an earlier commit: 1 and 16 simultaneous users of the default
video through each (`bench.users.serve_users`), interleaved in one process, medians of the wall times, and whether
every user's frames are the same images through both. A script behind a README figure, not a test.

    python tests/serving_ab.py COMMIT [--reps 5] [--model checkpoints/shapes]
"""
import argparse
import importlib.util
import statistics as st
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from flashvideo import FlashVideoPipeline, aot, serving  # noqa: E402
from flashvideo.bench import users as bench_users  # noqa: E402

PROMPT = "a red circle moves right"


def old_serving(commit: str):
    """serving.py as of `commit`, imported as a module of the package (its relative imports resolve)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:flashvideo/serving.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "serving_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("flashvideo.serving_old", path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "flashvideo"
    sys.modules[spec.name] = module   # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def frames(module, pipe, users):
    """Every user's images through `module`'s server: {user: [image, ...]}."""
    got = {}
    server = module.Server(pipe)

    def user(i):
        got[i] = [ev.image for ev in server.stream(PROMPT, key_frames=4, interp_frames=3, inherit_ratio=0.2, seed=i)]

    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("commit")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--model", default="checkpoints/shapes")
    args = ap.parse_args()
    pipe = FlashVideoPipeline.from_pretrained(args.model)
    aot.load_step(pipe.model)
    versions = {args.commit: old_serving(args.commit), "working tree": serving}
    a, b = (frames(module, pipe, 16) for module in versions.values())  # the warm-up, and the frames compared
    same = all(np.array_equal(x, y) for i in a for x, y in zip(a[i], b[i]))
    print(f"16 users' frames the same images through both: {same}")
    walls = {}
    for _ in range(args.reps):
        for name, module in versions.items():
            bench_users.Server = module.Server
            for users in (1, 16):
                walls.setdefault((name, users), []).append(bench_users.serve_users(pipe, users, PROMPT)["wall"])
    for (name, users), w in walls.items():
        print(f"{name:>14}, {users:2d} users: median {st.median(w):.3f} s  ({', '.join(f'{x:.3f}' for x in w)})")
    for users in (1, 16):
        old, new = (st.median(walls[(n, users)]) for n in versions)
        print(f"{users} users: {new / old:.2f}x the time of {args.commit}")


if __name__ == "__main__":
    main()
