"""Section `long`: an endless stream against a KV-cache transformer, frame after frame.

The FlashVideo side is `flashvideo.endless.EndlessStream` (the public streaming interface): key frames
only, each decoded to an image, the RetNet state carried from frame to frame and never re-read. The
transformer side is `baselines.transformer.generate_frames` with its KV cache, the same width, depth,
heads and layout: its cache holds every past position (a full window), so its memory and its time per
frame grow with the video, while the stream's stay flat.

Read at frames 10, 100, 1 000 (and 10 000 with `--long-frames`): seconds per frame (the mean over the
`WINDOW` frames ending there, wall and this thread's CPU time) and the process's resident memory. The
stream's frames at each checkpoint are timed interleaved, frame for frame, with the first `WINDOW` frames
of a fresh stream (started again for every checkpoint), so the ratio "at frame N / at the start" sees
the same machine load on both sides (on a shared machine a frame's CPU time drifts by 30 % or more from
minute to minute). The transformer runs up to `transformer_frames` frames (its cost grows with the
square of the length). Random weights: timing does not depend on them.
"""
from __future__ import annotations

import os
import time

import torch

from ..config import FlashVideoConfig
from ..endless import EndlessStream
from ..layout import Layout
from ..sampling import torch_threads
from .common import TEXT_IDS, Settings, token_pipeline

WINDOW = 8  # frames averaged at each checkpoint


def rss_mb() -> float:
    """Resident memory of this process, MB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):
        return 0.0


def _run(frames, checkpoints: list[int]) -> dict:
    """Iterate a frame generator up to the last checkpoint; per checkpoint: s/frame and RSS."""
    out, wall, cpu = {}, [], []
    w0, c0 = time.perf_counter(), time.thread_time()
    for i, _ in enumerate(frames, start=1):
        wall.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0)
        if i in checkpoints:
            j = max(0, i - 1 - WINDOW)
            n = i - 1 - j
            out[i] = {"wall": (wall[-1] - wall[j]) / n, "cpu": (cpu[-1] - cpu[j]) / n, "rss_mb": rss_mb()}
        if i >= checkpoints[-1]:
            break
    return out


def _interleaved(stream, fresh, checkpoints: list[int]) -> dict:
    """Per checkpoint: s/frame (wall, CPU) of the stream's `WINDOW` frames ending there, of `WINDOW` frames of
    a fresh stream (`fresh()`) decoded in turn with them, their ratio, and RSS."""
    out, frames, done = {}, stream.frames(), 0
    for c in checkpoints:
        for _ in range(c - WINDOW - done):                     # untimed: on to the window
            next(frames)
        young = fresh().frames()
        clocks = {"stream": [0.0, 0.0], "fresh": [0.0, 0.0]}
        for _ in range(WINDOW):
            for name, it in (("stream", frames), ("fresh", young)):
                w0, c0 = time.perf_counter(), time.thread_time()
                next(it)
                clocks[name][0] += time.perf_counter() - w0
                clocks[name][1] += time.thread_time() - c0
        done = c
        (wall, cpu), (fwall, fcpu) = clocks["stream"], clocks["fresh"]
        out[c] = {"wall": wall / WINDOW, "cpu": cpu / WINDOW, "fresh_wall": fwall / WINDOW, "fresh_cpu": fcpu / WINDOW,
                  "over_fresh": cpu / fcpu, "rss_mb": rss_mb()}
    return out


def section_long(s: Settings) -> dict:
    from ..baselines import transformer as T

    checkpoints = sorted(s.long_frames)
    config = FlashVideoConfig(**{**s.model, "grid": s.grid, "image_size": s.grid * s.pixels_per_code})
    torch.manual_seed(0)
    pipe = token_pipeline(config)
    prompt = " ".join(pipe.tokenizer.vocabulary[i - 1] for i in TEXT_IDS)
    t_frames = [f for f in checkpoints if f <= s.transformer_frames]
    t_config = FlashVideoConfig(**{**config.to_dict(), "max_key_frames": max(2, max(t_frames))})
    tf = T.ARTransformer(t_config).eval()
    t_text = Layout(t_config).text_block(TEXT_IDS)
    t0 = time.perf_counter()
    with torch_threads(1), torch.no_grad():
        def fresh():
            return EndlessStream(pipe, prompt, interp_frames=0, seed=0, batch_pairs=1)

        stream = fresh()
        retnet = _interleaved(stream, fresh, checkpoints)
        state = sum(t.numel() * t.element_size() for t in stream._dec.state)
        transformer = _run(T.generate_frames(tf, t_text, max(t_frames), seed=0), t_frames)
    positions = {f: f * pipe.layout.frame_len for f in checkpoints}
    return {"checkpoints": checkpoints, "retnet": retnet, "transformer_kv": transformer,
            "retnet_state_bytes": state, "positions": positions,
            "kv_cache_bytes": {f: 2 * config.n_layers * positions[f] * config.d_model * 4 for f in t_frames},
            "config": {"d_model": config.d_model, "n_layers": config.n_layers, "tokens_per_frame": config.frame_tokens},
            "seconds": time.perf_counter() - t0}


def markdown(r: dict) -> list[str]:
    h = r["long"]
    rn, kv = h["retnet"], h["transformer_kv"]
    first = h["checkpoints"][0]
    ms = lambda x: f"{x * 1e3:.1f} ms"  # noqa: E731
    L = ["## Long: an endless stream vs a KV-cache transformer", "",
         f"Key frames of {h['config']['tokens_per_frame']} tokens, d_model {h['config']['d_model']}, "
         f"{h['config']['n_layers']} layers, one thread. FlashVideo through `EndlessStream` (each frame decoded "
         "to an image); the transformer through its KV cache (codes only). Seconds per frame are the mean of "
         f"the {WINDOW} frames up to that frame; FlashVideo's are timed interleaved with the first {WINDOW} frames "
         "of a fresh stream, and 'x start' is their CPU-time ratio (the same load on both sides). RSS is the whole "
         "bench process.", "",
         "| frame | positions | FlashVideo s/frame (CPU) | x start | RSS | KV transformer s/frame (CPU) | "
         "KV cache | RSS |", "|---|---|---|---|---|---|---|---|"]
    for f in h["checkpoints"]:
        a, b = rn[f], kv.get(f)
        L.append(f"| {f} | {h['positions'][f]} | {ms(a['wall'])} ({ms(a['cpu'])}) | {a['over_fresh']:.2f}x | "
                 f"{a['rss_mb']:.0f} MB | " + (f"{ms(b['wall'])} ({ms(b['cpu'])}) | {h['kv_cache_bytes'][f] / 1e6:.1f} MB | "
                                               f"{b['rss_mb']:.0f} MB |" if b else "not run | | |"))
    last = h["checkpoints"][-1]
    L += ["", f"FlashVideo carries a {h['retnet_state_bytes'] / 1e3:.1f} KB state at every frame; its resident memory "
              f"grew {rn[last]['rss_mb'] - rn[first]['rss_mb']:+.1f} MB from frame {first} to frame {last}.", ""]
    return L
