"""`python -m flashvideo eval`: score a checkpoint on the shapes world, on every frame a viewer sees.

Every generated video (key frames and in-between frames alike) is read by the analytic detector
(`shapes.measure`) and compared with what the world's renderer would draw for the prompt:

* adherence -- colour, shape and motion of the whole video (`shapes.describe`), on seen (training)
  and held-out combinations;
* motion -- the share of frame-to-frame steps that go the prompted way (at least a quarter of the
  step the world takes, judged at the pixel grid's resolution: `forward_steps`), the share of the path
  that backtracks, and the net travel (or size change) as a share of the world's;
* stability -- the coefficient of variation of a moving object's area, the share of frames whose
  colour or shape class differs from the prompt (flicker), and garbled frames (no object, stray
  coloured pixels, or an area off by 2x from the video's median); and apart, how often the first frame (the first
  drawn from the prompt alone, or after `SamplingSettings.lead_in` dropped key frames) shows the prompted shape
  and colour;
* timing -- where each in-between frame sits between its key frames (0.25 / 0.5 / 0.75 for n = 3), over
  the pairs whose key frames moved the prompted way;
* length -- the same measures on the first and the last 4 key frames of 16-key-frame videos;
* prediction and interpolation -- PSNR/SSIM against the exact ground truth, interpolation at rho = 0
  and rho = 0.5 from the true key frames;
* inheritance -- the share of in-between tokens inherited at rho = 0.2, 0.5 and 1 on the example prompts;
* tokenizer -- held-out reconstruction PSNR, codebook usage, on ground-truth key-frame pairs how often
  "the code is equal" agrees with "the patch's pixels are equal" (the pixel truth behind the region split),
  and the measures above on ground-truth videos encoded and decoded (`round_trip`: a model's ceiling).

`check_detector` scores ground-truth renders of every combination (which must read 100 %) and a 1 px drift
(which must not read as motion); `main` refuses to print a table if it fails.
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
from .sampler import SamplingSettings
from .timeline import Timeline
from .world import ShapesWorld

EXAMPLES = ShapesWorld().example_prompts(6)   # the inheritance prompts: the world's examples, as in the app
FORWARD = 0.25          # a step goes the prompted way when it covers at least this share of the world's step
RESOLUTION = {"travel": 1.0, "size": 2.0}   # px at size 64: the least change of the world the pixel grid
                                            # always shows (hard edges cross pixel centres 1 px apart; a size
                                            # change moves each edge by half of it)
GARBLED_STRAY = 0.2     # share of loud pixels outside the object above which a frame is garbled
GARBLED_AREA = 2.0      # area this many times above or below the video's median: garbled (moving objects)


def psnr(a, b, peak: float = 255.0) -> float:
    """PSNR in dB of two images or stacks of them (arrays or CPU tensors); `peak` is the value range
    (255 for uint8 pixels, 2 for [-1, 1]). The one PSNR of the package (eval, tokenizer training)."""
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 images (H, W, 3): 11x11 Gaussian window (sigma 1.5), per channel."""
    x, y = (torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1)[:, None].double() for i in (a, b))
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    win = ((g / g.sum())[:, None] * (g / g.sum())[None, :])[None, None]  # (1, 1, 11, 11)
    mx, my = F.conv2d(x, win), F.conv2d(y, win)
    vx, vy = F.conv2d(x * x, win) - mx ** 2, F.conv2d(y * y, win) - my ** 2
    cxy = F.conv2d(x * y, win) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean())


# ------------------------------------------------------------------------------------ one video

