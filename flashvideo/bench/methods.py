"""Sections `frames` and `tokens`: seconds per frame of every method, against the number of frames and
against tokens per frame (key-frame layout, batch 1, random weights).

* frames -- a K-frame video, K = 1 ... 32, at a fixed grid: FlashVideo (the pipeline's public
            `key_frame_codes`), the transformer with and without a KV cache, the masked parallel decoder
            and EVDM. One video of the largest K is generated per repeat and timed at every frame
            boundary (generation is causal, so its first K frames cost what a K-frame video costs).
* tokens -- the same against tokens per frame (grids 8, 16, 20 = 64, 256, 400 tokens).

The no-cache transformer runs for real only while its predicted time fits `--nocache-budget`; beyond
that its time is the sum, over the tokens it would sample, of a forward-time curve t(L) = a + bL + cL^2
fitted in the same run. EVDM's DDIM sampler runs `--evdm-measure-steps` network evaluations per block
for real and is scaled linearly to the paper's 100 steps.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from ..config import FlashVideoConfig
from ..layout import Layout
from .common import (LABELS, METHODS, PAPER_FIG6_NOTE, TEXT_IDS, Settings, build_models, fmt_s, model_config,
                     n_params, repeat_curve, time_call, time_loop)


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
    from ..baselines import masked as M
    from ..baselines import transformer as T
    from ..sampler import Sampler

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



def markdown_frames(r: dict) -> list[str]:
    L = []
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
    return L


def markdown_tokens(r: dict) -> list[str]:
    L = []
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
    L.append("Notes: `*` marks extrapolated cells (no-cache transformer beyond its time budget: fitted forward time "
             "summed over the tokens; EVDM: one block timed with fewer DDIM steps and scaled, blocks repeated). "
             "EVDM's frames arrive a block at a time, so its marginal cost is 0 inside a block. "
             "Token methods are timed to codes (no VQ decoding); EVDM outputs pixels. The machine may be shared: "
             "compare ratios within this run, not absolute times across runs.")
    L.append("")
    return L


def plot(r: dict, key: str, out: Path) -> list[str]:
    """frames.png or tokens.png: seconds per frame of every method (open markers: extrapolated)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return []
    styles = {"flashvideo": "g-o", "transformer_kv": "b-s", "transformer_nocache": "b--^", "masked": "y-d", "evdm": "r--v"}
    xkey, xlabel, name = {"frames": ("frames", "frames K", "frames.png"),
                          "tokens": ("tokens", "tokens per frame", "tokens.png")}[key]
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
    return [name]
