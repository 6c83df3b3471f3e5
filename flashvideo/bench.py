"""Speed benchmark: FlashVideo against its baselines, in one process and one run, as ratios.

    python -m flashvideo bench [--quick] [--out runs/bench] [--repeats 3] [--threads 1]

Sections (every number is the median of `--repeats` runs after a warm-up run):

* frames     -- seconds per frame for a K-frame video, K = 1 ... 32, at a fixed grid: FlashVideo
                (the real `FlashVideoPipeline.key_frame_codes` path), the autoregressive transformer
                with and without a KV cache, the masked parallel decoder and EVDM. One video of the
                largest K is generated per repeat and timed at every frame boundary (generation is
                causal, so its first K frames cost what a K-frame video costs).
* tokens     -- the same, against tokens per frame (grids 8, 16, 20 = 64, 256, 400 tokens).
* interp     -- redundant-free interpolation: seconds and sequential steps per in-between frame
                against the inheritable ratio rho, with and without batching the key-frame pairs
                and with and without chunkwise prefill of known spans; key frames differ only where
                a small object moved. Reports the batch's union of sampling positions.
* floor      -- FLOPs and bytes of one recurrent step (from the config), the machine's matmul and
                GEMV rates on the step's own shapes, and the measured step as a multiple of the floor;
                with an operator profile of the step and 1 vs 2 threads.
* evdm_flops -- EVDM's block and network FLOPs against plain conv blocks, next to the paper's Table 1.
* demo       -- the default demo video end to end (4 key frames, 3 inserted per pair, 64x64, grid 8).

Slow baselines are capped, and the table says so: the no-cache transformer is run for real only
while its predicted time fits `--nocache-budget`; beyond that its time is the sum, over the tokens
it would sample, of a fitted forward-time curve t(L) = a + bL + cL^2 measured in the same run.
EVDM's DDIM sampler runs `--evdm-measure-steps` network evaluations per block for real and is
scaled linearly to the paper's 100 steps (each step is one identical U-Net call).

Random weights are fair for timing: every method does the same work per token or per step whatever
the weights (fixed shapes, no early exit), so only quality claims need trained checkpoints.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .config import FlashVideoConfig
from .layout import Layout
from .pipeline import DEFAULT_CHECKPOINT, FlashVideoPipeline
from .retnet import RetNet
from .tokenizer import VQTokenizer, VQVAE, WordTokenizer

PAPER_FIG6_NOTE = ("FlashVideo paper Fig. 6 / sec. 4.2.2: O(L) vs O(L^2) against TATS, ~100x faster than "
                   "video diffusion, same order as MAGVIT/MaskViT")


# ------------------------------------------------------------------------------------ settings

@dataclass
class Settings:
    quick: bool = False
    repeats: int = 3
    model: dict = field(default_factory=dict)     # FlashVideoConfig overrides of the benchmarked model
    frames: list = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    grid: int = 8                                  # tokens per frame = grid^2 in the frames section
    grids: list = field(default_factory=lambda: [8, 16, 20])
    pixels_per_code: int = 8                       # image_size = grid * pixels_per_code
    token_frames: int = 2                          # fixed number of frames in the tokens section
    rhos: list = field(default_factory=lambda: [0.0, 0.2, 0.5, 0.8, 1.0])
    key_frames: int = 4
    interp_frames: int = 3
    interp_repeats: int = 2                        # chunked variants; the slow stepwise ones run once
    masked_steps: int = 8
    evdm_steps: int = 100                          # the paper's step count
    evdm_measure_steps: int = 5
    nocache_budget: float = 15.0                   # seconds: above this the no-cache run is extrapolated
    nocache_budget_tokens: float = 5.0             # the same, per grid in the tokens section
    demo_prompt: str = "a red circle moves right"


FULL = Settings()
QUICK = Settings(quick=True, repeats=1, frames=[1, 2], grid=4, grids=[4, 6], pixels_per_code=4, token_frames=1,
                 rhos=[0.0, 1.0], key_frames=3, interp_frames=1, interp_repeats=1, masked_steps=2, evdm_steps=2,
                 evdm_measure_steps=2, nocache_budget=5.0, nocache_budget_tokens=2.0,
                 model=dict(n_codes=64, n_text=8, text_len=4, d_model=32, n_heads=4, n_layers=2, chunk_size=16))

TEXT_IDS = [1, 2, 3]
METHODS = ["flashvideo", "transformer_kv", "transformer_nocache", "masked", "evdm"]
LABELS = {"flashvideo": "FlashVideo (RetNet, recurrent)", "transformer_kv": "Transformer + KV cache",
          "transformer_nocache": "Transformer, no cache", "masked": "Masked parallel decoder",
          "evdm": "EVDM (diffusion)"}


def model_config(s: Settings, grid: int | None = None, **kw) -> FlashVideoConfig:
    g = grid or s.grid
    return FlashVideoConfig(**{**s.model, "grid": g, "image_size": g * s.pixels_per_code, **kw})


# ------------------------------------------------------------------------------------ timing helpers

def median(xs):
    return float(statistics.median(xs))


def median_curve(curves):
    return [median(v) for v in zip(*curves)]


def cumulative_times(frames_iter) -> list[float]:
    """Run a frame generator; cumulative seconds at the end of each frame."""
    t0, out = time.perf_counter(), []
    for _ in frames_iter:
        out.append(time.perf_counter() - t0)
    return out


def repeat_curve(make_iter, repeats: int, warmup=None) -> list[float]:
    """Median (over repeats, after one warm-up) of the cumulative frame times."""
    cumulative_times(warmup() if warmup else make_iter())
    return median_curve([cumulative_times(make_iter()) for _ in range(repeats)])


def time_call(fn, reps: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return median(ts)


def time_loop(fn, n: int, reps: int = 3) -> float:
    """Median over reps of the mean seconds per call of fn over n calls."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        ts.append((time.perf_counter() - t0) / n)
    return median(ts)


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(), "load_average_at_start": load,
            "note": "random weights: timing does not depend on the weights (fixed shapes, no early exit); "
                    "quality claims need trained checkpoints"}


