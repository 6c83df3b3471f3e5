"""python -m flashvideo <command>: generate, train-tokenizer, train, eval, bench.

`generate` makes a video of up to the model's trained key-frame count in one piece (the pipeline's
stream); a longer one, a prompt schedule (--then) or a saved state goes through `EndlessStream`.
Either way the frames go to the files as they arrive (`video_writer.VideoWriter`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .video_writer import SUFFIXES


MAX_FPS = 60
MAX_SCALE = 16
MAX_STREAM_KEY_FRAMES = 100_000   # a streamed video (--then, or past the model's trained count); frames go to disk
MAX_STATE_BYTES = 64 * 2**20      # --resume-state: a saved stream (the shipped model's is about 0.2 MB)

# what a saved stream carries (--resume-state continues with it), and the defaults of a new video; sampling
# left at None comes from the model (`FlashVideoPipeline.default_sampling`)
STREAM_SETTINGS = {"interp_frames": 3, "inherit_ratio": 0.2, "seed": 0, "temperature": None, "top_k": None,
                   "top_p": None, "guidance_scale": None, "negative_prompt": None}

GENERATE_EPILOG = f"""\
Up to the model's trained key-frame count (16 for the shipped model) a video is made in one piece.
Longer videos, and any with --then, --save-state or --resume-state, stream (flashvideo.endless.EndlessStream): the
RetNet state is carried from key frame to key frame, frames are written to the files as they arrive,
and memory stays flat; at most {MAX_STREAM_KEY_FRAMES:,} key frames. Key frames count from 0, so
"--then 12 PROMPT" gives the first 12 key frames the first prompt. Everything is checked before
generating; if a prompt is refused mid-stream anyway, or on Ctrl-C, the frames made so far are kept.

examples:
  python -m flashvideo generate "a red circle moves right" --out out.gif out.mp4
  python -m flashvideo generate "a red circle moves right" --key-frames 60 \\
      --then 12 "a red circle moves down" --then 30 "a red circle grows" --out long.gif
  python -m flashvideo generate "a red circle moves down" --key-frames 40 --save-state a.state --out a.gif
  python -m flashvideo generate "a red circle moves left" --key-frames 40 --resume-state a.state --out b.gif
