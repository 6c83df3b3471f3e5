"""Section `headline`: the paper's claim at the paper's frame size. 400-token frames (grid 20) x 32 key
frames (and the first 16 of them), the FlashVideo RetNet against a KV-cache transformer of the same width,
depth, heads, vocabulary and layout, given the same treatment:

* both eager, both decoding one token per step with one intra-op thread, both sampling through the same
  `Sampler` (temperature 1), batch 1, the key-frame layout `T SN_1 F_1  T SN_2 F_2 ...`;
* the RetNet through the pipeline's public `key_frame_codes` (headers chunkwise, codes one recurrent step
  each), the transformer through `baselines.transformer.generate_frames` (headers in one pass into the
  preallocated cache, codes one cached step each).

Per-token time is read at frame boundaries of one real video: at the start (frame 1's sampled tokens),
at the end (the last frame's), and over the whole video; as wall time, and as this thread's CPU time
(decoding is single-threaded), which a busy machine inflates much less. Memory is what each model carries between
tokens: the KV cache grows with every position, the RetNet state does not. Random weights: timing does
not depend on them.
"""
from __future__ import annotations

import time

import torch

from ..config import FlashVideoConfig
from ..layout import Layout
from ..pipeline import FlashVideoPipeline
from ..retnet import RetNet
from ..sampling import torch_threads
from .common import TEXT_IDS, Settings, fmt_s, tiny_tokenizer

THREADS = 1  # the pipeline's Decoder decodes single-threaded; the transformer gets the same


def headline_config(s: Settings) -> FlashVideoConfig:
    g = s.headline_grid
    return FlashVideoConfig(**{**s.headline_model, "grid": g, "image_size": g * s.pixels_per_code,
                               "max_key_frames": max(2, max(s.headline_frames))})


def state_bytes(state) -> int:
    return sum(t.numel() * t.element_size() for t in state)


def timed_frames(frames_iter) -> tuple[list[float], list[float]]:
    """Run a frame generator; cumulative wall seconds and CPU seconds (this thread) at each frame's end."""
    w0, c0, wall, cpu = time.perf_counter(), time.thread_time(), [], []
    for _ in frames_iter:
        wall.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0)
    return wall, cpu


def per_token(cum: list[float], frames: int, tokens: int) -> dict:
    """Seconds per sampled token at the start (frame 1), at the end (frame `frames`) and over frames 1..frames."""
    last = cum[frames - 1] - (cum[frames - 2] if frames > 1 else 0.0)
    return {"start": cum[0] / tokens, "end": last / tokens, "whole": cum[frames - 1] / (frames * tokens),
            "video_seconds": cum[frames - 1]}


def section_headline(s: Settings) -> dict:
    from ..baselines import transformer as T

    config = headline_config(s)
    layout = Layout(config)
    text = layout.text_block(TEXT_IDS)
    K, N = max(s.headline_frames), config.frame_tokens
    torch.manual_seed(0)
    pipe = FlashVideoPipeline(RetNet(config), tiny_tokenizer(config))
    tf = T.ARTransformer(config).eval()
    with torch_threads(THREADS), torch.no_grad():
        for _ in pipe.key_frame_codes(text, 1, seed=0):  # warm-up: one frame each
            pass
        for _ in T.generate_frames(tf, text, 1, seed=0):
            pass
        t0 = time.perf_counter()
        retnet, retnet_cpu = timed_frames(pipe.key_frame_codes(text, K, seed=0))
        transformer, transformer_cpu = timed_frames(T.generate_frames(tf, text, K, seed=0, use_cache=True))
        wall = time.perf_counter() - t0
        _, state = pipe.model.prefill(text[None, :1])
    d, L = config.d_model, config.n_layers
    rows = []
    for f in sorted(s.headline_frames):
        positions = f * layout.frame_len
        rn, kv = per_token(retnet, f, N), per_token(transformer, f, N)
        rn_cpu, kv_cpu = per_token(retnet_cpu, f, N), per_token(transformer_cpu, f, N)
        rows.append({"frames": f, "positions": positions, "retnet": rn, "transformer_kv": kv,
                     "cpu": {"retnet": rn_cpu, "transformer_kv": kv_cpu, "ratio_end": kv_cpu["end"] / rn_cpu["end"],
                             "ratio_whole": kv_cpu["whole"] / rn_cpu["whole"]},
                     "ratio_start": kv["start"] / rn["start"], "ratio_end": kv["end"] / rn["end"],
                     "ratio_whole": kv["whole"] / rn["whole"],
                     "kv_cache_bytes": 2 * L * positions * d * 4,  # keys and values, every layer and position, fp32
                     "retnet_state_bytes": state_bytes(state)})
    return {"config": {"grid": config.grid, "tokens_per_frame": N, "frame_len": layout.frame_len, "d_model": d,
                       "n_layers": L, "n_heads": config.n_heads, "n_codes": config.n_codes},
            "threads": THREADS, "treatment": "both eager", "rows": rows, "seconds": wall,
            "cum": {"retnet": retnet, "transformer_kv": transformer},
            "cum_cpu": {"retnet": retnet_cpu, "transformer_kv": transformer_cpu}}


def fmt_bytes(b: float) -> str:
    return f"{b / 1e6:.1f} MB" if b >= 1e6 else f"{b / 1e3:.1f} KB"


def markdown(r: dict) -> list[str]:
    h = r["headline"]
    c = h["config"]
    ms = lambda x: f"{x * 1e3:.2f} ms"  # noqa: E731
    L = [f"## Headline: {c['tokens_per_frame']}-token frames, RetNet vs KV-cache transformer", "",
         f"Key-frame layout, {c['frame_len']} positions per frame (header + {c['tokens_per_frame']} codes), "
         f"d_model {c['d_model']}, {c['n_layers']} layers, {c['n_heads']} heads, {c['n_codes']} codes; "
         f"{h['treatment']}, {h['threads']} thread each, batch 1, one video each (the {min(row['frames'] for row in h['rows'])}"
         "-frame row is the start of the longer video: decoding is causal). Per sampled token; ratios are "
         "transformer / RetNet in this run.", "",
         "| frames | positions | RetNet: start / end / whole | KV transformer: start / end / whole | "
         "ratio at the end | ratio, whole video | CPU-time ratio: end / whole | KV cache | RetNet state |",
         "|---|---|---|---|---|---|---|---|---|"]
    for row in h["rows"]:
        rn, kv = row["retnet"], row["transformer_kv"]
        L.append(f"| {row['frames']} | {row['positions']} | {ms(rn['start'])} / {ms(rn['end'])} / {ms(rn['whole'])} | "
                 f"{ms(kv['start'])} / {ms(kv['end'])} / {ms(kv['whole'])} | {row['ratio_end']:.2f}x | "
                 f"{row['ratio_whole']:.2f}x | {row['cpu']['ratio_end']:.2f}x / {row['cpu']['ratio_whole']:.2f}x | "
                 f"{fmt_bytes(row['kv_cache_bytes'])} | {fmt_bytes(row['retnet_state_bytes'])} |")
    last = h["rows"][-1]
    L += ["", f"Whole {last['frames']}-frame video: RetNet {fmt_s(last['retnet']['video_seconds'])}, "
              f"KV transformer {fmt_s(last['transformer_kv']['video_seconds'])}. The KV cache is "
              f"{last['kv_cache_bytes'] / last['retnet_state_bytes']:.0f}x the RetNet state at the end.", ""]
    return L