# ------------------------------------------------------------------------------------ models

def tiny_tokenizer(config: FlashVideoConfig) -> VQTokenizer:
    """A random VQ tokenizer matching the config (only the demo decodes frames)."""
    words = [f"w{i}" for i in range(1, config.n_text)]
    ds = config.image_size // config.grid
    vq = VQVAE(image_size=config.image_size, downsample=ds, n_codes=config.n_codes, code_dim=8, channels=16, n_res=1)
    return VQTokenizer(WordTokenizer(words), vq)


def build_models(config: FlashVideoConfig, s: Settings, which=METHODS) -> dict:
    from .baselines.evdm import EVDM
    from .baselines.masked import MaskedDecoder
    from .baselines.transformer import ARTransformer

    torch.manual_seed(0)
    models = {}
    if "flashvideo" in which:
        models["flashvideo"] = FlashVideoPipeline(RetNet(config), tiny_tokenizer(config))
    if "transformer_kv" in which or "transformer_nocache" in which:
        models["transformer"] = ARTransformer(config).eval()
    if "masked" in which:
        models["masked"] = MaskedDecoder(config, steps=s.masked_steps).eval()
    if "evdm" in which:
        models["evdm"] = EVDM.from_flashvideo(config, steps=s.evdm_steps).eval()
    return models


def n_params(m) -> int:
    m = m.model if isinstance(m, FlashVideoPipeline) else m
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------------------ per-method runs

def nocache_forward_fit(model, lengths, reps: int) -> dict:
    """Forward time of the whole prefix against its length: least-squares t(L) = a + bL + cL^2
    (relative error weighted), from forwards timed in this run."""
    times = []
    with torch.no_grad():
        for L in lengths:
            x = torch.randint(0, model.config.n_codes, (1, L))
            times.append(time_call(lambda: model(x), reps=reps, warmup=1))
    Ls, ts = np.array(lengths, float), np.array(times)
    A = np.stack([np.ones_like(Ls), Ls, Ls ** 2], 1) / ts[:, None]
    coef = np.linalg.lstsq(A, np.ones_like(ts), rcond=None)[0]
    return {"lengths": list(lengths), "seconds": times, "coef": coef.tolist()}


def nocache_predict(fit: dict, layout: Layout, n_frames: int, sample_s: float) -> list[float]:
    """Predicted cumulative seconds per frame: one forward of the whole prefix per sampled code."""
    a, b, c = fit["coef"]
    cum, total = [], 0.0
    for k in range(n_frames):
        L = k * layout.frame_len + layout.header_len + np.arange(layout.config.frame_tokens)
        total += float(np.sum(a + b * L + c * L ** 2)) + sample_s * len(L)
        cum.append(total)
    return cum


def run_methods(config: FlashVideoConfig, n_frames: int, s: Settings, nocache_budget: float | None = None) -> dict:
    """Cumulative seconds at each frame boundary (median of repeats) for every method, plus
    sequential steps per frame, parameters and notes."""
    from .baselines import masked as M
    from .baselines import transformer as T
    from .sampler import Sampler

    layout = Layout(config)
    text = layout.text_block(TEXT_IDS)
    models = build_models(config, s)
    N = config.frame_tokens
    out = {}

    pipe = models["flashvideo"]
    counts = {}
    cum = repeat_curve(lambda: pipe.key_frame_codes(text, n_frames, seed=0, counts=counts), s.repeats,
                       warmup=lambda: pipe.key_frame_codes(text, 1, seed=0))
    fv_steps = counts["steps"] / (s.repeats * n_frames)
    out["flashvideo"] = {"cum": cum, "steps_per_frame": fv_steps, "params": n_params(pipe), "measured_frames": n_frames}

    tf = models["transformer"]
    cum = repeat_curve(lambda: T.generate_frames(tf, text, n_frames, seed=0, use_cache=True), s.repeats,
                       warmup=lambda: T.generate_frames(tf, text, 1, seed=0, use_cache=True))
    out["transformer_kv"] = {"cum": cum, "steps_per_frame": N, "params": n_params(tf), "measured_frames": n_frames}

    # no cache: fit the forward time, run for real as far as the budget allows, extrapolate the rest
    L_max = n_frames * layout.frame_len
    lengths = sorted({max(2, int(round(x))) for x in np.geomspace(layout.header_len + 1, L_max, 5)})
    fit = nocache_forward_fit(tf, lengths, reps=max(2, s.repeats))
    logits = torch.randn(1, config.n_codes)
    sampler = Sampler([torch.Generator().manual_seed(0)])
    sample_s = time_loop(lambda: sampler(logits), 50)
    pred = nocache_predict(fit, layout, n_frames, sample_s)
    budget = s.nocache_budget if nocache_budget is None else nocache_budget
    measured = max([k for k in range(1, n_frames + 1) if pred[k - 1] * (s.repeats + 1) <= budget] or [0])
    if measured:
        real = repeat_curve(lambda: T.generate_frames(tf, text, measured, seed=0, use_cache=False), s.repeats)
        scale_check = real[-1] / pred[measured - 1]
        cum = real + [real[-1] + pred[k] - pred[measured - 1] for k in range(measured, n_frames)]
    else:
        scale_check, cum = None, pred
    out["transformer_nocache"] = {"cum": cum, "steps_per_frame": N, "params": n_params(tf), "measured_frames": measured,
                                  "fit": fit, "measured_over_predicted": scale_check, "sample_seconds": sample_s}

    mk = models["masked"]
    cum = repeat_curve(lambda: M.generate_frames(mk, text, n_frames, seed=0), s.repeats,
                       warmup=lambda: M.generate_frames(mk, text, 1, seed=0))
    out["masked"] = {"cum": cum, "steps_per_frame": s.masked_steps + 1, "params": n_params(mk),
                     "measured_frames": n_frames, "refinement_steps": s.masked_steps}

    # EVDM: one block of k frames, `evdm_measure_steps` DDIM steps for real, scaled to evdm_steps
    ev = models["evdm"]
    k = ev.cfg.block_frames
    meas = min(s.evdm_measure_steps, s.evdm_steps)
    gen_text = torch.tensor([TEXT_IDS])

    def block():
        ev.sample_block(None, gen_text, torch.Generator().manual_seed(0), steps=meas)

    t_block = time_call(block, reps=s.repeats, warmup=1) * s.evdm_steps / meas
    cum = [math.ceil(f / k) * t_block for f in range(1, n_frames + 1)]
    out["evdm"] = {"cum": cum, "steps_per_frame": s.evdm_steps / k, "params": n_params(ev),
                   "measured_frames": 0, "block_seconds": t_block, "block_frames": k, "ddim_steps": s.evdm_steps,
                   "measured_steps": meas, "image_size": ev.cfg.image_size,
                   "gate": [(a.last_L, a.head_dim, a.last_choice) for a in ev.net.attention_layers()]}
    return out


