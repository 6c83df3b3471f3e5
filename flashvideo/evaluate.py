"""`python -m flashvideo eval`: score a checkpoint on the shapes world.

* prompt adherence -- colour, shape and motion recovered from generated key frames by the analytic
  detector `shapes.describe`, on seen (training) and held-out combinations;
* prediction -- text + the true first frame given: PSNR/SSIM of key frames 2..K against the ground truth;
* interpolation -- both true key frames given: PSNR/SSIM of the n in-between frames, at rho = 0 and the
  default rho, with the fraction of tokens inherited;
* tokenizer -- reconstruction PSNR of held-out frames (the ceiling for everything above).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import shapes
from .regions import INHERITABLE


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 images (H, W, 3): 11x11 Gaussian window (sigma 1.5), per channel."""
    x, y = (torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1)[:, None].double() for i in (a, b))
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :])[None, None]  # (1, 1, 11, 11)

    def blur(t):
        return F.conv2d(t, win)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _frame_scores(pred: np.ndarray, true: np.ndarray) -> tuple[list, list]:
    return [psnr(p, t) for p, t in zip(pred, true)], [ssim(p, t) for p, t in zip(pred, true)]


def adherence(pipe, combos, key_frames: int, seed: int, desc: str) -> dict:
    hits = {"colour": 0, "shape": 0, "motion": 0}
    for i, (colour, shape, motion) in enumerate(tqdm(combos, desc=desc, leave=False)):
        video = pipe(shapes.make_prompt(colour, shape, motion), key_frames=key_frames, interp_frames=0, seed=seed + i)
        found = shapes.describe(video.frames)
        for name, want in (("colour", colour), ("shape", shape), ("motion", motion)):
            hits[name] += found[name] == want
    return {k: v / len(combos) for k, v in hits.items()} | {"n": len(combos)}


def prediction(pipe, n_clips: int, key_frames: int, seed: int) -> dict:
    ps, ss = [], []
    for i in tqdm(range(n_clips), desc="prediction", leave=False):
        clip = shapes.make_clip(2**40 + i, range(key_frames), "all", pipe.config.image_size)
        video = pipe(clip.prompt, key_frames=key_frames, interp_frames=0, first_frame=clip.frames[0], seed=seed + i)
        p, s = _frame_scores(video.frames[1:], clip.frames[1:])
        ps += p
        ss += s
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "frames": len(ps)}


def interpolation(pipe, n_clips: int, n: int, ratio: float, seed: int) -> dict:
    ps, ss, inherited, total = [], [], 0, 0
    for i in tqdm(range(n_clips), desc=f"interpolation rho={ratio}", leave=False):
        times = shapes.frame_times(2, n)  # A, n in-between, B
        clip = shapes.make_clip(2**41 + i, times, "all", pipe.config.image_size)
        keys = list(pipe.tokenizer.encode_frames(clip.frames[[0, -1]]))
        text = pipe.encode_prompt(clip.prompt)
        out = list(pipe.interpolation_codes(text, keys, n, ratio, seed + i))
        frames = pipe.tokenizer.decode_frames(torch.stack([codes for _, _, codes, _ in out]))
        p, s = _frame_scores(frames, clip.frames[1:-1])
        ps += p
        ss += s
        inherited += sum(int((r == INHERITABLE).sum()) for *_, r in out)
        total += len(out) * pipe.config.frame_tokens
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "inherited": inherited / total}


def tokenizer_psnr(pipe, n_clips: int) -> float:
    frames = np.concatenate([shapes.make_clip(2**42 + i, [0, 2.5, 5], "heldout", pipe.config.image_size).frames
                             for i in range(n_clips)])
    recon = pipe.tokenizer.decode_frames(pipe.tokenizer.encode_frames(frames))
    return psnr(recon, frames)


def evaluate(pipe, *, seen: int = 45, key_frames: int = 4, interp_frames: int = 3, inherit_ratio: float = 0.2,
             clips: int = 24, seed: int = 0) -> dict:
    """All metrics as a dict. `seen` training combinations (evenly spread) and all held-out ones."""
    t0 = time.perf_counter()
    train = shapes.TRAIN_COMBOS[:: max(1, len(shapes.TRAIN_COMBOS) // seen)][:seen]
    return {
        "adherence_seen": adherence(pipe, train, key_frames, seed, "adherence (seen)"),
        "adherence_heldout": adherence(pipe, shapes.HELDOUT_COMBOS, key_frames, seed, "adherence (held out)"),
        "prediction": prediction(pipe, clips, key_frames, seed),
        "interpolation_rho0": interpolation(pipe, clips, interp_frames, 0.0, seed),
        "interpolation": interpolation(pipe, clips, interp_frames, inherit_ratio, seed) | {"rho": inherit_ratio},
        "tokenizer_psnr": tokenizer_psnr(pipe, clips),
        "settings": {"key_frames": key_frames, "interp_frames": interp_frames, "inherit_ratio": inherit_ratio,
                     "clips": clips, "seen_combinations": len(train), "seed": seed},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def to_markdown(r: dict) -> str:
    a, h = r["adherence_seen"], r["adherence_heldout"]
    p, i0, i = r["prediction"], r["interpolation_rho0"], r["interpolation"]
    pct = "{:.0%}".format
    return "\n".join([
        "| metric | value |", "|---|---|",
        f"| adherence, seen ({a['n']} prompts): colour / shape / motion | {pct(a['colour'])} / {pct(a['shape'])} / {pct(a['motion'])} |",
        f"| adherence, held out ({h['n']} prompts): colour / shape / motion | {pct(h['colour'])} / {pct(h['shape'])} / {pct(h['motion'])} |",
        f"| prediction (first frame given), PSNR / SSIM | {p['psnr']:.2f} dB / {p['ssim']:.3f} |",
        f"| interpolation rho=0, PSNR / SSIM | {i0['psnr']:.2f} dB / {i0['ssim']:.3f} |",
        f"| interpolation rho={i['rho']}, PSNR / SSIM (tokens inherited) | {i['psnr']:.2f} dB / {i['ssim']:.3f} ({pct(i['inherited'])}) |",
        f"| tokenizer reconstruction PSNR (held-out frames) | {r['tokenizer_psnr']:.2f} dB |",
    ])


def main(args) -> None:
    from .pipeline import FlashVideoPipeline

    pipe = FlashVideoPipeline.from_pretrained(args.model)
    result = evaluate(pipe, seen=args.seen, clips=args.clips, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    table = to_markdown(result)
    (out / "eval.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out / 'eval.md'} and {out / 'eval.json'} in {result['seconds']} s")
