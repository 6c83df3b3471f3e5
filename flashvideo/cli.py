"""python -m flashvideo <command>: generate, train-tokenizer, train, eval, bench."""
from __future__ import annotations

import argparse
import sys


MAX_FPS = 60
MAX_SCALE = 16
MAX_OUTPUT_BYTES = 2**30          # the frames of one output, enlarged by --scale, in memory at once
OUTPUT_SUFFIXES = (".gif", ".mp4")


def add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="checkpoint folder or Hub repo id (default: the shipped model)")
    p.add_argument("--key-frames", type=int, default=4, help="serial-number frame count K")
    p.add_argument("--interp-frames", type=int, default=3, help="frames inserted between key frames n")
    p.add_argument("--inherit-ratio", type=float, default=0.2, help="inheritable-token ratio rho in [0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0,
                   help="0 = greedy, else at least 0.01 (a tiny positive value is refused, not rounded)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely codes; 0 = off (as in the app)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: keep codes up to this mass (omit: off)")
    p.add_argument("--guidance-scale", type=float, default=1.0,
                   help="classifier-free guidance s: uncond + s (cond - uncond); 1 = off (one pass)")
    p.add_argument("--negative-prompt", default=None, help="with guidance: steer away from this prompt (default: none)")
    p.add_argument("--first-frame", default=None,
                   help="image file (PNG, JPEG, WebP, GIF, BMP; at most 5 MB and 4096x4096 px): predict from it")


def check_outputs(outs, fps, scale) -> list:
    """--out, --fps and --scale, checked before anything is loaded or generated: every output a .gif or
    .mp4 path (not a folder) in an existing folder where a file can be created (tried, then removed)."""
    import tempfile
    from pathlib import Path

    from .demo import as_int

    as_int("--fps", fps, 1, MAX_FPS)
    as_int("--scale", scale, 1, MAX_SCALE)
    paths = []
    for out in outs:
        if not out.strip():
            raise ValueError(f"--out: an empty path; give a file name ending in {' or '.join(OUTPUT_SUFFIXES)}")
        path = Path(out)
        if path.is_dir():
            raise ValueError(f"--out {out} is a folder; give a file name ending in {' or '.join(OUTPUT_SUFFIXES)}")
        if path.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError(f"--out {out}: the file must end in {' or '.join(OUTPUT_SUFFIXES)}, "
                             f"not {path.suffix or 'no extension'}")
        if path.exists() and not path.is_file():
            raise ValueError(f"--out {out} exists and is not a regular file")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise ValueError(f"--out {out}: the folder {parent} does not exist")
        try:
            with tempfile.NamedTemporaryFile(dir=parent, prefix=".flashvideo-probe-"):
                pass
        except OSError as e:
            raise ValueError(f"--out {out}: cannot write in {parent} ({e.strerror or e})") from None
        paths.append(path)
    return paths


def cmd_generate(args) -> None:
    """Every argument is checked before the video is generated: the outputs first (no model needed), then
    the first frame (bounded, never a pipe or a device), then the model's own limits."""
    from tqdm import tqdm

    from . import demo
    from .pipeline import FlashVideoPipeline, Video
    from .sampler import MAX_TEMPERATURE, SamplingSettings
    from .timeline import Timeline

    demo.limit_image_decoding()
    outs = check_outputs(args.out, args.fps, args.scale)
    first = None
    if args.first_frame is not None:
        try:
            first = demo.load_first_frame(args.first_frame)
        except ValueError as e:
            raise ValueError(f"--first-frame {args.first_frame}: {e}") from None
    pipe = FlashVideoPipeline.from_pretrained(args.model)
    c = pipe.config
    demo.check_prompt(pipe, args.prompt)
    key_frames = demo.as_int("--key-frames", args.key_frames, 2, c.max_key_frames)
    interp_frames = demo.as_int("--interp-frames", args.interp_frames, 0, c.max_interp_frames)
    demo.as_float("--inherit-ratio", args.inherit_ratio, 0.0, 1.0)
    demo.as_int("--seed", args.seed, 0, 2**63 - 1)
    temperature = demo.as_temperature(args.temperature, MAX_TEMPERATURE, "--temperature")
    top_k = demo.as_top_k(args.top_k, c.n_codes, "--top-k")
    sampling = SamplingSettings(temperature=temperature, top_k=top_k, top_p=args.top_p,
                                guidance_scale=args.guidance_scale)
    pipe.check_settings(key_frames, interp_frames, args.inherit_ratio, seed=args.seed, sampling=sampling,
                        negative_prompt=args.negative_prompt)
    n = Timeline(key_frames, interp_frames).n_frames
    side = c.image_size * args.scale
    if n * side * side * 3 > MAX_OUTPUT_BYTES:
        raise ValueError(f"--scale {args.scale}: {n} frames of {side}x{side} px would take "
                         f"{n * side * side * 3 / 2**30:.1f} GiB; at most {MAX_OUTPUT_BYTES / 2**30:g} GiB "
                         f"(lower --scale, --key-frames or --interp-frames)")
    events = pipe.stream(args.prompt, key_frames=key_frames, interp_frames=interp_frames,
                         inherit_ratio=args.inherit_ratio, seed=args.seed, first_frame=first,
                         sampling=sampling, negative_prompt=args.negative_prompt)
    video = Video.collect(tqdm(events, total=n, unit="frame", desc="generating"), n)
    stats = video.stats
    for out in outs:
        video.save(out, fps=args.fps, scale=args.scale)
        print(f"wrote {out}")
    print(f"{n} frames in {stats['seconds']:.2f} s; tokens sampled {stats['total_sampled']}, "
          f"inherited {stats['total_inherited']}, recurrent steps {stats['total_steps']}")