# ------------------------------------------------------------------------------------ sections

def section_frames(s: Settings) -> dict:
    config = model_config(s, max_key_frames=max(max(s.frames), 2))
    K = max(s.frames)
    res = run_methods(config, K, s)
    rows = []
    for f in s.frames:
        row = {"frames": f}
        for m in METHODS:
            cum = res[m]["cum"]
            row[m] = cum[f - 1] / f
            row[m + "_frame"] = cum[f - 1] - (cum[f - 2] if f > 1 else 0.0)  # cost of the f-th frame alone
            row[m + "_extrapolated"] = f > res[m]["measured_frames"]
        rows.append(row)
    return {"config": config.to_dict(), "tokens_per_frame": config.frame_tokens, "rows": rows,
            "methods": {m: {k: v for k, v in res[m].items() if k != "cum"} | {"cum": res[m]["cum"]} for m in METHODS}}


def section_tokens(s: Settings, frames_section: dict | None = None) -> dict:
    rows = []
    details = {}
    for g in s.grids:
        config = model_config(s, grid=g, max_key_frames=max(2, s.token_frames))
        row = {"grid": g, "tokens": g * g, "image_size": config.image_size}
        reuse = (frames_section is not None and g == s.grid and s.token_frames in s.frames)
        if reuse:  # the frames section already generated these frames (its first K frames = a K-frame video)
            fr = next(r for r in frames_section["rows"] if r["frames"] == s.token_frames)
            for m in METHODS:
                row[m], row[m + "_extrapolated"] = fr[m], fr[m + "_extrapolated"]
            row["from_frames_section"] = True
        else:
            res = run_methods(config, s.token_frames, s, nocache_budget=s.nocache_budget_tokens)
            for m in METHODS:
                row[m] = res[m]["cum"][-1] / s.token_frames
                row[m + "_extrapolated"] = s.token_frames > res[m]["measured_frames"]
            details[g] = {m: {k: v for k, v in res[m].items() if k in ("steps_per_frame", "measured_frames", "gate",
                                                                       "measured_over_predicted", "block_seconds")}
                          for m in METHODS}
        rows.append(row)
    return {"frames": s.token_frames, "rows": rows, "details": details}


def moving_object_keys(config: FlashVideoConfig, n_keys: int, seed: int = 0) -> list[torch.Tensor]:
    """Key-frame code grids: a fixed random background and a 2x2 object of one code that moves one
    token diagonally per key frame, so neighbouring key frames differ only around the object."""
    G = config.grid
    g = torch.Generator().manual_seed(seed)
    background = torch.randint(0, config.n_codes, (G, G), generator=g)
    obj = int(torch.randint(0, config.n_codes, (1,), generator=g))
    keys = []
    for k in range(n_keys):
        f = background.clone()
        r = min(k, G - 2)
        f[r:r + 2, r:r + 2] = obj
        keys.append(f)
    return keys


def section_interp(s: Settings) -> dict:
    from .regions import UNSTABLE, INHERITABLE, token_regions
    from .pipeline import _generator, child_seed

    config = model_config(s, max_key_frames=max(2, s.key_frames), max_interp_frames=max(1, s.interp_frames))
    torch.manual_seed(0)
    pipe = FlashVideoPipeline(RetNet(config), tiny_tokenizer(config))
    layout = pipe.layout
    text = layout.text_block(TEXT_IDS)
    keys = moving_object_keys(config, s.key_frames)
    n, P, N = s.interp_frames, s.key_frames - 1, config.frame_tokens
    frames = P * n
    rows, warmed = [], set()
    for rho in s.rhos:
        # the regions the pipeline will draw (same seeds), for the union-of-positions report
        regions = [token_regions(keys[p], keys[p + 1], rho, _generator(child_seed(0, 1, p))) for p in range(P)]
        unknown = torch.stack([(r != INHERITABLE).flatten() for r in regions])  # (P, N)
        union = int(unknown.any(0).sum())
        per_pair = unknown.sum(1).tolist()
        region_sizes = {"different": sum(int((r == 0).sum()) for r in regions) / P,
                        "unstable": sum(int((r == UNSTABLE).sum()) for r in regions) / P,
                        "inheritable": sum(int((r == INHERITABLE).sum()) for r in regions) / P}
        row = {"rho": rho, "union_positions": union, "sampled_per_pair": per_pair,
               "mean_sampled_per_frame": sum(per_pair) / P, "regions_per_pair": region_sizes,
               "idle_row_steps_fraction": 1 - sum(per_pair) / (P * union) if union else 0.0}
        for batch in (True, False):
            for chunked in (True, False):
                pipe.chunked_prefill = chunked
                holder = {}

                def run():
                    counts = {}
                    for _ in pipe.interpolation_codes(text, keys, n, rho, seed=0, batch_pairs=batch, counts=counts):
                        pass
                    holder["counts"] = counts

                tag = ("batched" if batch else "per_pair") + ("_chunked" if chunked else "_stepwise")
                reps = s.interp_repeats if chunked else 1
                sec = time_call(run, reps=reps, warmup=1 if tag not in warmed else 0)
                warmed.add(tag)
                c = holder["counts"]
                row[tag] = {"seconds_per_frame": sec / frames, "steps_per_frame": c["steps"] / frames,
                            "sampled_per_frame": c["sampled"] / frames, "chunks": c["chunks"],
                            "steps_total": c["steps"], "runs": reps}
        rows.append(row)
    pipe.chunked_prefill = True
    return {"config": {"grid": config.grid, "key_frames": s.key_frames, "interp_frames": n, "pairs": P},
            "keys": "fixed random background; a 2x2 object moving one token diagonally per key frame",
            "rows": rows}


