"""Speed benchmark: FlashVideo against its baselines, in one process and one run, as ratios.

    python -m flashvideo bench [--quick] [--out runs/bench] [--repeats 3] [--threads 1] [--sections ...]

One module per section, each readable on its own (every number is the median of `--repeats` runs after
a warm-up run, unless the section says otherwise):

* headline   -- `headline.py`: 400-token frames x 32 (and 16) frames, RetNet vs KV-cache transformer, both
                eager on the same thread, then (full mode) both compiled: per-token time at the start, the
                end and over the whole video; KV cache vs RetNet state.
* frames     -- `methods.py`: seconds per frame against the number of frames, every method.
* tokens     -- `methods.py`: the same against tokens per frame.
* interp     -- `interp.py`: redundant-free interpolation against rho, batched or not, chunkwise or not.
* floor      -- `floor.py`: one recurrent step against its FLOP / byte / GEMV floor, profile, threads.
* evdm_flops -- `evdm_flops.py`: EVDM's FLOPs against plain conv blocks and the paper's tables.
* demo       -- `demo.py`: the default demo video end to end through `FlashVideoPipeline.stream`.
* long       -- `long.py`: an endless stream (`EndlessStream`) at frames 10, 100, 1 000 (10 000 with
                --long-frames): seconds per frame and resident memory, beside a KV-cache transformer.
* users      -- `users.py`: 1, 4, 16 and 32 simultaneous users asking for the demo video through the batched
                server (`flashvideo.serving`): wall time, throughput, time to first and last frame, and 16
                users' wall time over one's.

`--quick` runs every section at tiny sizes (a CI smoke test, well under a minute; no timing assertions).
Random weights are fair for timing: every method does the same work per token or per step whatever
the weights (fixed shapes, no early exit), so only quality claims need trained checkpoints.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from . import demo, evdm_flops, floor, headline, interp, long, methods, users
from .common import FULL, LABELS, METHODS, QUICK, Settings, machine_info
from .floor import count_ops, step_cost

__all__ = ["FULL", "LABELS", "METHODS", "QUICK", "SECTIONS", "Settings", "add_arguments", "build_parser",
           "count_ops", "main", "markdown", "run", "step_cost"]

# name -> (run(settings, results so far) -> dict, markdown(results) -> lines), in report order
RUNNERS = {
    "headline": (lambda s, r: headline.section_headline(s), headline.markdown),
    "frames": (lambda s, r: methods.section_frames(s), methods.markdown_frames),
    "tokens": (lambda s, r: methods.section_tokens(s, r.get("frames")), methods.markdown_tokens),
    "interp": (lambda s, r: interp.section_interp(s), interp.markdown),
    "floor": (lambda s, r: floor.section_floor(s, r.get("frames")), floor.markdown),
    "evdm_flops": (lambda s, r: evdm_flops.section_evdm_flops(s), evdm_flops.markdown),
    "demo": (lambda s, r: demo.section_demo(s), demo.markdown),
    "long": (lambda s, r: long.section_long(s), long.markdown),
    "users": (lambda s, r: users.section_users(s), users.markdown),
}
SECTIONS = list(RUNNERS)


def markdown(r: dict) -> str:
    mi = r["machine"]
    lines = ["# FlashVideo speed benchmark" + (" (quick mode: tiny sizes, 1 repeat)" if r["settings"]["quick"] else ""), "",
             f"Machine: {mi['cpu']}, {mi['cores']} cores, torch {mi['torch']}, {mi['threads']} thread(s) for the "
             f"main measurements, load average at start {mi['load_average_at_start']}. "
             f"Medians of {r['settings']['repeats']} runs after a warm-up. {mi['note'].capitalize()}. "
             f"Total bench time {r['bench_seconds']:.0f} s, in which this process used {mi['cpu_share']:.2f} cores of CPU "
             "time (well below the thread count means other processes competed for the cores: absolute times are "
             "inflated, ratios less so).", ""]
    for name, (_, render) in RUNNERS.items():
        if name in r:
            lines += render(r)
    return "\n".join(lines) + "\n"


def plots(r: dict, out: Path) -> list[str]:
    written = []
    for key in ("frames", "tokens"):
        if key in r:
            written += methods.plot(r, key, out)
    if "interp" in r:
        written += interp.plot(r, out)
    return written


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The bench options, on any parser (the CLI's `bench` subcommand uses this)."""
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat, few points (< 60 s): a smoke test")
    p.add_argument("--out", default="runs/bench", help="folder for bench.md, bench.json and the PNG plots")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per point (median reported; default 3, quick 1)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the main measurements (default 1: small GEMVs run faster single-threaded, "
                        "and a shared machine makes multi-threaded timings erratic; the floor section compares 1 vs 2)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    p.add_argument("--nocache-budget", type=float, default=None, help="seconds the real no-cache runs may take")
    p.add_argument("--evdm-measure-steps", type=int, default=None, help="DDIM steps timed for real (scaled to 100)")
    p.add_argument("--aoti", action="store_true",
                   help="also time the step built ahead of time (python -m flashvideo.aot): floor and demo sections; "
                        "builds it first if this CPU and these weights have none (tens of seconds)")
    p.add_argument("--headline-frames", default=None,
                   help="comma-separated frame counts of the headline section (default 16,32; quick 2,4)")
    p.add_argument("--long-frames", default=None,
                   help="comma-separated frame checkpoints of the long section (default 10,100,1000; e.g. 10,100,1000,10000)")
    return p


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="python -m flashvideo bench",
                                                 description=__doc__.split("\n\n")[0]))


