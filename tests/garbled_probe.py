"""Where a model's garbled frames are: every seen and held-out combination at the given seeds on the default video
(as `tests/compare_models.py` draws them), and for each video with a garbled frame (the eval's rule), its frames'
object areas and stray shares, and its frames side by side as a PNG to look at. A script behind a README figure,
not a test.

    python tests/garbled_probe.py checkpoints/shapes 2,3,4 runs/garbled     # writes OUT/garbled.json, OUT/*.png
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, evaluate  # noqa: E402
from flashvideo.data import shapes  # noqa: E402
from flashvideo.timeline import Timeline  # noqa: E402


def main(folder: str, seeds: list[int], out: Path) -> None:
    pipe = FlashVideoPipeline.from_pretrained(folder)
    if not pipe.compile("aoti"):
        raise SystemExit(f"no built step for {folder}: python -m flashvideo.aot build --model {folder}")
    out.mkdir(parents=True, exist_ok=True)
    tl, found = Timeline(4, 3), []
    for seed in seeds:
        for part, combos in (("seen", shapes.TRAIN_COMBOS), ("held", shapes.HELDOUT_COMBOS)):
            for i, (c, s, mo) in enumerate(combos):
                video = pipe(shapes.make_prompt(c, s, mo), key_frames=4, interp_frames=3, seed=seed + i,
                             inherit_ratio=0.2)
                scores = evaluate.video_scores(video.frames, tl.times, c, s, mo)
                if not scores["garbled"]:
                    continue
                m = shapes.measure(video.frames)
                found.append({"seed": seed, "part": part, "index": i, "prompt": f"{c} {s} {mo}",
                              "garbled": scores["garbled"], "first_right": scores["first_right"],
                              "area": m["area"].astype(int).tolist(), "stray": np.round(m["stray"], 2).tolist()})
                print(found[-1], flush=True)
                strip = Image.fromarray(np.concatenate(list(video.frames), 1))
                strip.resize((strip.width * 3, strip.height * 3), Image.NEAREST).save(out / f"{seed}_{part}_{i}.png")
    (out / "garbled.json").write_text(json.dumps(found, indent=1))
    print(f"{sum(f['garbled'] for f in found)} garbled frames in {len(found)} videos")


if __name__ == "__main__":
    main(sys.argv[1], [int(s) for s in sys.argv[2].split(",")], Path(sys.argv[3]))