def step_cost(config: FlashVideoConfig, batch: int = 1) -> dict:
    """FLOPs (2 per multiply-add) and bytes read/written by one recurrent RetNet step, analytically."""
    d, L, H, V = config.d_model, config.n_layers, config.n_heads, config.n_codes
    dh, h = d // H, int(config.ffn_mult * d)
    linear = {"qkvg": (d, 4 * d), "out": (d, d), "glu_up": (d, 2 * h), "glu_down": (h, d)}
    flops_linear = L * sum(2 * i * o for i, o in linear.values()) + 2 * d * V
    # retention: kv = k^T v (dh^2 mul), gamma*S + kv (2 dh^2), q S (2 dh^2) per head
    flops_retention = L * H * 5 * dh * dh
    flops_elementwise = L * 40 * d + 10 * d  # norms, rotations, gates, residuals (approximate)
    weight_bytes = 4 * (L * sum(i * o for i, o in linear.values()) + d * V + d)  # + one embedding row
    state_bytes = 4 * 2 * L * H * dh * dh  # read and write the (dh x dh) state of every head
    return {"flops": batch * (flops_linear + flops_retention) + flops_elementwise,
            "flops_linear": batch * flops_linear, "flops_retention": batch * flops_retention,
            "weight_bytes": weight_bytes, "state_bytes": batch * state_bytes,
            "bytes": weight_bytes + batch * state_bytes,
            "linear_shapes": [(i, o) for i, o in linear.values()] * L + [(d, V)]}


