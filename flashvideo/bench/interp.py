"""Section `interp`: redundant-free interpolation. Seconds and sequential steps per in-between frame
against the inheritable ratio rho, with and without batching the key-frame pairs, and with and without
chunkwise prefill of known spans; key frames differ only where a small object moved. Reports the
batch's union of sampling positions (the measured design choice of DESIGN.md)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..config import FlashVideoConfig
from ..pipeline import child_seed
from ..timeline import Timeline
from .common import TEXT_IDS, Settings, fmt_s, model_config, time_call, token_pipeline


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
    from ..regions import UNSTABLE, INHERITABLE, token_regions

    config = model_config(s, max_key_frames=max(2, s.key_frames), max_interp_frames=max(1, s.interp_frames))
    torch.manual_seed(0)
    pipe = token_pipeline(config)
    layout = pipe.layout
    text = layout.text_block(TEXT_IDS)
    keys = moving_object_keys(config, s.key_frames)
    timeline = Timeline(s.key_frames, s.interp_frames)
    n, P = timeline.interp_frames, timeline.n_pairs
    frames = timeline.n_interpolated
    rows, warmed = [], set()
    for rho in s.rhos:
        # the regions the pipeline will draw (same seeds), for the union-of-positions report
        regions = [token_regions(keys[p], keys[p + 1], rho, torch.Generator().manual_seed(child_seed(0, 1, p))) for p in range(P)]
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



def markdown(r: dict) -> list[str]:
    L = []
    it = r["interp"]
    c = it["config"]
    L.append("## Redundant-free interpolation vs inheritable ratio rho")
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
    return L


def plot(r: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return []
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
    return ["interpolation.png"]