def forward_steps(progress: np.ndarray, expected: np.ndarray, resolution: float) -> np.ndarray:
    """Which frame-to-frame steps go the prompted way: bool per step.

    A step goes forward when its progress covers `FORWARD` of the world's step. The world's own frames
    hold still for a step or more where its change stays below the pixel grid's `resolution` (a 0.5 px
    size change often moves no edge across a pixel centre), so a run of such holds (no backwards
    progress beyond a tenth of the resolution) counts as forward when the world's change over the run is
    below the resolution and the run, pooled with the forward step after it (or before it, at the end),
    covers `FORWARD` of the world's change. A stall the grid would have shown is never forgiven."""
    ok = progress >= FORWARD * expected
    n, i = len(ok), 0
    while i < n:
        j = i
        while j < n and not ok[j] and progress[j] >= -0.1 * resolution:
            j += 1
        if j > i and expected[i:j].sum() < resolution - 1e-9:
            nb = j if j < n and ok[j] else (i - 1 if i and ok[i - 1] else None)
            if nb is not None:
                lo, hi = min(i, nb), max(j, nb + 1)
                ok[i:j] = progress[lo:hi].sum() >= FORWARD * expected[lo:hi].sum()
        i = max(j, i + 1)
    return ok


def off_prompt(measured: dict, colour: str, shape: str) -> np.ndarray:
    """Per frame of `shapes.measure`'s reading: whether its shape or colour differs from the prompt's (flicker)."""
    return np.array([s != shape or c != colour for s, c in zip(measured["shapes"], measured["colours"])], dtype=bool)


def video_scores(frames: np.ndarray, times, colour: str, shape: str, motion: str) -> dict:
    """Score one video (uint8 (T, H, W, 3), frame times in key-frame intervals) against its prompt."""
    size = frames.shape[1]
    k = size / 64
    m = shapes.measure(frames)
    expected = shapes.rate(motion) * k * np.diff(np.asarray(times, dtype=np.float64))
    progress = np.nan_to_num(shapes.progress(shapes.steps(m, size), motion), nan=0.0)
    area = m["area"][m["area"] > 0]
    moving = motion.startswith("moves")
    median = np.median(area) if len(area) else 0.0
    garbled = (m["area"] == 0) | (m["stray"] > GARBLED_STRAY)
    if moving and median:
        garbled |= (m["area"] > GARBLED_AREA * median) | (m["area"] < median / GARBLED_AREA)
    keys = [i for i, t in enumerate(times) if float(t).is_integer()]
    timing = {}
    for a, b in zip(keys, keys[1:]):
        total = progress[a:b].sum()
        if total < FORWARD * expected[a:b].sum():     # the key frames did not move the prompted way: a share
            continue                                  # of a near-zero change would be noise, not timing
        for j in range(1, b - a):
            timing.setdefault(j, []).append(progress[a:a + j].sum() / total)
    found = shapes.describe(frames)
    off = off_prompt(m, colour, shape)
    return {
        "colour": found["colour"] == colour, "shape": found["shape"] == shape, "motion": found["motion"] == motion,
        "forward": int(forward_steps(progress, expected, RESOLUTION["travel" if moving else "size"] * k).sum()),
        "steps": len(progress),
        "backtrack": float(-progress[progress < 0].sum()), "path": float(np.abs(progress).sum()),
        "net_share": float(progress.sum() / expected.sum()) if expected.sum() else float("nan"),
        "area_cv": float(area.std() / area.mean()) if moving and len(area) > 1 else None,
        "flicker": int(off.sum()), "first_right": not off[0],
        "frames": len(frames), "garbled": int(garbled.sum()), "timing": timing,
    }


