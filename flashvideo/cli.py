"""python -m flashvideo <command>: generate, train-tokenizer, train, eval, bench."""
from __future__ import annotations

import argparse
import sys


def add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="checkpoint folder or Hub repo id (default: the shipped model)")
    p.add_argument("--key-frames", type=int, default=4, help="serial-number frame count K")
    p.add_argument("--interp-frames", type=int, default=3, help="frames inserted between key frames n")
    p.add_argument("--inherit-ratio", type=float, default=0.2, help="inheritable-token ratio rho in [0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--first-frame", default=None, help="image file: predict from it instead of text alone")


def cmd_generate(args) -> None:
    from PIL import Image
    from tqdm import tqdm

    from .pipeline import FlashVideoPipeline, Video

    pipe = FlashVideoPipeline.from_pretrained(args.model)
    first = Image.open(args.first_frame) if args.first_frame else None
    n = args.key_frames + (args.key_frames - 1) * args.interp_frames
    frames, kinds, regions, stats = [None] * n, [None] * n, [None] * n, {}
    with tqdm(total=n, unit="frame", desc="generating") as bar:
        for ev in pipe.stream(args.prompt, key_frames=args.key_frames, interp_frames=args.interp_frames,
                              inherit_ratio=args.inherit_ratio, seed=args.seed, first_frame=first,
                              temperature=args.temperature, top_k=args.top_k):
            frames[ev.index], kinds[ev.index], regions[ev.index], stats = ev.image, ev.kind, ev.regions, ev.stats
            bar.set_postfix_str(f"{ev.kind} #{ev.index}")
            bar.update()
    import numpy as np

    video = Video(np.stack(frames), kinds, regions, stats)
    for out in args.out:
        video.save(out, fps=args.fps, scale=args.scale)
        print(f"wrote {out}")
    print(f"{n} frames in {stats['seconds']:.2f} s; tokens sampled {stats['total_sampled']}, "
          f"inherited {stats['total_inherited']}, recurrent steps {stats['total_steps']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flashvideo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="text (and optionally a first frame) -> video file")
    g.add_argument("prompt")
    add_generation_args(g)
    g.add_argument("--out", nargs="+", default=["out.gif"], help="one or more .gif / .mp4 paths")
    g.add_argument("--fps", type=int, default=8)
    g.add_argument("--scale", type=int, default=4, help="enlarge frames by pixel repetition")
    g.set_defaults(func=cmd_generate)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
