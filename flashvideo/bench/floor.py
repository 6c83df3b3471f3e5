"""Section `floor`: FLOPs and bytes of one recurrent step (from the config), the machine's matmul and
GEMV rates on the step's own shapes, and the measured step as a multiple of the floor; with an operator
profile of the step, 1 vs 2 threads, and the sampler's cost per token."""
from __future__ import annotations

import torch

from ..config import FlashVideoConfig
from ..retnet import RetNet
from .common import Settings, model_config, time_loop


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

    from ..baselines.transformer import ARTransformer
    from ..sampler import Sampler

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
        # the same step fused by torch.compile (RetNet.compile_step, an opt-in; full mode only)
        compiled_s = time_loop(step, n_loop, reps) if not s.quick and model.compile_step((1,)) else None
        aoti = {}
        if s.aoti:  # the step built ahead of time (AOTInductor), for these weights on this CPU, in each precision
            from .. import aot

            for precision in aot.PRECISIONS:
                aot.unload_step(model)
                if not aot.step_path(model, precision=precision).exists():
                    aot.build_step(model, precision=precision)
                aoti[precision] = time_loop(step, n_loop, reps) if aot.load_step(model, precision=precision) else None
            aot.unload_step(model)

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
            "step_seconds": step_s, "sample_seconds": sample_s, "compiled_step_seconds": compiled_s,
            "aoti_step_seconds": aoti.get("float32"), "aoti_bf16_step_seconds": aoti.get("bfloat16"),
            "bf16_bytes_floor_seconds": (cost["bytes"] - cost["weight_bytes"] / 2) / (dram_gbs * 1e9),
            "pipeline_token_seconds": pipeline_token_s,
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



def markdown(r: dict) -> list[str]:
    L = []
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
    if fl.get("aoti_step_seconds"):
        c = fl["aoti_step_seconds"]
        L.append(f"| `RetNet.step` built ahead of time (`python -m flashvideo.aot build`) | {c * 1e6:.1f} us = "
                 f"{c / fl['floor_seconds']:.1f}x floor, {c / fl['gemv_floor_seconds']:.1f}x GEMV floor |")
    if fl.get("aoti_bf16_step_seconds"):
        c, f = fl["aoti_bf16_step_seconds"], fl["bf16_bytes_floor_seconds"]
        L.append(f"| the same built with bfloat16 weights (`--precision bfloat16`) | {c * 1e6:.1f} us = "
                 f"{c / fl['floor_seconds']:.2f}x the float32 floor, {c / f:.1f}x its own memory floor "
                 f"({f * 1e6:.1f} us) |")
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
    return L
