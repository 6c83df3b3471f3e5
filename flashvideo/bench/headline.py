"""Section `headline`: the paper's claim at the paper's frame size. 400-token frames (grid 20) x 32 key
frames (and the first 16 of them), the FlashVideo RetNet against a KV-cache transformer of the same width,
depth, heads, vocabulary and layout, given the same treatment:

* the same conditions: one token per step with one intra-op thread, the same `Sampler` (temperature 1),
  batch 1, the key-frame layout `T SN_1 F_1  T SN_2 F_2 ...`; the RetNet through the pipeline's public
  `key_frame_codes` (headers chunkwise, codes one recurrent step each), the transformer through
  `baselines.transformer.generate_frames` (headers in one pass into the preallocated cache, codes one
  cached step each);
* both eager: the RetNet's `_recurrent` step, the transformer's module path;
* both compiled (full mode; `--quick` skips it): the RetNet's step through `RetNet.compile_step()`
  (torch.compile; with `--aoti` the step built ahead of time, `flashvideo.aot`), the transformer's
  through `ARTransformer.compile_step()`: torch.compile dynamic in the cache length, so the attention reads
  exactly the filled keys, one graph for every position. The alternative, a preallocated cache read in
  full under a mask (static shapes), was measured at 64- and 400-token frames x 8 and kept out: it pays
  the whole video's attention from the first token (at 3,264 positions 3.7 ms a step at the start against
  0.7 ms) and was no faster at the end. Both compiled steps are built and warmed up on a one-frame video
  before timing (compile seconds reported apart), and the section counts the graphs torch compiles while
  timing: 0 means no recompile inside the timed videos.

Per-token time is read at frame boundaries of one real video per model and treatment, the two models'
frames interleaved (one frame of each in turn, so a burst of load elsewhere lands on both alike): at the
start (frame 1's sampled tokens), at the end (the last frame's), and over the whole video; as wall time,
and as this thread's CPU time (decoding is single-threaded), which a busy machine inflates much less. Memory
is what each model carries between tokens: the KV cache grows with every position, the RetNet state does
not. Random weights: timing does not depend on them.
"""
from __future__ import annotations

import time

import torch

from ..config import FlashVideoConfig
from ..layout import Layout
from ..sampling import torch_threads
from .common import TEXT_IDS, Settings, fmt_s, token_pipeline

THREADS = 1  # the pipeline's Decoder decodes single-threaded; the transformer gets the same
COMPILE_IN_QUICK = False  # --quick (CI) skips the compiled treatment: compiling costs tens of seconds
BACKENDS = {"torch.compile": "torch.compile", "aoti": "AOTInductor (built ahead of time, --aoti)"}


def headline_config(s: Settings) -> FlashVideoConfig:
    g = s.headline_grid
    return FlashVideoConfig(**{**s.headline_model, "grid": g, "image_size": g * s.pixels_per_code,
                               "max_key_frames": max(2, max(s.headline_frames))})


def state_bytes(state) -> int:
    return sum(t.numel() * t.element_size() for t in state)


def timed_frames(videos: dict) -> tuple[dict, dict]:
    """Run frame generators in lockstep, one frame of each in turn, so that a burst of load elsewhere on the
    machine lands on both alike. Per generator: cumulative wall seconds and CPU seconds (this thread) spent
    in it at each frame's end."""
    its = {name: iter(v) for name, v in videos.items()}
    wall, cpu = {name: [] for name in its}, {name: [] for name in its}
    while its:
        for name, it in list(its.items()):
            w0, c0 = time.perf_counter(), time.thread_time()
            if next(it, None) is None:
                del its[name]
                continue
            wall[name].append((wall[name][-1] if wall[name] else 0.0) + time.perf_counter() - w0)
            cpu[name].append((cpu[name][-1] if cpu[name] else 0.0) + time.thread_time() - c0)
    return wall, cpu


def per_token(cum: list[float], frames: int, tokens: int) -> dict:
    """Seconds per sampled token at the start (frame 1), at the end (frame `frames`) and over frames 1..frames."""
    last = cum[frames - 1] - (cum[frames - 2] if frames > 1 else 0.0)
    return {"start": cum[0] / tokens, "end": last / tokens, "whole": cum[frames - 1] / (frames * tokens),
            "video_seconds": cum[frames - 1]}


