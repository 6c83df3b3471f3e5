"""assets/long_strip.png from a long video made by `python -m flashvideo generate` (3 frames between key frames):
rows of key frames, framed pink where the prompt changes. Not a test.

    python tests/long_strip.py long.gif assets/long_strip.png"""
import sys

import imageio.v3 as iio
import numpy as np
from PIL import Image

ROWS = [range(0, 10), range(75, 85), range(120, 130), range(165, 175)]   # key-frame numbers shown, one row each
SWITCHES = {80, 170}
EVERY, PAD = 4, 4    # a key frame every 4 frames (3 in between); border width


def main(video: str, out: str) -> None:
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


if __name__ == "__main__":
    main(*sys.argv[1:3])