def cmd_train_tokenizer(args) -> None:
    """Train the tokenizer backend `args.backend` (default "vq"; any name in `tokenizer.TOKENIZERS`) on the
    world's frames, score it on the world's held-out frames, and write it with its metrics."""
    import json
    from pathlib import Path

    from .tokenizer import WordTokenizer, tokenizer_class
    from .train_tokenizer import evaluate_tokenizer
    from .world import frame_stream, make_world

    world = make_world(args.data, args.image_size)
    backend = tokenizer_class(getattr(args, "backend", "vq"))
    vq_kwargs = dict(image_size=args.image_size, downsample=args.downsample, n_codes=args.codes,
                     code_dim=args.code_dim, channels=args.channels)
    tokenizer, metrics = backend.train(frame_stream(world, args.seed), WordTokenizer(world.vocabulary(), slots=world.grammar()),
                                       vq_kwargs=vq_kwargs, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                       seed=args.seed)
    report = {"train": {k: v for k, v in metrics.items() if k != "history"},
              "heldout": evaluate_tokenizer(tokenizer, world.heldout_frames())}
    out = Path(args.out)
    tokenizer.save(out)
    (out / "tokenizer_metrics.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report["heldout"]), f"-> {out}")


def cmd_train(args) -> None:
    import json

    from .train import TrainConfig, train

    model = json.loads(args.model_config) if args.model_config else {}
    tc = TrainConfig(out=args.out, tokenizer=args.tokenizer, data=args.data, steps=args.steps,
                     batch_size=args.batch_size, batch_tokens=args.batch_tokens, p_uncond=args.p_uncond,
                     p_interp=args.p_interp, p_stream=args.p_stream, lr=args.lr, warmup=args.warmup, seed=args.seed,
                     save_every=args.save_every, sample_every=args.sample_every, log_every=args.log_every,
                     export=args.export or "", resume=args.resume, stop_at=args.stop_at, model=model)
    train(tc)


def cmd_eval(args) -> None:
    from .evaluate import main as eval_main

    eval_main(args)


def cmd_bench(args) -> None:
    from .bench import run

    run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flashvideo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="text (and optionally a first frame) -> video file")
    g.add_argument("prompt")
    add_generation_args(g)
    g.add_argument("--out", nargs="+", default=["out.gif"], help="one or more .gif / .mp4 paths")
    g.add_argument("--fps", type=int, default=8, help=f"frames per second, 1..{MAX_FPS}")
    g.add_argument("--scale", type=int, default=4, help=f"enlarge frames by pixel repetition, 1..{MAX_SCALE}")
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("train-tokenizer", help="train the VQ frame tokenizer (and the word vocabulary)")
    t.add_argument("--data", default="shapes", help="'shapes' or a dataset folder (UCF-101 or BAIR style)")
    t.add_argument("--out", default="runs/tokenizer")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--image-size", type=int, default=64)
    t.add_argument("--downsample", type=int, default=8)
    t.add_argument("--codes", type=int, default=512)
    t.add_argument("--code-dim", type=int, default=32)
    t.add_argument("--channels", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train_tokenizer)

    m = sub.add_parser("train", help="train the RetNet (runs under torchrun too)")
    m.add_argument("--data", default="shapes", help="'shapes' or a dataset folder (UCF-101 or BAIR style)")
    m.add_argument("--tokenizer", default="runs/tokenizer", help="folder written by train-tokenizer")
    m.add_argument("--out", default="runs/shapes", help="checkpoints, log.jsonl and samples go here")
    m.add_argument("--steps", type=int, default=3000)
    m.add_argument("--batch-size", type=int, default=16)
    m.add_argument("--batch-tokens", type=int, default=0, help="tokens per batch (overrides --batch-size)")
    m.add_argument("--p-uncond", type=float, default=0.1, help="prompt dropout for classifier-free guidance")
    m.add_argument("--p-interp", type=float, default=0.5, help="share of interpolation batches")
    m.add_argument("--p-stream", type=float, default=0.0,
                   help="share of key-frame batches cut from an endless stream (SN phase, prompt switch)")
    m.add_argument("--lr", type=float, default=1e-3)
    m.add_argument("--warmup", type=int, default=200)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--save-every", type=int, default=200)
    m.add_argument("--sample-every", type=int, default=500)
    m.add_argument("--log-every", type=int, default=10)
    m.add_argument("--model-config", default="", help='JSON overrides, e.g. \'{"d_model": 192, "n_layers": 4}\'')
    m.add_argument("--export", default="", help="write the final pipeline folder here (e.g. checkpoints/shapes)")
    m.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    m.add_argument("--stop-at", type=int, default=0, help="stop at this step with a checkpoint (resume later)")
    m.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="score a checkpoint on the shapes world (markdown + JSON)")
    e.add_argument("--model", default=None, help="checkpoint folder or Hub repo id (default: the shipped model)")
    e.add_argument("--out", default="runs/eval")
    e.add_argument("--seen", type=int, default=45, help="training combinations to test adherence on")
    e.add_argument("--clips", type=int, default=24, help="clips for prediction / interpolation / tokenizer scores")
    e.add_argument("--long", type=int, default=12, help="16-key-frame videos (and a third as many 64-key-frame streams)")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_eval)

    from .bench import add_arguments as add_bench_args

    b = sub.add_parser("bench", help="speed: FlashVideo vs KV-cache / no-cache transformer, masked decoder, EVDM")
    add_bench_args(b)
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError) as e:  # bad input, a missing file, an unreadable image
        sys.exit(f"error: {e}")