def count_ops(fn) -> int:
    """Number of aten operators dispatched by fn()."""
    try:
        from torch.utils._python_dispatch import TorchDispatchMode
    except ImportError:  # pragma: no cover
        return -1

    class Counter(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.n += 1
            return func(*args, **(kwargs or {}))

    with Counter():
        fn()
    return Counter.n


def section_floor(s: Settings, frames_section: dict | None) -> dict:
    import torch.nn.functional as F

    from .baselines.transformer import ARTransformer
    from .sampler import Sampler

    config = model_config(s)
    torch.manual_seed(0)
    model = RetNet(config).eval()
    cost = step_cost(config)
    reps = max(3, s.repeats)
    n_loop = 50 if s.quick else 100

    # machine rates, in this run
    m = 256 if s.quick else 1024
    a, b = torch.randn(m, m), torch.randn(m, m)
    gemm_s = time_loop(lambda: a @ b, 3 if s.quick else 10, reps)
    gemm_gflops = 2 * m ** 3 / gemm_s / 1e9
    big = 1024 if s.quick else 4096  # a weight far larger than the caches: DRAM bandwidth
    W, x = torch.randn(big, big), torch.randn(1, big)
    big_s = time_loop(lambda: F.linear(x, W), 5 if s.quick else 20, reps)
    dram_gbs = 4 * big * big / big_s / 1e9
    shapes = {}
    for i, o in cost["linear_shapes"]:
        if (i, o) not in shapes:
            Wi, xi = torch.randn(o, i), torch.randn(1, i)
            t = time_loop(lambda: F.linear(xi, Wi), n_loop, reps)
            shapes[(i, o)] = {"in": i, "out": o, "seconds": t, "gflops": 2 * i * o / t / 1e9, "gbs": 4 * i * o / t / 1e9}
    gemv_floor = sum(shapes[sh]["seconds"] for sh in cost["linear_shapes"])

    # the step itself
    with torch.no_grad():
        _, state = model.prefill(torch.randint(0, config.n_codes, (1, 16)))
        idx = torch.tensor([3])
        holder = {"state": state, "pos": 16}

        def step():
            holder["logits"], holder["state"] = model.step(idx, holder["state"], holder["pos"])
            holder["pos"] += 1

        step_s = time_loop(step, n_loop, reps)
        ops = count_ops(step)
        sampler = Sampler([torch.Generator().manual_seed(0)])
        sample_s = time_loop(lambda: sampler(holder["logits"]), n_loop, reps)
        profile = profile_step(step, 20 if s.quick else 100)

        # threads: 1 vs 2 for the recurrent step (and the transformer's cached step)
        tf = ARTransformer(config).eval()
        cache = tf.new_cache(1, 4096)
        tf(torch.randint(0, config.n_codes, (1, 16)), cache, 0)
        tf_idx = torch.tensor([[3]])

        def tf_step():
            if cache[0].n >= 4000:
                for c in cache:
                    c.n = 16
            tf(tf_idx, cache, cache[0].n)

        tf_ops = count_ops(tf_step)
        threads = {}
        old = torch.get_num_threads()
        for th in sorted({1, 2, old}):
            torch.set_num_threads(th)
            threads[th] = {"retnet_step": time_loop(step, 30, reps), "transformer_kv_step": time_loop(tf_step, 30, reps)}
        torch.set_num_threads(old)
        # the same step fused by torch.compile (RetNet.compile_step; what the app runs once warm)
        compiled_s = time_loop(step, n_loop, reps) if not s.quick and model.compile_step((1,)) else None

    flops_floor = cost["flops"] / (gemm_gflops * 1e9)
    bytes_floor = cost["bytes"] / (dram_gbs * 1e9)
    floor = max(flops_floor, bytes_floor)
    pipeline_token_s = None
    if frames_section is not None:
        row = frames_section["rows"][-1]
        pipeline_token_s = row["flashvideo"] / frames_section["tokens_per_frame"]
    return {"config": {"d_model": config.d_model, "n_layers": config.n_layers, "n_heads": config.n_heads,
                       "ffn_mult": config.ffn_mult, "n_codes": config.n_codes},
            "cost": {k: v for k, v in cost.items() if k != "linear_shapes"},
            "gemm_gflops": gemm_gflops, "gemm_size": m, "dram_gbs": dram_gbs, "dram_gemv_size": big,
            "gemv_shapes": list(shapes.values()), "gemv_floor_seconds": gemv_floor,
            "flops_floor_seconds": flops_floor, "bytes_floor_seconds": bytes_floor, "floor_seconds": floor,
            "step_seconds": step_s, "sample_seconds": sample_s, "compiled_step_seconds": compiled_s, "pipeline_token_seconds": pipeline_token_s,
            "step_over_floor": step_s / floor, "step_over_gemv_floor": step_s / gemv_floor,
            "pipeline_over_floor": pipeline_token_s / floor if pipeline_token_s else None,
            "ops_per_step": ops, "transformer_kv_ops_per_step": tf_ops, "profile": profile, "threads": threads}


def profile_step(step, n: int) -> list[dict]:
    """Top operators of the recurrent step by self CPU time (torch.profiler)."""
    try:
        from torch.profiler import ProfilerActivity, profile
    except ImportError:  # pragma: no cover
        return []
    step()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(n):
                step()
    rows = []
    for e in prof.key_averages():
        rows.append({"op": e.key, "calls_per_step": e.count / n, "us_per_step": e.self_cpu_time_total / n})
    total = sum(r["us_per_step"] for r in rows)
    rows.sort(key=lambda r: -r["us_per_step"])
    for r in rows:
        r["share"] = r["us_per_step"] / total if total else 0.0
    return rows[:10]


def section_evdm_flops(s: Settings) -> dict:
    from .baselines import evdm as E

    config = model_config(s)
    cfg = E.EVDMConfig.from_flashvideo(config, steps=s.evdm_steps)
    width, size = config.d_model, max(4, config.image_size // 2)
    blocks = [E.block_flops(width, width, size, delta=dl, emb_dim=4 * cfg.base_channels) for dl in (4, 8)]
    blocks.append(E.block_flops(width // 2, width, size, delta=4, emb_dim=4 * cfg.base_channels))
    net = {dl: E.network_flops(replace(cfg, delta=dl)) for dl in (4, 8)}
    ev = E.EVDM(cfg).eval()
    x = torch.randn(1, 3 * cfg.block_frames, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        ev.net(x, torch.tensor([1]), None, torch.tensor([TEXT_IDS]))
    gate = [{"L": a.last_L, "heads": a.heads, "d": a.head_dim, "choice": a.last_choice, "lambda_d": a.lam * a.head_dim}
            for a in ev.net.attention_layers()]
    return {"evdm_config": asdict(cfg), "blocks": blocks,
            "network": {str(k): v for k, v in net.items()}, "gate": gate,
            "paper": {**E.PAPER_TABLE1, "table2_kth_mcvd_over_evdm": E.PAPER_TABLE2_KTH["mcvd_gflops"] / E.PAPER_TABLE2_KTH["evdm_gflops"],
                      "table2_kth_mcvd_over_evdm_l": E.PAPER_TABLE2_KTH["mcvd_gflops"] / E.PAPER_TABLE2_KTH["evdm_l_gflops"]}}


def section_demo(s: Settings) -> dict:
    if s.quick:
        from .data import shapes

        config = FlashVideoConfig(image_size=16, grid=4, n_codes=16, n_text=len(shapes.vocabulary()) + 1, text_len=4,
                                  max_key_frames=5, max_interp_frames=4, d_model=32, n_heads=4, n_layers=2, chunk_size=16)
        torch.manual_seed(0)
        vq = VQVAE(image_size=16, downsample=4, n_codes=16, code_dim=8, channels=16, n_res=1)
        pipe = FlashVideoPipeline(RetNet(config), VQTokenizer(WordTokenizer(shapes.vocabulary()), vq))
        weights = "random weights, tiny quick-mode model (16x16 frames, grid 4)"
    elif (DEFAULT_CHECKPOINT / "model.safetensors").exists():
        pipe = FlashVideoPipeline.from_pretrained(DEFAULT_CHECKPOINT)
        weights = f"checkpoint {DEFAULT_CHECKPOINT}"
    else:
        from .data import shapes

        torch.manual_seed(0)
        config = FlashVideoConfig()
        pipe = FlashVideoPipeline(RetNet(config), VQTokenizer(WordTokenizer(shapes.vocabulary()), VQVAE()))
        weights = "random weights (no checkpoints/shapes): default FlashVideoConfig and default VQ-VAE"
    K, n = 4, 3
    runs = []

    def run():
        t0 = time.perf_counter()
        first, last = None, None
        for ev in pipe.stream(s.demo_prompt, key_frames=K, interp_frames=n, inherit_ratio=0.2, seed=0):
            first = first if first is not None else time.perf_counter() - t0
            last = ev
        runs.append({"total": time.perf_counter() - t0, "first": first, "stats": last.stats})

    run()  # warm-up
    runs.clear()
    for _ in range(s.repeats):
        run()
    total, first = median([r["total"] for r in runs]), median([r["first"] for r in runs])
    stats = runs[-1]["stats"]
    frames = K + (K - 1) * n
    return {"weights": weights, "prompt": s.demo_prompt, "key_frames": K, "interp_frames": n, "frames": frames,
            "image_size": pipe.config.image_size, "grid": pipe.config.grid, "seconds": total,
            "time_to_first_frame": first, "seconds_per_frame": total / frames, "fps": frames / total,
            "tokens_sampled": stats.get("total_sampled"), "tokens_inherited": stats.get("total_inherited"),
            "recurrent_steps": stats.get("total_steps")}


# ------------------------------------------------------------------------------------ report

def fmt_s(x, extrapolated=False):
    if x is None:
        return "-"
    s = f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"
    return s + (" *" if extrapolated else "")


def markdown(r: dict) -> str:
    L = []
    mi = r["machine"]
    L.append("# FlashVideo speed benchmark" + (" (quick mode: tiny sizes, 1 repeat)" if r["settings"]["quick"] else ""))
    L.append("")
    L.append(f"Machine: {mi['cpu']}, {mi['cores']} cores, torch {mi['torch']}, {mi['threads']} thread(s) for the "
             f"main measurements, load average at start {mi['load_average_at_start']}. "
             f"Medians of {r['settings']['repeats']} runs after a warm-up. {mi['note'].capitalize()}. "
             f"Total bench time {r['bench_seconds']:.0f} s, in which this process used {mi['cpu_share']:.2f} cores of CPU time "
             f"(well below the thread count means other processes competed for the cores: absolute times are inflated, "
             f"ratios less so).")
    L.append("")
    if "frames" in r:
        f = r["frames"]
        L.append(f"## Seconds per frame vs number of frames ({f['tokens_per_frame']} tokens per frame)")
        L.append("")
        L.append("Average cost per frame of a K-frame video (key-frame layout, batch 1). `*` = extrapolated, see notes. "
                 + PAPER_FIG6_NOTE + ".")
        L.append("")
        L.append("| K | " + " | ".join(LABELS[m] for m in METHODS) + " | KV / FlashVideo | no-cache / FlashVideo |")
        L.append("|---" * (len(METHODS) + 3) + "|")
        for row in f["rows"]:
            cells = [fmt_s(row[m], row[m + "_extrapolated"]) for m in METHODS]
            L.append(f"| {row['frames']} | " + " | ".join(cells) +
                     f" | {row['transformer_kv'] / row['flashvideo']:.2f}x | {row['transformer_nocache'] / row['flashvideo']:.1f}x |")
        L.append("")
        L.append("Cost of the K-th frame alone (marginal):")
        L.append("")
        L.append("| K | " + " | ".join(LABELS[m] for m in METHODS) + " |")
        L.append("|---" * (len(METHODS) + 1) + "|")
        for row in f["rows"]:
            L.append(f"| {row['frames']} | " + " | ".join(fmt_s(row[m + '_frame'], row[m + '_extrapolated']) for m in METHODS) + " |")
        L.append("")
        L.append("| method | params | sequential steps per frame | time to first frame | notes |")
        L.append("|---|---|---|---|---|")
        for m in METHODS:
            d = f["methods"][m]
            note = ""
            if m == "flashvideo":
                note = "real pipeline path (key_frame_codes): header chunkwise, codes one recurrent step each"
            elif m == "transformer_kv":
                note = "preallocated KV cache, header in one pass"
            elif m == "transformer_nocache":
                note = (f"real runs up to K={d['measured_frames']}; beyond: sum of fitted forward time "
                        f"t(L)=a+bL+cL^2 over the sampled tokens (forwards timed at L={d['fit']['lengths']})")
                if d.get("measured_over_predicted"):
                    note += f"; measured/fitted at K={d['measured_frames']}: {d['measured_over_predicted']:.2f}"
            elif m == "masked":
                note = f"{d['refinement_steps']} cosine-schedule refinement steps + 1 commit pass per frame, prefix KV cache"
            elif m == "evdm":
                note = (f"pixel space {d['image_size']}x{d['image_size']}, {d['block_frames']} frames per block, "
                        f"{d['ddim_steps']} DDIM steps (paper), {d['measured_steps']} timed and scaled; "
                        f"block {fmt_s(d['block_seconds'])}; a K-frame video costs ceil(K/{d['block_frames']}) blocks")
            L.append(f"| {LABELS[m]} | {d['params'] / 1e6:.2f} M | {d['steps_per_frame']:.3g} | {fmt_s(d['cum'][0])} | {note} |")
        L.append("")
    if "tokens" in r:
        t = r["tokens"]
        L.append(f"## Seconds per frame vs tokens per frame ({t['frames']} frames)")
        L.append("")
        L.append("| grid | tokens | pixels | " + " | ".join(LABELS[m] for m in METHODS) + " | KV / FlashVideo | no-cache / FlashVideo |")
        L.append("|---" * (len(METHODS) + 5) + "|")
        for row in t["rows"]:
            L.append(f"| {row['grid']} | {row['tokens']} | {row['image_size']} | " +
                     " | ".join(fmt_s(row[m], row[m + "_extrapolated"]) for m in METHODS) +
                     f" | {row['transformer_kv'] / row['flashvideo']:.2f}x | {row['transformer_nocache'] / row['flashvideo']:.1f}x |")
        L.append("")
        if any(row.get("from_frames_section") for row in t["rows"]):
            L.append(f"Grid {r['settings']['grid']}: the first {t['frames']} frames of the frames section's runs.")
            L.append("")
    if "interp" in r:
        it = r["interp"]
        c = it["config"]
        L.append(f"## Redundant-free interpolation vs inheritable ratio rho")
        L.append("")
        L.append(f"{c['key_frames']} key frames ({c['pairs']} pairs), {c['interp_frames']} inserted per pair, grid {c['grid']}; "
                 f"keys: {it['keys']}. Per in-between frame: seconds / sequential recurrent steps. "
                 "batched = all pairs in one batch (a position is a step if any pair samples there); per pair = one pair "
                 "at a time; chunked = known spans through the chunkwise form; stepwise = known tokens one recurrent step each "
                 f"(chunked: median of {r['settings']['interp_repeats']} runs; stepwise: 1 run).")
        L.append("")
        L.append("| rho | sampled/frame | union positions | idle row-steps | batched+chunked | batched+stepwise | per pair+chunked | per pair+stepwise |")
        L.append("|---|---|---|---|---|---|---|---|")
        for row in it["rows"]:
            cells = []
            for tag in ("batched_chunked", "batched_stepwise", "per_pair_chunked", "per_pair_stepwise"):
                d = row[tag]
                cells.append(f"{fmt_s(d['seconds_per_frame'])} / {d['steps_per_frame']:.1f}")
            L.append(f"| {row['rho']:.1f} | {row['mean_sampled_per_frame']:.1f} | {row['union_positions']} | "
                     f"{row['idle_row_steps_fraction']:.0%} | " + " | ".join(cells) + " |")
        L.append("")
        best = [("batched" if r0["batched_chunked"]["seconds_per_frame"] <= r0["per_pair_chunked"]["seconds_per_frame"]
                 else "per pair") for r0 in it["rows"]]
        L.append("Design choice (union of sampling positions across the batch vs one pair at a time): faster per rho: "
                 + ", ".join(f"rho={row['rho']:.1f}: {b}" for row, b in zip(it["rows"], best)) +
                 ". The union costs `union positions` steps per frame for the whole batch; one pair at a time costs "
                 "the pairs' own sampled positions each, summed (steps/frame above are per in-between frame).")
        L.append("")
    if "floor" in r:
        fl = r["floor"]
        c = fl["cost"]
        L.append("## Floor of one recurrent step")
        L.append("")
        L.append(f"Model d_model={fl['config']['d_model']}, {fl['config']['n_layers']} layers, {fl['config']['n_heads']} heads, "
                 f"{fl['config']['n_codes']} codes. One step: {c['flops'] / 1e6:.2f} MFLOP "
                 f"({c['flops_linear'] / 1e6:.2f} in linear layers, {c['flops_retention'] / 1e6:.3f} in retention), "
                 f"{c['bytes'] / 1e6:.2f} MB read (weights {c['weight_bytes'] / 1e6:.2f} MB, state {c['state_bytes'] / 1e6:.3f} MB).")
        L.append("")
        L.append("| quantity | value |")
        L.append("|---|---|")
        L.append(f"| GEMM rate ({fl['gemm_size']}^3, this run) | {fl['gemm_gflops']:.1f} GFLOP/s |")
        L.append(f"| GEMV bandwidth ({fl['dram_gemv_size']}^2 weight, from DRAM) | {fl['dram_gbs']:.1f} GB/s |")
        for g in fl["gemv_shapes"]:
            L.append(f"| GEMV 1x{g['in']} @ {g['in']}x{g['out']} | {g['seconds'] * 1e6:.1f} us, {g['gflops']:.2f} GFLOP/s, {g['gbs']:.1f} GB/s |")
        L.append(f"| compute floor (FLOPs / GEMM rate) | {fl['flops_floor_seconds'] * 1e6:.1f} us |")
        L.append(f"| memory floor (bytes / DRAM GEMV bandwidth) | {fl['bytes_floor_seconds'] * 1e6:.1f} us |")
        L.append(f"| GEMV floor (the step's GEMVs alone, timed) | {fl['gemv_floor_seconds'] * 1e6:.1f} us |")
        L.append(f"| measured `RetNet.step` | {fl['step_seconds'] * 1e6:.1f} us = {fl['step_over_floor']:.1f}x floor, "
                 f"{fl['step_over_gemv_floor']:.1f}x GEMV floor |")
        if fl.get("compiled_step_seconds"):
            c = fl["compiled_step_seconds"]
            L.append(f"| `RetNet.step` after `compile_step()` (torch.compile) | {c * 1e6:.1f} us = "
                     f"{c / fl['floor_seconds']:.1f}x floor |")
        L.append(f"| aten ops dispatched per step | {fl['ops_per_step']} (transformer KV step: {fl['transformer_kv_ops_per_step']}) |")
        L.append(f"| Sampler draw per token | {fl['sample_seconds'] * 1e6:.1f} us |")
        if fl["pipeline_token_seconds"]:
            L.append(f"| pipeline per sampled token (frames section, K={r['frames']['rows'][-1]['frames']}) | "
                     f"{fl['pipeline_token_seconds'] * 1e6:.1f} us = {fl['pipeline_over_floor']:.1f}x floor |")
        L.append("")
        L.append("Threads (per call): " + "; ".join(
            f"{th} thread(s): RetNet step {v['retnet_step'] * 1e6:.0f} us, transformer KV step {v['transformer_kv_step'] * 1e6:.0f} us"
            for th, v in fl["threads"].items()) + ".")
        L.append("")
        L.append("Top operators of the step (torch.profiler, self CPU time):")
        L.append("")
        L.append("| op | calls/step | us/step | share |")
        L.append("|---|---|---|---|")
        for p in fl["profile"]:
            L.append(f"| {p['op']} | {p['calls_per_step']:.0f} | {p['us_per_step']:.1f} | {p['share']:.0%} |")
        L.append("")
    if "evdm_flops" in r:
        e = r["evdm_flops"]
        p = e["paper"]
        L.append("## EVDM FLOPs (torch.utils.flop_counter: convolutions, matmuls, attention)")
        L.append("")
        L.append("| what | plain (MCVD-style) | EVDM | reduction | paper |")
        L.append("|---|---|---|---|---|")
        for b in e["blocks"]:
            paper = f"Table 1 conv: x{p['conv_reduction_evdm']} (EVDM, delta 4), x{p['conv_reduction_evdm_l']} (EVDM-L, delta 8)"
            L.append(f"| block {b['c_in']}->{b['c_out']} ch, {b['size']}x{b['size']}, delta {b['delta']} | "
                     f"{b['plain_flops'] / 1e6:.1f} MFLOP | {b['evdm_flops'] / 1e6:.1f} MFLOP | x{b['ratio']:.2f} | {paper} |")
        for dl, n in e["network"].items():
            paper = (f"Table 2 KTH whole net: x{p['table2_kth_mcvd_over_evdm']:.2f} (EVDM), "
                     f"x{p['table2_kth_mcvd_over_evdm_l']:.2f} (EVDM-L)")
            L.append(f"| U-Net, one denoiser call, delta {dl} ({n['evdm_params'] / 1e6:.2f} M vs {n['plain_params'] / 1e6:.2f} M params) | "
                     f"{n['plain_flops'] / 1e9:.3f} GFLOP | {n['evdm_flops'] / 1e9:.3f} GFLOP | x{n['ratio']:.2f} | {paper} |")
        L.append("")
        L.append("Mixed-attention gate (FAVOR+ when L > lambda d): " +
                 ", ".join(f"L={g['L']}, d={g['d']}: {g['choice']}" for g in e["gate"]) + ".")
        L.append("")
    if "demo" in r:
        d = r["demo"]
        L.append("## Default demo video, end to end")
        L.append("")
        L.append(f"{d['weights']}. \"{d['prompt']}\", {d['key_frames']} key frames, {d['interp_frames']} inserted per pair "
                 f"({d['frames']} frames, {d['image_size']}x{d['image_size']}, grid {d['grid']}), rho 0.2, VQ decoding included.")
        L.append("")
        L.append("| total | time to first frame | per frame | frames/s | tokens sampled | inherited | recurrent steps |")
        L.append("|---|---|---|---|---|---|---|")
        L.append(f"| {fmt_s(d['seconds'])} | {fmt_s(d['time_to_first_frame'])} | {fmt_s(d['seconds_per_frame'])} | "
                 f"{d['fps']:.1f} | {d['tokens_sampled']} | {d['tokens_inherited']} | {d['recurrent_steps']} |")
        L.append("")
    L.append("Notes: `*` marks extrapolated cells (no-cache transformer beyond its time budget: fitted forward time "
             "summed over the tokens; EVDM: one block timed with fewer DDIM steps and scaled, blocks repeated). "
             "EVDM's frames arrive a block at a time, so its marginal cost is 0 inside a block. "
             "Token methods are timed to codes (no VQ decoding); EVDM outputs pixels. The machine may be shared: "
             "compare ratios within this run, not absolute times across runs.")
    return "\n".join(L) + "\n"


def plots(r: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return []
    written = []
    styles = {"flashvideo": "g-o", "transformer_kv": "b-s", "transformer_nocache": "b--^", "masked": "y-d", "evdm": "r--v"}
    for key, xkey, xlabel, name in (("frames", "frames", "frames K", "frames.png"),
                                    ("tokens", "tokens", "tokens per frame", "tokens.png")):
        if key not in r:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in METHODS:
            xs = [row[xkey] for row in r[key]["rows"]]
            ys = [row[m] for row in r[key]["rows"]]
            line, = ax.plot(xs, ys, styles[m], label=LABELS[m])
            ext = [(x, y) for x, y, row in zip(xs, ys, r[key]["rows"]) if row[m + "_extrapolated"]]
            if ext:  # extrapolated points: open markers
                ax.plot(*zip(*ext), linestyle="none", marker=line.get_marker(), markersize=9,
                        markerfacecolor="white", markeredgecolor=line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds per frame")
        ax.set_title(f"Per-frame cost vs {xlabel} (open markers: extrapolated)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)
    if "interp" in r:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
        rhos = [row["rho"] for row in r["interp"]["rows"]]
        for tag, st in (("batched_chunked", "g-o"), ("batched_stepwise", "g--o"), ("per_pair_chunked", "b-s"),
                        ("per_pair_stepwise", "b--s")):
            a1.plot(rhos, [row[tag]["seconds_per_frame"] for row in r["interp"]["rows"]], st, label=tag.replace("_", "+", 1))
            a2.plot(rhos, [row[tag]["steps_per_frame"] for row in r["interp"]["rows"]], st, label=tag.replace("_", "+", 1))
        a1.set_xlabel("inheritable ratio rho")
        a1.set_ylabel("seconds per in-between frame")
        a2.set_xlabel("inheritable ratio rho")
        a2.set_ylabel("sequential steps per in-between frame")
        a1.legend(fontsize=7)
        for a in (a1, a2):
            a.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "interpolation.png", dpi=110)
        plt.close(fig)
        written.append("interpolation.png")
    return written


SECTIONS = ["frames", "tokens", "interp", "floor", "evdm_flops", "demo"]


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
    return p


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="python -m flashvideo bench",
                                                 description=__doc__.split("\n\n")[0]))


def main(argv=None) -> dict:
    """Parse argv (a list of strings; None = sys.argv) and run the benchmark; returns the results dict."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark for parsed options (see `add_arguments`); write bench.md, bench.json, PNGs."""
    s = replace(QUICK if args.quick else FULL)
    if args.repeats is not None:
        s.repeats = max(1, args.repeats)
    if args.nocache_budget is not None:
        s.nocache_budget = args.nocache_budget
    if args.evdm_measure_steps is not None:
        s.evdm_measure_steps = max(1, args.evdm_measure_steps)
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
            if name == "frames":
                r["frames"] = section_frames(s)
            elif name == "tokens":
                r["tokens"] = section_tokens(s, r.get("frames"))
            elif name == "interp":
                r["interp"] = section_interp(s)
            elif name == "floor":
                r["floor"] = section_floor(s, r.get("frames"))
            elif name == "evdm_flops":
                r["evdm_flops"] = section_evdm_flops(s)
            elif name == "demo":
                r["demo"] = section_demo(s)
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


if __name__ == "__main__":
    main()