def summarise(scores: list[dict]) -> dict:
    """Pool per-video scores: shares over videos, steps or frames as each measure needs."""
    if not scores:
        return {}
    n = len(scores)
    cvs = [s["area_cv"] for s in scores if s["area_cv"] is not None]
    timing = {}
    for s in scores:
        for j, v in s["timing"].items():
            timing.setdefault(j, []).extend(v)
    path = sum(s["path"] for s in scores)
    return {
        "videos": n,
        "colour": sum(s["colour"] for s in scores) / n, "shape": sum(s["shape"] for s in scores) / n,
        "motion": sum(s["motion"] for s in scores) / n,
        "forward_steps": sum(s["forward"] for s in scores) / max(1, sum(s["steps"] for s in scores)),
        "backtrack": sum(s["backtrack"] for s in scores) / path if path else 0.0,
        "net_within_25": sum(abs(s["net_share"] - 1) <= 0.25 for s in scores) / n,
        "net_share_median": float(np.median([s["net_share"] for s in scores])),
        "area_cv_median": float(np.median(cvs)) if cvs else None,
        "flicker_frames": sum(s["flicker"] for s in scores) / sum(s["frames"] for s in scores),
        "first_frame_right": sum(s["first_right"] for s in scores) / n,
        "garbled_frames": sum(s["garbled"] for s in scores),
        "frames": sum(s["frames"] for s in scores),
        "timing": {j: float(np.nanmean(v)) for j, v in sorted(timing.items())},
    }


def ground_truth_scores(tl: Timeline, size: int, seed: int, through=None) -> dict:
    """`summarise` of the world's own videos of every combination on timeline `tl` (clip i from seed + i),
    each passed through `through` (frames -> frames) first when given."""
    scores = []
    for i, (c, s, mo) in enumerate(shapes.ALL_COMBOS):
        frames = shapes.render(c, s, mo, seed + i, tl.times, size)
        scores.append(video_scores(through(frames) if through else frames, tl.times, c, s, mo))
    return summarise(scores)


def check_detector(size: int = 64, interp: tuple[int, ...] = (3, 7)) -> dict:
    """The detector must score ground-truth renders at 100 % and must not call a 1 px drift motion:
    every colour-shape-motion combination, 4 key frames with each count of in-between frames in `interp`,
    in-between frames on schedule. "ground_truth" holds the scores at the first count."""
    refs = [ground_truth_scores(Timeline(4, n), size, seed=7) for n in interp]
    tl = Timeline(4, interp[0])
    still = shapes.render("red", "square", "moves right", 3, [0] * len(tl.times), size)
    drift = np.stack([np.roll(f, int(round(i / (len(tl.times) - 1))), axis=1) for i, f in enumerate(still)])
    drift_scores = video_scores(drift, tl.times, "red", "square", "moves right")
    ok = not drift_scores["motion"] and all(
        ref["colour"] == ref["shape"] == ref["motion"] == ref["forward_steps"] == ref["net_within_25"]
        == ref["first_frame_right"] == 1.0 and ref["flicker_frames"] == 0 and ref["garbled_frames"] == 0
        and all(abs(t - j / (n + 1)) < 0.02 for j, t in ref["timing"].items())
        for n, ref in zip(interp, refs))
    ref = refs[0]
    return {"ok": bool(ok), "ground_truth": ref, "drift_1px": {k: drift_scores[k] for k in ("motion", "forward", "steps")}}


# ------------------------------------------------------------------------------------- the eval

def generated(pipe, combos, seed: int, desc: str, key_frames: int = 4, interp_frames: int = 3, **kw) -> list[dict]:
    tl = Timeline(key_frames, interp_frames)
    out = []
    for i, (c, s, mo) in enumerate(tqdm(combos, desc=desc, leave=False)):
        video = pipe(shapes.make_prompt(c, s, mo), key_frames=key_frames, interp_frames=interp_frames,
                     seed=seed + i, **kw)
        out.append(video_scores(video.frames, tl.times, c, s, mo))
    return out


def first_and_last(make_frames, combos, key_frames: int, window: int, desc: str) -> dict:
    """The eval's measures on the first and the last `window` key frames of long key-frame-only videos;
    make_frames(i, prompt) -> uint8 (key_frames, H, W, 3)."""
    first, last = [], []
    t = list(range(window))
    for i, (c, s, mo) in enumerate(tqdm(combos, desc=desc, leave=False)):
        frames = make_frames(i, shapes.make_prompt(c, s, mo))
        first.append(video_scores(frames[:window], t, c, s, mo))
        last.append(video_scores(frames[-window:], t, c, s, mo))
    return {"first": summarise(first), "last": summarise(last), "key_frames": key_frames, "window": window}