def graphs_compiled() -> int:
    """Graphs torch.compile has built in this process so far."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def race(pipe, tf, text, frames: int) -> dict:
    """Warm up on a one-frame video each, then time a `frames`-frame video each, frames interleaved."""
    from ..baselines.transformer import generate_frames

    videos = {"retnet": lambda k: pipe.key_frame_codes(text, k, seed=0),
              "transformer_kv": lambda k: generate_frames(tf, text, k, seed=0, use_cache=True)}
    out = {"warmup_seconds": {}}
    for name, video in videos.items():
        t0 = time.perf_counter()
        for _ in video(1):
            pass
        out["warmup_seconds"][name] = time.perf_counter() - t0
    graphs = graphs_compiled()
    out["wall"], out["cpu"] = timed_frames({name: video(frames) for name, video in videos.items()})
    out["graphs_compiled_while_timing"] = graphs_compiled() - graphs
    return out


def compile_both(s: Settings, pipe, tf) -> dict:
    """Swap in both compiled steps and say how long each took to build (the first warm-up frame in `race`
    adds what guards the real calls need)."""
    t0 = time.perf_counter()
    if s.aoti:  # the RetNet step built ahead of time for these weights on this CPU (built here if missing)
        from .. import aot

        if not aot.step_path(pipe.model).exists():
            aot.build_step(pipe.model)
        retnet_ok = aot.load_step(pipe.model)
    else:
        retnet_ok = pipe.model.compile_step((1,))
    t1 = time.perf_counter()
    transformer_ok = tf.compile_step()
    return {"ok": retnet_ok and transformer_ok, "retnet_backend": BACKENDS.get(pipe.model.step_backend, "eager"),
            "transformer_backend": BACKENDS.get(tf.step_backend, "eager"),
            "compile_seconds": {"retnet": t1 - t0, "transformer_kv": time.perf_counter() - t1}}


def figures(run: dict, frames: int, tokens: int) -> dict:
    """Per-token figures of both models over the first `frames` frames of a race, and their ratios."""
    rn, kv = per_token(run["wall"]["retnet"], frames, tokens), per_token(run["wall"]["transformer_kv"], frames, tokens)
    rn_cpu = per_token(run["cpu"]["retnet"], frames, tokens)
    kv_cpu = per_token(run["cpu"]["transformer_kv"], frames, tokens)
    return {"retnet": rn, "transformer_kv": kv,
            "cpu": {"retnet": rn_cpu, "transformer_kv": kv_cpu, "ratio_end": kv_cpu["end"] / rn_cpu["end"],
                    "ratio_whole": kv_cpu["whole"] / rn_cpu["whole"]},
            "ratio_start": kv["start"] / rn["start"], "ratio_end": kv["end"] / rn["end"],
            "ratio_whole": kv["whole"] / rn["whole"]}


def section_headline(s: Settings) -> dict:
    from ..baselines import transformer as T

    config = headline_config(s)
    layout = Layout(config)
    text = layout.text_block(TEXT_IDS)
    K, N = max(s.headline_frames), config.frame_tokens
    torch.manual_seed(0)
    pipe = token_pipeline(config)
    tf = T.ARTransformer(config).eval()
    t0 = time.perf_counter()
    with torch_threads(THREADS), torch.no_grad():
        eager = race(pipe, tf, text, K)
        compiled = {"skipped": "quick mode"} if s.quick and not COMPILE_IN_QUICK else compile_both(s, pipe, tf)
        if compiled.get("ok"):
            compiled.update(race(pipe, tf, text, K))
        elif "skipped" not in compiled:
            compiled["skipped"] = "a compile failed (logged): eager only"
        _, state = pipe.model.prefill(text[None, :1])
    wall = time.perf_counter() - t0
    d, L = config.d_model, config.n_layers
    rows = []
    for f in sorted(s.headline_frames):
        positions = f * layout.frame_len
        rows.append({"frames": f, "positions": positions, **figures(eager, f, N),  # both eager
                     "compiled": figures(compiled, f, N) if "wall" in compiled else None,
                     "kv_cache_bytes": 2 * L * positions * d * 4,  # keys and values, every layer and position, fp32
                     "retnet_state_bytes": state_bytes(state)})
    return {"config": {"grid": config.grid, "tokens_per_frame": N, "frame_len": layout.frame_len, "d_model": d,
                       "n_layers": L, "n_heads": config.n_heads, "n_codes": config.n_codes},
            "threads": THREADS, "treatment": "both eager", "rows": rows, "seconds": wall,
            "cum": eager["wall"], "cum_cpu": eager["cpu"],
            "graphs_compiled_while_timing": eager["graphs_compiled_while_timing"],
            "compiled": {k: v for k, v in compiled.items() if k != "ok"}}


def fmt_bytes(b: float) -> str:
    return f"{b / 1e6:.1f} MB" if b >= 1e6 else f"{b / 1e3:.1f} KB"


def markdown(r: dict) -> list[str]:
    h = r["headline"]
    c, comp = h["config"], h["compiled"]
    ms = lambda x: f"{x * 1e3:.2f} ms"  # noqa: E731
    L = [f"## Headline: {c['tokens_per_frame']}-token frames, RetNet vs KV-cache transformer", "",
         f"Key-frame layout, {c['frame_len']} positions per frame (header + {c['tokens_per_frame']} codes), "
         f"d_model {c['d_model']}, {c['n_layers']} layers, {c['n_heads']} heads, {c['n_codes']} codes; "
         f"{h['threads']} thread each, batch 1, one video per model and treatment (the "
         f"{min(row['frames'] for row in h['rows'])}-frame rows are the start of the longer video: decoding is "
         "causal). Per sampled token; ratios are transformer / RetNet in this run.", "",
         "| treatment | frames | positions | RetNet: start / end / whole | KV transformer: start / end / whole | "
         "ratio at the end | ratio, whole video | CPU-time ratio: end / whole | KV cache | RetNet state |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for row in h["rows"]:
        for treatment, t in (("both eager", row), ("both compiled", row["compiled"])):
            if t is None:
                continue
            rn, kv = t["retnet"], t["transformer_kv"]
            L.append(f"| {treatment} | {row['frames']} | {row['positions']} | {ms(rn['start'])} / {ms(rn['end'])} / "
                     f"{ms(rn['whole'])} | {ms(kv['start'])} / {ms(kv['end'])} / {ms(kv['whole'])} | "
                     f"{t['ratio_end']:.2f}x | {t['ratio_whole']:.2f}x | {t['cpu']['ratio_end']:.2f}x / "
                     f"{t['cpu']['ratio_whole']:.2f}x | {fmt_bytes(row['kv_cache_bytes'])} | "
                     f"{fmt_bytes(row['retnet_state_bytes'])} |")
    last = h["rows"][-1]
    L += ["", f"Whole {last['frames']}-frame video, eager: RetNet {fmt_s(last['retnet']['video_seconds'])}, "
              f"KV transformer {fmt_s(last['transformer_kv']['video_seconds'])}. The KV cache is "
              f"{last['kv_cache_bytes'] / last['retnet_state_bytes']:.0f}x the RetNet state at the end."]
    if "skipped" in comp:
        L.append(f"Both compiled: skipped ({comp['skipped']}).")
    else:
        cs, warm = comp["compile_seconds"], comp["warmup_seconds"]
        L.append(f"Both compiled: the RetNet step by {comp['retnet_backend']}, the transformer's cached step by "
                 f"{comp['transformer_backend']} (dynamic in the cache length: the attention reads the filled keys "
                 f"only); built in {cs['retnet']:.0f} s and {cs['transformer_kv']:.0f} s, then warmed up on a "
                 f"one-frame video each ({warm['retnet']:.1f} s, {warm['transformer_kv']:.1f} s), none of it timed; "
                 f"graphs compiled inside the timed videos: {comp['graphs_compiled_while_timing']}. "
                 f"Whole video: RetNet {fmt_s(last['compiled']['retnet']['video_seconds'])}, KV transformer "
                 f"{fmt_s(last['compiled']['transformer_kv']['video_seconds'])}.")
    return L + [""]
