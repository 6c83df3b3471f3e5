"""Section `evdm_flops`: EVDM's block and network FLOPs against plain conv blocks, next to the paper's
Table 1 and 2 (torch.utils.flop_counter: convolutions, matmuls, attention)."""
from __future__ import annotations

from dataclasses import asdict, replace

import torch

from .common import TEXT_IDS, Settings, model_config


def section_evdm_flops(s: Settings) -> dict:
    from ..baselines import evdm as E

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



def markdown(r: dict) -> list[str]:
    L = []
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
    return L