def long_videos(pipe, combos, seed: int, key_frames: int = 16, window: int = 4, **kw) -> dict:
    """Quality of the first and the last `window` key frames of `key_frames`-key-frame videos."""
    return first_and_last(lambda i, prompt: pipe(prompt, key_frames=key_frames, interp_frames=0, seed=seed + i, **kw).frames,
                          combos, key_frames, min(window, key_frames // 2), f"{key_frames} key frames")


def inheritance(pipe, ratios=(0.2, 0.5, 1.0), seed: int = 0, **kw) -> dict:
    """Share of in-between tokens inherited (copied, not sampled) on the example prompts."""
    out = {}
    for rho in ratios:
        inherited = total = 0
        for i, prompt in enumerate(EXAMPLES):
            for ev in pipe.stream(prompt, key_frames=4, interp_frames=3, inherit_ratio=rho, seed=seed + i, **kw):
                if ev.kind == "interpolated":
                    inherited += ev.stats["tokens_inherited"]
                    total += pipe.config.frame_tokens
        out[rho] = inherited / total
    return out


def prediction(pipe, n_clips: int, key_frames: int, seed: int, **kw) -> dict:
    ps, ss = [], []
    for i in tqdm(range(n_clips), desc="prediction", leave=False):
        clip = shapes.make_clip(2**40 + i, range(key_frames), "all", pipe.config.image_size)
        video = pipe(clip.prompt, key_frames=key_frames, interp_frames=0, first_frame=clip.frames[0],
                     seed=seed + i, **kw)
        ps += [psnr(p, t) for p, t in zip(video.frames[1:], clip.frames[1:])]
        ss += [ssim(p, t) for p, t in zip(video.frames[1:], clip.frames[1:])]
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "frames": len(ps)}


def interpolation(pipe, n_clips: int, n: int, ratio: float, seed: int, **kw) -> dict:
    """PSNR/SSIM of the n in-between frames, given the true key frames."""
    ps, ss, inherited, per_clip = [], [], 0, []
    tl = Timeline(2, n)
    for i in tqdm(range(n_clips), desc=f"interpolation rho={ratio}", leave=False):
        clip = shapes.make_clip(2**41 + i, tl.times, "all", pipe.config.image_size)
        keys = list(pipe.tokenizer.encode_frames(clip.frames[[0, -1]]))
        out = list(pipe.interpolation_codes(pipe.encode_prompt(clip.prompt), keys, n, ratio, seed + i, **kw))
        frames = pipe.tokenizer.decode_frames(torch.stack([codes for _, _, codes, _ in out]))
        ps += [psnr(f, t) for f, t in zip(frames, clip.frames[1:-1])]
        ss += [ssim(f, t) for f, t in zip(frames, clip.frames[1:-1])]
        per_clip.append(float(np.mean(ps[-n:])))
        inherited += sum(int((r == INHERITABLE).sum()) for *_, r in out)
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "clip_psnr": per_clip,
            "inherited": inherited / (len(ps) * pipe.config.frame_tokens), "rho": ratio}


def paired_cost(base: dict, other: dict) -> dict:
    """PSNR lost from `base` to `other` (interpolation results on the same clips and seeds), as the mean of the
    per-clip differences with its standard error: the two runs' samples part after the first inherited token, so
    their difference is noisy, and the error says how far to trust it."""
    d = np.asarray(base["clip_psnr"]) - np.asarray(other["clip_psnr"])
    return {"db": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan"),
            "clips": len(d)}


def code_pixel_agreement(tokenizer, frames_a: np.ndarray, frames_b: np.ndarray) -> float:
    """Share of tokens where "code(A) == code(B)" agrees with "patch pixels of A == those of B"."""
    g = tokenizer.grid
    p = tokenizer.image_size // g
    ca, cb = tokenizer.encode_frames(frames_a), tokenizer.encode_frames(frames_b)  # (N, g, g)
    diff = (frames_a != frames_b).any(-1).reshape(len(frames_a), g, p, g, p).any(axis=(2, 4))
    return float(((ca == cb).numpy() == ~diff).mean())


