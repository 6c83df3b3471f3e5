"""One model's videos drawn by several tokenizer decoders, paired: a decoder trained on with its codes kept
(`train-tokenizer --decoder-of`) changes no code, so every video is sampled once and its codes drawn by each
decoder. The eval's main measures on every seen (129) and held-out (15) combination at each seed (the default
video: 4 key frames, 3 in between, rho 0.2, the model's default sampling, its built step). Not a test (no
assertions); the README quotes its output.

    python tests/compare_decoders.py 2,3,4 checkpoints/shapes runs/tokdec3 [--out runs/compare_decoders.json]

The first decoder is the model folder's own; each further folder must encode frames to the same codes.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from compare_models import MEASURES  # noqa: E402

from flashvideo import FlashVideoPipeline, evaluate  # noqa: E402
from flashvideo.data import shapes  # noqa: E402
from flashvideo.timeline import Timeline  # noqa: E402
from flashvideo.tokenizer import read_tokenizer  # noqa: E402


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("seeds", help="comma-separated seeds")
    ap.add_argument("model")
    ap.add_argument("tokenizers", nargs="+", help="tokenizer folders whose decoders draw the model's codes too")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    pipe = FlashVideoPipeline.from_pretrained(args.model)
    if not pipe.compile("aoti"):
        raise SystemExit(f"no built step for {args.model}: python -m flashvideo.aot build --model {args.model}")
    decoders = {args.model: pipe.tokenizer, **{f: read_tokenizer(f) for f in args.tokenizers}}
    probe = shapes.make_clip(0, [0, 1, 2, 3], "all", pipe.tokenizer.image_size).frames
    for folder, tok in decoders.items():
        if not torch.equal(tok.encode_frames(probe), pipe.tokenizer.encode_frames(probe)):
            raise SystemExit(f"{folder} encodes frames to other codes than {args.model}'s tokenizer")

    drawn = []                                    # each frame's codes, in the order the pipeline decodes them
    decode = pipe.decode_frame
    pipe.decode_frame = lambda codes: (drawn.append(codes.clone()), decode(codes))[1]
    tl = Timeline(4, 3)
    scores = {f: {} for f in decoders}
    t0 = time.perf_counter()
    for seed in seeds:
        for part, combos in (("seen", shapes.TRAIN_COMBOS), ("held", shapes.HELDOUT_COMBOS)):
            for i, (c, s, mo) in enumerate(combos):
                drawn.clear()
                events = list(pipe.stream(shapes.make_prompt(c, s, mo), key_frames=4, interp_frames=3,
                                          seed=seed + i, inherit_ratio=0.2))
                assert len(events) == len(drawn) == len(tl.times)
                codes = torch.stack([drawn[k] for k in np.argsort([ev.index for ev in events])])
                for folder, tok in decoders.items():
                    frames = np.stack([tok.decode_frames(c_[None])[0] for c_ in codes])
                    scores[folder].setdefault(f"{part}{seed}", []).append(evaluate.video_scores(frames, tl.times, c, s, mo))
    print(f"{args.model}: {sum(len(v) for v in scores[args.model].values())} videos in {time.perf_counter() - t0:.0f} s")
    results = {f: {k: evaluate.summarise(v) for k, v in parts.items()} for f, parts in scores.items()}
    for folder, res in results.items():
        print(f"{folder}; per seed {seeds}")
        for part in ("seen", "held"):
            for k in MEASURES:
                vals = [res[f"{part}{s}"][k] for s in seeds]
                pooled = evaluate.summarise(sum((scores[folder][f"{part}{s}"] for s in seeds), []))[k]
                print(f"  {part} {k:18s} " + " ".join(map(_fmt, vals)) + f"  pooled {_fmt(pooled)}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