"""


def add_generation_args(p: argparse.ArgumentParser) -> None:
    d = STREAM_SETTINGS
    p.add_argument("--model", default=None, help="checkpoint folder or Hub repo id (default: the shipped model)")
    p.add_argument("--key-frames", type=int, default=4, metavar="K",
                   help="key frames K (serial-number frames; default 4); past the model's trained count the "
                        f"video streams, up to {MAX_STREAM_KEY_FRAMES}")
    p.add_argument("--interp-frames", type=int, default=None, metavar="N",
                   help=f"frames inserted between key frames n (default {d['interp_frames']})")
    p.add_argument("--inherit-ratio", type=float, default=None, metavar="RHO",
                   help=f"inheritable-token ratio rho in [0, 1] (default {d['inherit_ratio']})")
    p.add_argument("--seed", type=int, default=None,
                   help=f"random seed; the same seed gives the same video (default {d['seed']})")
    p.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="0 = greedy, else at least 0.01 (a tiny positive value is refused, not rounded); "
                        "default: the model's (config.json \"sampling\"), else 1")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="keep the k most likely codes; 0 = off (default: the model's, else off)")
    p.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="nucleus sampling: keep codes up to this mass (default: the model's, else off)")
    p.add_argument("--guidance-scale", type=float, default=None, metavar="S",
                   help="classifier-free guidance s: uncond + s (cond - uncond); 1 = off (one pass); "
                        "default: the model's, else 1")
    p.add_argument("--negative-prompt", default=None, metavar="PROMPT",
                   help="with guidance: steer away from this prompt (default: none)")
    p.add_argument("--first-frame", default=None, metavar="IMAGE",
                   help="image file (PNG, JPEG, WebP, GIF, BMP; at most 5 MB and 4096x4096 px): predict from it")


def check_new_file(flag: str, name: str, want: str, suffixes=()) -> Path:
    """A path where a file can be created: not empty, not a folder, ending in one of `suffixes` (if any),
    not an existing non-file, in an existing folder where a file can be created (tried, then removed)."""
    import tempfile

    if not name.strip():
        raise ValueError(f"{flag}: an empty path; {want}")
    path = Path(name)
    if path.is_dir():
        raise ValueError(f"{flag} {name} is a folder; {want}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} {name}: the file must end in {' or '.join(suffixes)}, "
                         f"not {path.suffix or 'no extension'}")
    if path.exists() and not path.is_file():
        raise ValueError(f"{flag} {name} exists and is not a regular file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{flag} {name}: the folder {parent} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".flashvideo-probe-"):
            pass
    except OSError as e:
        raise ValueError(f"{flag} {name}: cannot write in {parent} ({e.strerror or e})") from None
    return path


def check_outputs(outs, fps, scale) -> list:
    """--out, --fps and --scale, checked before anything is loaded or generated: every output a .gif or
    .mp4 path (`check_new_file`), each given once."""
    from .demo import as_int

    as_int("--fps", fps, 1, MAX_FPS)
    as_int("--scale", scale, 1, MAX_SCALE)
    paths = []
    for out in outs:
        path = check_new_file("--out", out, f"give a file name ending in {' or '.join(SUFFIXES)}", SUFFIXES)
        if path.resolve() in {p.resolve() for p in paths}:
            raise ValueError(f"--out {out} is given twice")
        paths.append(path)
    return paths


def check_state_file(name: str) -> Path:
    """--resume-state: an existing regular file of at most MAX_STATE_BYTES (never a pipe or a device)."""
    path = Path(name)
    if not path.exists():
        raise ValueError(f"--resume-state {name}: no such file; give a file written by --save-state")
    if not path.is_file():
        raise ValueError(f"--resume-state {name} is a folder, a pipe or a device; give a file written by --save-state")
    if path.stat().st_size > MAX_STATE_BYTES:
        raise ValueError(f"--resume-state {name} is {path.stat().st_size / 2**20:.0f} MB; a stream state is at most "
                         f"{MAX_STATE_BYTES // 2**20} MB")
    return path


def check_schedule(pipe, prompt, then, key_frames: int) -> list[tuple[int, str]]:
    """The prompt schedule [(0, prompt), (k1, prompt1), ...] from the prompt and --then's (K, PROMPT)
    pairs: each K a whole number, increasing, in 1..key_frames-1; each prompt one the model reads
    (`demo.check_prompt`: empty, unknown words, the grammar)."""
    from .demo import check_prompt

    schedule = [(0, check_prompt(pipe, prompt))]
    for k, text in then or ():
        try:
            k = int(k)
        except ValueError:
            raise ValueError(f"--then takes a key frame (a whole number) and a prompt, e.g. "
                             f"--then 12 'a red circle moves down'; got {k!r} as the key frame") from None
        if k < 1:
            raise ValueError(f"--then {k}: key frames count from 0 and key frame 0 has the first prompt; "
                             f"a change starts at key frame 1 or later")
        if k >= key_frames:
            raise ValueError(f"--then {k}: a change must start below --key-frames {key_frames} "
                             f"(the key frames are 0..{key_frames - 1})")
        if k <= schedule[-1][0]:
            raise ValueError(f"--then {k} comes after --then {schedule[-1][0]}: the key frames of --then must increase")
        try:
            schedule.append((k, check_prompt(pipe, text)))
        except ValueError as e:
            raise ValueError(f"--then {k}: {e}") from None
    return schedule


class PromptRefused(ValueError):
    """A scheduled prompt refused mid-stream (between key frames: the stream is whole)."""


def scheduled_events(stream, schedule, key_frames: int, first=None):
    """FrameEvents of `key_frames` more key frames of an EndlessStream (and the frames between them), in
    time order, the prompt switching as `schedule` says ([(k, prompt)], k from this run's first key
    frame, 0-based). A `first` image becomes key frame 0 (given, not generated)."""
    base = stream.key_frames
    if first is not None:
        yield from stream.feed_frames([first])
    ends = [k for k, _ in schedule[1:]] + [key_frames]
    for (k, prompt), end in zip(schedule, ends):
        try:
            stream.prompt = prompt
        except ValueError as e:
            raise PromptRefused(f"--then {k}: the prompt was refused mid-stream ({e})") from None
        yield from stream.frames(end - (stream.key_frames - base))


def check_video_settings(pipe, s) -> dict:
    """A new video's settings (`STREAM_SETTINGS` names, filled in) -> the pipeline's keywords, checked."""
    from dataclasses import replace

    from . import demo
    from .sampler import MAX_TEMPERATURE

    c = pipe.config
    interp_frames = demo.as_int("--interp-frames", s.interp_frames, 0, c.max_interp_frames)
    demo.as_float("--inherit-ratio", s.inherit_ratio, 0.0, 1.0)
    demo.as_int("--seed", s.seed, 0, 2**63 - 1)
    d = pipe.default_sampling
    sampling = replace(  # what the model's defaults hold beyond these (guide_interp) is kept
        d, temperature=d.temperature if s.temperature is None else demo.as_temperature(s.temperature, MAX_TEMPERATURE,
                                                                                     "--temperature"),
        top_k=d.top_k if s.top_k is None else demo.as_top_k(s.top_k, c.n_codes, "--top-k"),
        top_p=d.top_p if s.top_p is None else s.top_p,
        guidance_scale=d.guidance_scale if s.guidance_scale is None else s.guidance_scale)
    if s.negative_prompt is not None:
        try:
            demo.check_prompt(pipe, s.negative_prompt)
        except ValueError as e:
            raise ValueError(f"--negative-prompt: {e}") from None
    settings = dict(interp_frames=interp_frames, inherit_ratio=s.inherit_ratio, seed=s.seed, sampling=sampling,
                    negative_prompt=s.negative_prompt)
    pipe.check_settings(2, **settings)
    return settings


def write_video(events, outs, n: int, *, fps: int, scale: int, start: int = 0) -> tuple[int, dict, int]:
    """Write FrameEvents to every output as they arrive, under a progress bar (frames/s). Returns (frames
    written, the last event's stats, tokens inherited). A prompt refused mid-stream or Ctrl-C stops the
    run; the files keep the frames made so far, and the message says so."""
    from tqdm import tqdm

    from .video_writer import VideoWriter

    writers = [VideoWriter(out, fps=fps, scale=scale, start=start) for out in outs]
    stats, inherited = {}, 0

    def kept() -> str:
        return f"kept the {min(w.close() for w in writers)} frames made so far in {', '.join(map(str, outs))}"

    try:
        with tqdm(total=n, unit="frame", desc="generating") as bar:
            for ev in events:
                for w in writers:
                    w.add(ev.index, ev.image)
                stats, inherited = ev.stats, inherited + ev.stats.get("tokens_inherited", 0)
                bar.update()
    except PromptRefused as e:
        raise PromptRefused(f"{e}; stopped there and {kept()}") from None
    except KeyboardInterrupt:
        raise SystemExit(f"stopped (Ctrl-C); {kept()}") from None
    finally:
        written = min(w.close() for w in writers)
    return written, stats, inherited


def cmd_generate(args) -> None:
    """Every argument is checked before the video is generated: the files first (no model needed), then
    the first frame (bounded, never a pipe or a device), then the model's own limits and the prompts.
    Frames go to the files as they arrive."""
    import time

    from . import demo
    from .endless import EndlessStream
    from .pipeline import FlashVideoPipeline
    from .timeline import Timeline

    demo.limit_image_decoding()
    outs = check_outputs(args.out, args.fps, args.scale)
    save_state = None
    if args.save_state is not None:
        save_state = check_new_file("--save-state", args.save_state, "give a file name, e.g. a.state")
    given = [name for name in STREAM_SETTINGS if getattr(args, name) is not None]
    if args.resume_state is not None:
        resume = check_state_file(args.resume_state)
        if args.first_frame is not None:
            raise ValueError("--first-frame starts a new video and --resume-state continues one; give only one")
        if given:
            raise ValueError(f"--resume-state continues with the saved stream's own settings; leave out "
                             f"{', '.join('--' + n.replace('_', '-') for n in given)}")
    first = None
    if args.first_frame is not None:
        try:
            first = demo.load_first_frame(args.first_frame)
        except ValueError as e:
            raise ValueError(f"--first-frame {args.first_frame}: {e}") from None
    from .retnet import SHORT_SPAN

    draft_len = None if args.draft_len is None else demo.as_int("--draft-len", args.draft_len, 0, SHORT_SPAN - 1)
    pipe = FlashVideoPipeline.from_pretrained(args.model)
    if draft_len is not None:
        pipe.draft_len = draft_len
    trained = pipe.config.max_key_frames
    key_frames = demo.as_int("--key-frames", args.key_frames, 1 if args.resume_state else 2, MAX_STREAM_KEY_FRAMES)
    schedule = check_schedule(pipe, args.prompt, args.then, key_frames)
    if args.resume_state is not None:
        try:
            stream = EndlessStream.load(pipe, resume)
        except ValueError as e:
            raise ValueError(f"--resume-state {args.resume_state}: {e}") from None
    else:
        chosen = {**STREAM_SETTINGS, **{n: getattr(args, n) for n in given}}
        settings = check_video_settings(pipe, argparse.Namespace(**chosen))
        stream = None
        if len(schedule) > 1 or key_frames > trained or save_state:
            stream = EndlessStream(pipe, schedule[0][1], **settings)

    if stream is None:                          # one piece: all key frames, then the pairs in one batch
        before, start = {}, 0
        n = Timeline(key_frames, settings["interp_frames"]).n_frames
        events = pipe.stream(schedule[0][1], key_frames=key_frames, first_frame=first, **settings)
    else:                                       # a stream, from a saved one's next frame on
        before, done, stride = dict(stream.counts), stream.key_frames, stream.interp_frames + 1
        start = stream.timeline.key_index(done - 1) + 1 if done else 0
        n = key_frames * stride - (0 if done else stride - 1)
        events = scheduled_events(stream, schedule, key_frames, first)
        note = f" after the saved stream's {done} key frames" if done else ""
        if key_frames > trained:
            note += f"; past the {trained} the model was trained on, serial numbers cycle"
        print(f"streaming {key_frames} key frames ({n} frames){note}")

    t0 = time.perf_counter()
    try:
        written, stats, inherited = write_video(events, outs, n, fps=args.fps, scale=args.scale, start=start)
    except PromptRefused as e:
        if not save_state:
            raise
        stream.save(save_state)                 # the refusal came between key frames: the state is whole
        raise ValueError(f"{e}, and the stream's state in {save_state}") from None
    seconds = time.perf_counter() - t0
    for out in outs:
        print(f"wrote {out}")
    total = {k: stats.get(f"total_{k}", 0) - before.get(k, 0) for k in ("sampled", "steps", "passes")}
    print(f"{written} frames in {seconds:.2f} s ({written / max(seconds, 1e-9):.1f} frames/s); tokens sampled "
          f"{total['sampled']}, inherited {inherited}, sequential model calls {total['steps'] + total['passes']}")
    if len(schedule) > 1:
        ends = [k - 1 for k, _ in schedule[1:]] + [key_frames - 1]
        print("prompts: " + "; ".join(f"key frames {k}..{e}: {p!r}" for (k, p), e in zip(schedule, ends)))
    if save_state:
        stream.save(save_state)
        print(f"saved the stream's state to {save_state} (continue it with --resume-state {save_state})")


def cmd_train_tokenizer(args) -> None:
    """Train the tokenizer backend `args.backend` (default "vq"; any name in `tokenizer.TOKENIZERS`) on the
    world's frames, score it on the world's held-out frames, and write it with its metrics."""
    import json

    from .tokenizer import VQTokenizer, WordTokenizer, read_tokenizer, tokenizer_class
    from .train_tokenizer import evaluate_tokenizer, train_tokenizer
    from .world import frame_stream, make_world

    backend = tokenizer_class(args.backend)          # an unknown name is refused before any work
    options = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, edge_weight=args.edge_weight)
    if args.decoder_of:                              # keep that tokenizer's codes, train its decoder on
        base = read_tokenizer(args.decoder_of)
        if not isinstance(base, VQTokenizer):
            raise SystemExit(f"--decoder-of {args.decoder_of}: not a VQ tokenizer folder (backend {base.backend!r})")
        world = make_world(args.data, base.image_size)
        vq, metrics = train_tokenizer(frame_stream(world, args.seed), decoder_of=base.vq, wrap=world.wraps, **options)
        tokenizer = VQTokenizer(base.words, vq)
    else:
        world = make_world(args.data, args.image_size)
        vq_kwargs = dict(image_size=args.image_size, downsample=args.downsample, n_codes=args.codes,
                         code_dim=args.code_dim, channels=args.channels, wrap=world.wraps)
        tokenizer, metrics = backend.train(frame_stream(world, args.seed),
                                           WordTokenizer(world.vocabulary(), slots=world.grammar()),
                                           vq_kwargs=vq_kwargs, **options)
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
                     p_interp=args.p_interp, p_stream=args.p_stream, p_shake=args.p_shake, p_self=args.p_self,
                     p_first=args.p_first, p_swap=args.p_swap, p_hard=args.p_hard, ema=args.ema,
                     lr=args.lr, min_lr=args.min_lr, warmup=args.warmup, seed=args.seed,
                     save_every=args.save_every, sample_every=args.sample_every, log_every=args.log_every,
                     export=args.export or "", resume=args.resume, init=args.init or "", stop_at=args.stop_at, model=model,
                     folder_frames=args.folder_frames, folder_t_max=args.folder_t_max)
    train(tc)


def cmd_export(args) -> None:
    """A training checkpoint + its tokenizer -> the folder `from_pretrained` reads, with the model's default
    sampling (the settings chosen with `eval --sweep`) in its config.json."""
    import dataclasses
    import json

    import torch

    from .pipeline import FlashVideoPipeline, load_model
    from .tokenizer import load_tokenizer

    try:
        sampling = json.loads(args.sampling)
    except json.JSONDecodeError as e:
        raise ValueError(f"--sampling must be a JSON object, e.g. '{{\"temperature\": 0.8}}' ({e.msg})") from None
    model = load_model(Path(args.checkpoint))
    model.config = dataclasses.replace(model.config, sampling=sampling)   # checked like every config field
    folder = FlashVideoPipeline(model.eval(), load_tokenizer(args.tokenizer, model.config)).save_pretrained(
        args.out, dtype=getattr(torch, args.dtype))
    print(f"exported {args.checkpoint} with sampling {sampling} and {args.dtype} weights to {folder}")


def cmd_eval(args) -> None:
    from .evaluate import main as eval_main

    eval_main(args)


def cmd_bench(args) -> None:
    from .bench import run

    run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flashvideo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="text (and optionally a first frame) -> video file",
                       description="Text (and optionally a first frame) -> a .gif / .mp4 video.",
                       epilog=GENERATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("prompt", help="what the video shows, e.g. 'a red circle moves right' (a schedule's first prompt)")
    add_generation_args(g)
    g.add_argument("--then", nargs=2, action="append", default=[], metavar=("K", "PROMPT"),
                   help="from key frame K on (counting from 0) use PROMPT; repeat for more changes, K increasing "
                        "and below --key-frames")
    g.add_argument("--save-state", default=None, metavar="PATH",
                   help="after the last frame, save the stream's state (a few hundred KB) to continue it later")
    g.add_argument("--resume-state", default=None, metavar="PATH",
                   help="continue a stream saved by --save-state: --key-frames more key frames under the prompt, "
                        "with the saved stream's settings (leave out --interp-frames, --seed and the sampling flags)")
    g.add_argument("--out", nargs="+", default=["out.gif"], metavar="PATH",
                   help="one or more .gif / .mp4 paths, written while frames arrive")
    g.add_argument("--draft-len", type=int, default=None, metavar="N",
                   help="drafted codes checked per pass (speculative decoding, at most the built pass's tokens less one): "
                        "any N >= 1 draws the same video, faster or slower; 0 decodes token by token, which draws "
                        "another (default 8)")
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
    t.add_argument("--edge-weight", type=float, default=0.0,
                   help="extra weight of the reconstruction error on edge pixels (the outlines that make a shape)")
    t.add_argument("--decoder-of", metavar="FOLDER",
                   help="a trained VQ tokenizer folder: keep its encoder and codebook (every frame keeps its codes, "
                        "so models trained on them stay valid) and train its decoder on, padded as the world's "
                        "frames continue (around the frame for the shapes world); the size flags are ignored")
    t.add_argument("--backend", default="vq",
                   help="tokenizer backend: a name registered in flashvideo.tokenizer.TOKENIZERS (default 'vq', the "
                        "patch-local VQ-VAE; 'icetk' loads pretrained weights and cannot be trained here)")
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
    m.add_argument("--p-shake", type=float, default=0.0,
                   help="input codes moved to a neighbour's code with probability up to this (targets stay true)")
    m.add_argument("--p-self", type=float, default=0.0,
                   help="input codes replaced by the model's own draws with probability up to this (targets stay true)")
    m.add_argument("--p-first", type=float, default=0.0,
                   help="share of key-frame batches of first frames alone (a video's hardest frame)")
    m.add_argument("--p-swap", type=float, default=0.0,
                   help="share of key-frame sequences in which one key frame shows another sequence's (its loss dropped)")
    m.add_argument("--p-hard", type=float, default=0.0,
                   help="share of interpolation sequences whose clip is the hardest of 8 drawn (the largest jump between frames)")
    m.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this decay (e.g. 0.998); "
                        "checkpoints hold it in step-*/ema and --export writes it")
    m.add_argument("--lr", type=float, default=1e-3)
    m.add_argument("--min-lr", type=float, default=1e-4, help="the cosine schedule ends at this learning rate")
    m.add_argument("--warmup", type=int, default=200)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--save-every", type=int, default=200)
    m.add_argument("--sample-every", type=int, default=500)
    m.add_argument("--log-every", type=int, default=10)
    m.add_argument("--model-config", default="", help='JSON overrides, e.g. \'{"d_model": 192, "n_layers": 4}\'')
    m.add_argument("--export", default="", help="write the final pipeline folder here (e.g. checkpoints/shapes)")
    m.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    m.add_argument("--init", default=None, metavar="FOLDER",
                   help="start from the weights of this pipeline folder (e.g. checkpoints/shapes) with a fresh optimizer")
    m.add_argument("--stop-at", type=int, default=0, help="stop at this step with a checkpoint (resume later)")
    m.add_argument("--folder-frames", type=int, default=16,
                   help="dataset folder: frames read per clip (default 16; not used by the shapes world)")
    m.add_argument("--folder-t-max", type=float, default=0.0,
                   help="dataset folder: a clip spans key-frame time [0, this]; 0 = --folder-frames - 1, one frame "
                        "of the file per key-frame interval (not used by the shapes world)")
    m.set_defaults(func=cmd_train)

    x = sub.add_parser("export", help="a training checkpoint + tokenizer -> a model folder (from_pretrained)")
    x.add_argument("checkpoint", help="a step folder written by train, e.g. runs/shapes/step-0004500")
    x.add_argument("--tokenizer", default="runs/tokenizer", help="folder written by train-tokenizer")
    x.add_argument("--out", required=True, help="the model folder to write, e.g. checkpoints/shapes")
    x.add_argument("--sampling", default="{}", help="the model's default sampling, as JSON (see eval --sweep)")
    x.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="how the weights are stored (float16: half the size; loaded back as float32)")
    x.set_defaults(func=cmd_export)

    e = sub.add_parser("eval", help="score a checkpoint on the shapes world (markdown + JSON)")
    e.add_argument("--model", default=None, help="checkpoint folder or Hub repo id (default: the shipped model)")
    e.add_argument("--out", default="runs/eval")
    e.add_argument("--seen", type=int, default=45, help="training combinations to test adherence on")
    e.add_argument("--clips", type=int, default=24, help="clips for prediction / interpolation / tokenizer scores")
    e.add_argument("--long", type=int, default=12, help="16-key-frame videos (and a third as many 64-key-frame streams)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--aoti", action="store_true",
                   help="score with the step built by `python -m flashvideo.aot build`, not eager")
    e.add_argument("--sweep", type=int, default=0, metavar="N",
                   help="instead: the sampling sweep (the table the defaults were chosen from) on N prompts")
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