def tokenizer_scores(pipe, n_clips: int) -> dict:
    size = pipe.config.image_size
    held = np.concatenate([shapes.make_clip(2**42 + i, [0, 2.5, 5], "heldout", size).frames for i in range(n_clips)])
    codes = pipe.tokenizer.encode_frames(held)
    recon = pipe.tokenizer.decode_frames(codes)
    pairs = [shapes.make_clip(2**43 + i, [0, 1], "all", size).frames for i in range(n_clips)]
    a, b = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    return {"psnr": psnr(recon, held), "codes_used": int(len(torch.unique(codes))),
            "code_pixel_agreement": code_pixel_agreement(pipe.tokenizer, a, b), "round_trip": round_trip(pipe.tokenizer)}


def round_trip(tokenizer, key_frames: int = 4, interp_frames: int = 3) -> dict:
    """The eval's measures on ground-truth videos of every combination after encoding and decoding: the best
    a model drawing through this tokenizer can score (its shape and flicker ceiling)."""
    return ground_truth_scores(Timeline(key_frames, interp_frames), tokenizer.image_size, seed=2**44,
                               through=lambda f: tokenizer.decode_frames(tokenizer.encode_frames(f)))


def spread(combos: list, n: int) -> list:
    """n combinations spread evenly over the list."""
    return combos[:: max(1, len(combos) // n)][:n]


def evaluate(pipe, *, seen: int = 45, heldout: int = len(shapes.HELDOUT_COMBOS), clips: int = 24, long: int = 12,
             seed: int = 0, **sampling) -> dict:
    """All metrics as a dict: `seen` training and `heldout` held-out combinations (spread evenly), 4 key
    frames and 3 in-between frames at rho = 0.2 (`clips` seen ones also at the most in-between frames the model
    takes, where timing shows most); `long` videos of up to 16 key frames and `long` streams of 64; `clips` clips
    for PSNR/SSIM (4x as many for interpolation, whose rho = 0.5 cost is a small paired difference).
    `sampling` (temperature, top_k, ...) goes to the pipeline."""
    from .evaluate_stream import evaluate_streams

    t0 = time.perf_counter()
    train = spread(shapes.TRAIN_COMBOS, seen)
    seen_scores = generated(pipe, train, seed, "seen", inherit_ratio=0.2, **sampling)
    held_scores = generated(pipe, spread(shapes.HELDOUT_COMBOS, heldout), seed, "held out", inherit_ratio=0.2, **sampling)
    rho0, rho05 = (interpolation(pipe, 4 * clips, 3, rho, seed, **sampling) for rho in (0.0, 0.5))
    densest = pipe.config.max_interp_frames
    return {
        "seen": summarise(seen_scores), "heldout": summarise(held_scores),
        "all": summarise(seen_scores + held_scores),
        "densest": {"interp_frames": densest, **summarise(generated(pipe, spread(shapes.TRAIN_COMBOS, clips), seed,
                    f"{densest} in between", interp_frames=densest, inherit_ratio=0.2, **sampling))},
        "long": long_videos(pipe, spread(shapes.ALL_COMBOS, long), seed,
                            key_frames=min(16, pipe.config.max_key_frames), **sampling),
        "inheritance": inheritance(pipe, seed=seed, **sampling),
        "prediction": prediction(pipe, clips, 4, seed, **sampling),
        "interpolation_rho0": rho0, "interpolation_rho05": rho05, "rho05_cost": paired_cost(rho0, rho05),
        "tokenizer": tokenizer_scores(pipe, clips),
        "stream": evaluate_streams(pipe, long=long, switches=2 * long, seed=seed, **sampling),
        "settings": {"clips": clips, "seen_combinations": len(train), "seed": seed, **sampling},
        "seconds": round(time.perf_counter() - t0, 1),
    }


SWEEP = [dict(temperature=1.0), dict(temperature=0.8), dict(temperature=0.6), dict(temperature=0.8, top_k=8),
         dict(temperature=0.8, top_p=0.9), dict(temperature=1.0, guidance_scale=2.0),
         dict(temperature=0.8, guidance_scale=2.0), dict(temperature=0.6, guidance_scale=2.0),
         dict(temperature=0.8, guidance_scale=3.0), dict(temperature=0.9, guidance_scale=2.0),
         dict(temperature=0.8, guidance_scale=1.5)]


def sampling_sweep(pipe, settings: list[dict] = SWEEP, n: int = 24, seed: int = 0) -> list[dict]:
    """The eval's main measures for each sampling setting, on `n` training combinations (4 key frames,
    3 in-between, rho = 0.2): the table the defaults were chosen from. Each setting is complete as written
    (what it leaves out is neutral: temperature 1, no top-k / top-p / guidance), whatever the model's defaults."""
    combos = spread(shapes.TRAIN_COMBOS, n)
    rows = []
    for kw in settings:
        scores = summarise(generated(pipe, combos, seed, f"sweep {kw}", inherit_ratio=0.2,
                                     sampling=SamplingSettings(**kw)))
        rows.append({"settings": kw, **{k: scores[k] for k in ("colour", "shape", "motion", "forward_steps",
                                                               "net_within_25", "area_cv_median", "flicker_frames",
                                                               "garbled_frames")}})
    return rows


def sweep_markdown(rows: list[dict]) -> str:
    pct = "{:.0%}".format
    lines = ["| sampling | colour / shape / motion | steps forward | net within ±25 % | area CV | flicker | garbled |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        lines.append(f"| {name} | {pct(r['colour'])} / {pct(r['shape'])} / {pct(r['motion'])} | {pct(r['forward_steps'])} | "
                     f"{pct(r['net_within_25'])} | {r['area_cv_median']:.3f} | {pct(r['flicker_frames'])} | {r['garbled_frames']} |")
    return "\n".join(lines)


def to_markdown(r: dict) -> str:
    a, h, al, lg = r["seen"], r["heldout"], r["all"], r["long"]
    p, i0, i5, tok, inh = r["prediction"], r["interpolation_rho0"], r["interpolation_rho05"], r["tokenizer"], r["inheritance"]
    pct = "{:.0%}".format
    timing = " / ".join(f"{v:.2f}" for v in al["timing"].values())
    dense = r["densest"]
    n = dense["interp_frames"]
    world = " / ".join(f"{j / (n + 1):.2f}" for j in range(1, n + 1))
    rows = [
        ("adherence, seen ({videos} prompts): colour / shape / motion".format(**a),
         f"{pct(a['colour'])} / {pct(a['shape'])} / {pct(a['motion'])}"),
        ("adherence, held out ({videos} prompts): colour / shape / motion".format(**h),
         f"{pct(h['colour'])} / {pct(h['shape'])} / {pct(h['motion'])}"),
        ("frame-to-frame steps that go the prompted way", pct(al["forward_steps"])),
        ("share of the path that backtracks", pct(al["backtrack"])),
        ("videos whose net travel / size change is within ±25 % of the world's (median share)",
         f"{pct(al['net_within_25'])} ({al['net_share_median']:.2f})"),
        ("moving objects' area coefficient of variation (median)", f"{al['area_cv_median']:.3f}"),
        ("frames whose shape or colour differs from the prompt (flicker)", pct(al["flicker_frames"])),
        ("videos whose first frame shows the prompted shape and colour (after the sampling's lead-in frames, if any)",
         pct(al["first_frame_right"])),
        ("garbled or collapsed frames", f"{al['garbled_frames']} of {al['frames']}"),
        ("in-between timing (world: 0.25 / 0.50 / 0.75)", timing),
        (f"{n} in-between frames ({dense['videos']} seen prompts): timing (world: {world}); steps forward; flicker",
         " / ".join(f"{v:.2f}" for v in dense["timing"].values())
         + f"; {pct(dense['forward_steps'])}; {pct(dense['flicker_frames'])}"),
        (f"{lg['key_frames']}-key-frame videos, first vs last {lg['window']} key frames: steps forward",
         f"{pct(lg['first']['forward_steps'])} vs {pct(lg['last']['forward_steps'])}"),
        (f"{lg['key_frames']}-key-frame videos, first vs last {lg['window']} key frames: flicker",
         f"{pct(lg['first']['flicker_frames'])} vs {pct(lg['last']['flicker_frames'])}"),
        ("inherited share of in-between tokens at rho = 0.2 / 0.5 / 1 (example prompts)",
         " / ".join(pct(v) for v in inh.values())),
        ("prediction (first frame given), PSNR / SSIM", f"{p['psnr']:.2f} dB / {p['ssim']:.3f}"),
        ("interpolation rho=0, PSNR / SSIM", f"{i0['psnr']:.2f} dB / {i0['ssim']:.3f}"),
        ("interpolation rho=0.5, PSNR / SSIM (tokens inherited)",
         f"{i5['psnr']:.2f} dB / {i5['ssim']:.3f} ({pct(i5['inherited'])})"),
        ("rho = 0.5 cost against rho = 0: mean per-clip PSNR difference ± its standard error ({clips} clips)".format(
            **r["rho05_cost"]), "{db:.2f} ± {se:.2f} dB".format(**r["rho05_cost"])),
        ("tokenizer: held-out PSNR, codes used", f"{tok['psnr']:.2f} dB, {tok['codes_used']}"),
        ("tokenizer: 'code equal' agrees with 'patch pixels equal' (ground-truth key-frame pairs)",
         f"{tok['code_pixel_agreement']:.1%}"),
        ("tokenizer: ground truth encoded and decoded ({videos} videos): shape / steps forward / flicker / area CV".format(
            **tok["round_trip"]), "{} / {} / {} / {:.3f}".format(pct(tok["round_trip"]["shape"]),
                                                            pct(tok["round_trip"]["forward_steps"]),
                                                            pct(tok["round_trip"]["flicker_frames"]),
                                                            tok["round_trip"]["area_cv_median"])),
    ]
    if "stream" in r:
        from .evaluate_stream import markdown_rows

        rows += markdown_rows(r["stream"])
    rows.append(("recurrent step the videos were sampled with", f"`{r.get('step', 'eager')}`"))
    return "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def main(args) -> None:
    from .pipeline import FlashVideoPipeline

    check = check_detector()
    if not check["ok"]:
        raise RuntimeError(f"the detector does not score ground truth at 100 %: {check}")
    pipe = FlashVideoPipeline.from_pretrained(args.model)
    if getattr(args, "aoti", False) and not pipe.compile("aoti"):
        raise RuntimeError("--aoti: no step is built for this model on this CPU: run `python -m flashvideo.aot build`")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if getattr(args, "sweep", 0):
        t0 = time.perf_counter()
        rows = sampling_sweep(pipe, n=args.sweep, seed=args.seed)
        (out / "sweep.json").write_text(json.dumps(rows, indent=2, default=str))
        table = sweep_markdown(rows)
        (out / "sweep.md").write_text(table + "\n")
        print(table)
        print(f"\nwrote {out / 'sweep.md'} and {out / 'sweep.json'} in {time.perf_counter() - t0:.0f} s")
        return
    sampling = {k: getattr(args, k) for k in ("temperature", "top_k", "top_p", "guidance_scale")
                if getattr(args, k, None) is not None}
    result = evaluate(pipe, seen=args.seen, clips=args.clips, long=args.long, seed=args.seed, **sampling)
    result["detector_check"] = check
    result["step"] = pipe.model.step_backend
    (out / "eval.json").write_text(json.dumps(result, indent=2, default=str))
    table = to_markdown(result)
    (out / "eval.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out / 'eval.md'} and {out / 'eval.json'} in {result['seconds']} s")
