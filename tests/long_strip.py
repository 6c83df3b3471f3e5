"""assets/long_strip.png from a long video made by `python -m flashvideo generate` (3 frames between key frames):
rows of key frames, framed pink where the prompt changes. Also prints what the eval's detector reads in every key
frame (those not read as the prompt's colour and shape; the centre's median step between the switches, the wrap
taken into account). Not a test.

    python tests/long_strip.py long.gif assets/long_strip.png [--colour red --shape circle]"""
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import evaluate  # noqa: E402
from flashvideo.data import shapes  # noqa: E402

ROWS = [range(0, 10), range(75, 85), range(120, 130), range(165, 175)]   # key-frame numbers shown, one row each
SWITCHES = {80, 170}
EVERY, PAD = 4, 4    # a key frame every 4 frames (3 in between); border width


def read(keys: np.ndarray, colour: str, shape: str) -> None:
    """The detector's reading of the key frames, at the world's 64 px."""
    m = shapes.measure(keys[:, ::keys.shape[1] // 64, ::keys.shape[2] // 64])
    off = np.flatnonzero(evaluate.off_prompt(m, colour, shape)).tolist()
    print(f"key frames not read as a {colour} {shape}: {len(off)} of {len(keys)}: {off}")
    cuts = [0, *sorted(SWITCHES), len(keys)]
    for axis in ("cx", "cy"):
        step = (np.diff(np.asarray(m[axis], float)) + 32) % 64 - 32   # on the torus: the shorter way round
        print(axis, "median step a key frame between switches:",
              " / ".join(f"{np.nanmedian(step[a:b - 1]):+.1f}" for a, b in zip(cuts, cuts[1:])))


def main(video: str, out: str, colour: str = "red", shape: str = "circle") -> None:
    keys = iio.imread(video)[..., :3][::EVERY]
    size = keys.shape[1]
    rows = []
    for row in ROWS:
        tiles = []
        for k in row:
            tile = np.full((size + 2 * PAD, size + 2 * PAD, 3), (255, 105, 180) if k in SWITCHES else 40, np.uint8)
            tile[PAD:-PAD, PAD:-PAD] = keys[k]
            tiles.append(tile)
        rows.append(np.concatenate(tiles, 1))
    image = np.concatenate(rows, 0)
    Image.fromarray(image).resize((image.shape[1] // 2, image.shape[0] // 2), Image.NEAREST).save(out)
    print(f"{len(keys)} key frames -> {out}")
    read(keys, colour, shape)


if __name__ == "__main__":
    args = sys.argv[1:]
    named = {k.lstrip("-"): v for k, v in zip(args[2::2], args[3::2])}
    main(args[0], args[1], **named)
