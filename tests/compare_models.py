"""Model folders compared on the default video, paired: the eval's main measures on every seen (129) and held-out
(15) combination at each seed (4 key frames, 3 in between, rho 0.2, each model's default sampling, its built step).
Not a test (no assertions); the README quotes its output.

    python tests/compare_models.py 2,3,4 checkpoints/shapes runs/stage13-export [--out runs/compare.json]
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, evaluate  # noqa: E402
from flashvideo.data import shapes  # noqa: E402

MEASURES = ["colour", "shape", "motion", "forward_steps", "net_within_25", "area_cv_median", "flicker_frames",
            "garbled_frames", "first_frame_right"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("seeds", help="comma-separated seeds")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    for folder in args.models:
        pipe = FlashVideoPipeline.from_pretrained(folder)
        if not pipe.compile("aoti"):
            raise SystemExit(f"no built step for {folder}: python -m flashvideo.aot build --model {folder}")
        t0 = time.perf_counter()
        res = results[folder] = {}
        for seed in seeds:
            for part, combos in (("seen", shapes.TRAIN_COMBOS), ("held", shapes.HELDOUT_COMBOS)):
                res[f"{part}{seed}"] = evaluate.summarise(evaluate.generated(pipe, combos, seed, part,
                                                                             inherit_ratio=0.2))
        print(f"{folder} ({time.perf_counter() - t0:.0f} s); per seed {seeds}")
        for part in ("seen", "held"):
            for k in MEASURES:
                vals = [res[f"{part}{s}"][k] for s in seeds]
                print(f"  {part} {k:18s} " + " ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in vals))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
