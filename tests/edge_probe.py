"""Where do frames go off the prompt? The default video of every seen combination (4 key frames, 3 in between,
rho 0.2, the model's default sampling and built step, seed = SEED + the combination's index), each frame read by
the eval's detector and counted by whether its object touches the frame's edge, first frames apart. Not a test;
the README quotes its output.

    python tests/edge_probe.py [MODEL_FOLDER] [SEED] [SETTINGS_JSON]   # default: checkpoints/shapes 2
    python tests/edge_probe.py checkpoints/shapes 2 '{"centre_first": false}'
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, evaluate  # noqa: E402
from flashvideo.data import shapes  # noqa: E402


def touches_edge(frame: np.ndarray) -> bool:
    """Whether anything but the background (the frame's median colour) lies on the frame's border."""
    ink = np.abs(frame.astype(int) - np.median(frame.reshape(-1, 3), 0)).sum(-1) > 60
    return bool(ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any())


def main(folder: str, seed: int, change: str) -> None:
    pipe = FlashVideoPipeline.from_pretrained(folder)
    if not pipe.compile("aoti"):
        raise SystemExit(f"no built step for {folder}: python -m flashvideo.aot build --model {folder}")
    sampling = replace(pipe.default_sampling, **json.loads(change))
    counts = {}  # (first frame, touches an edge) -> [off the prompt, frames]
    off_first, off_in_wrong_first, off_all = 0, 0, 0
    for i, (colour, shape, motion) in enumerate(shapes.TRAIN_COMBOS):
        frames = np.stack(pipe(shapes.make_prompt(colour, shape, motion), key_frames=4, interp_frames=3,
                               inherit_ratio=0.2, seed=seed + i, sampling=sampling).frames)
        off = evaluate.off_prompt(shapes.measure(frames), colour, shape)
        for j, frame in enumerate(frames):
            n = counts.setdefault((j == 0, touches_edge(frame)), [0, 0])
            n[0], n[1] = n[0] + int(off[j]), n[1] + 1
        off_all += int(off.sum())
        if off[0]:
            off_first, off_in_wrong_first = off_first + 1, off_in_wrong_first + int(off.sum())
    print(f"{folder} {sampling}, seed {seed}: {off_all} frames off the prompt; {off_first} videos with a wrong first "
          f"frame hold {off_in_wrong_first} of them")
    for (first, edge), (off, n) in sorted(counts.items()):
        print(f"{'first' if first else 'later'} frames {'touching' if edge else 'clear of'} the edge: "
              f"{off} of {n} off the prompt ({off / n:.1%})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/shapes", int(sys.argv[2]) if len(sys.argv) > 2 else 2,
         sys.argv[3] if len(sys.argv) > 3 else "{}")