def main(argv=None) -> dict:
    """Parse argv (a list of strings; None = sys.argv) and run the benchmark; returns the results dict."""
    return run(build_parser().parse_args(argv))


def settings_from(args: argparse.Namespace) -> Settings:
    s = replace(QUICK if args.quick else FULL)
    if args.repeats is not None:
        s.repeats = max(1, args.repeats)
    if args.nocache_budget is not None:
        s.nocache_budget = args.nocache_budget
    if args.evdm_measure_steps is not None:
        s.evdm_measure_steps = max(1, args.evdm_measure_steps)
    s.aoti = bool(getattr(args, "aoti", False))
    if getattr(args, "headline_frames", None):
        frames = [int(x) for x in args.headline_frames.split(",") if x.strip()]
        if not frames or min(frames) < 1:
            raise ValueError(f"--headline-frames must be positive integers, got {args.headline_frames!r}")
        s.headline_frames = frames
    if getattr(args, "long_frames", None):
        frames = [int(x) for x in args.long_frames.split(",") if x.strip()]
        if not frames or min(frames) <= long.WINDOW:
            raise ValueError(f"--long-frames must be integers above {long.WINDOW}, got {args.long_frames!r}")
        s.long_frames = frames
    return s


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark for parsed options (see `add_arguments`); write bench.md, bench.json, PNGs."""
    s = settings_from(args)
    sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown sections {unknown}; choose from {SECTIONS}")
    old_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    r = {"machine": machine_info(), "settings": asdict(s)}
    try:
        for name in sections:
            t1 = time.perf_counter()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            r[name] = RUNNERS[name][0](s, r)
            r.setdefault("section_seconds", {})[name] = time.perf_counter() - t1
    finally:
        torch.set_num_threads(old_threads)
    r["bench_seconds"] = time.perf_counter() - t0
    r["machine"]["cpu_share"] = (time.process_time() - cpu0) / r["bench_seconds"]
    md = markdown(r)
    (out / "bench.md").write_text(md)
    r["plots"] = plots(r, out)
    (out / "bench.json").write_text(json.dumps(r, indent=2, default=str))
    print(md)
    print(f"wrote {out / 'bench.md'}, {out / 'bench.json'}" + "".join(f", {out / p}" for p in r["plots"]))
    return r
