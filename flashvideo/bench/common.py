"""Shared by every bench section: settings, timing helpers, machine facts, model builders, formatting."""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import FlashVideoConfig
from ..pipeline import DEFAULT_CHECKPOINT, FlashVideoPipeline
from ..retnet import RetNet
from ..tokenizer import VQTokenizer, VQVAE, WordTokenizer

PAPER_FIG6_NOTE = ("FlashVideo paper Fig. 6 / sec. 4.2.2: O(L) vs O(L^2) against TATS, ~100x faster than "
                   "video diffusion, same order as MAGVIT/MaskViT")


# ------------------------------------------------------------------------------------ settings

SIZE_FIELDS = ("d_model", "n_layers", "n_heads", "ffn_mult")


def shipped_size() -> dict:
    """The shipped model's size (from its config.json), which the random-weight sections time, so that the floor,
    the headline and the long stream are the shipped model's; {} (the default config) where there is none."""
    try:
        config = FlashVideoConfig.load(DEFAULT_CHECKPOINT / "config.json")
    except (OSError, ValueError):
        return {}
    return {k: getattr(config, k) for k in SIZE_FIELDS}


@dataclass
class Settings:
    quick: bool = False
    repeats: int = 3
    model: dict = field(default_factory=shipped_size)  # FlashVideoConfig overrides of the benchmarked model
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
    headline_grid: int = 20                        # the paper's frame size: 20 x 20 = 400 tokens
    headline_frames: list = field(default_factory=lambda: [16, 32])
    headline_model: dict = field(default_factory=shipped_size)  # FlashVideoConfig overrides (default: the shipped size)
    aoti: bool = False                             # also build (if not cached) and time the AOTInductor step
    long_frames: list = field(default_factory=lambda: [10, 100, 1000])  # checkpoints of the long section
    transformer_frames: int = 300                  # the KV transformer's last frame in the long section
    users: list = field(default_factory=lambda: [1, 4, 16, 32])  # simultaneous users in the users section


FULL = Settings()
QUICK = Settings(quick=True, repeats=1, frames=[1, 2], grid=4, grids=[4, 6], pixels_per_code=4, token_frames=1,
                 rhos=[0.0, 1.0], key_frames=3, interp_frames=1, interp_repeats=1, masked_steps=2, evdm_steps=2,
                 evdm_measure_steps=2, nocache_budget=5.0, nocache_budget_tokens=2.0,
                 model=dict(n_codes=64, n_text=8, text_len=4, d_model=32, n_heads=4, n_layers=2, chunk_size=16),
                 headline_grid=4, headline_frames=[2, 4], long_frames=[10, 40], transformer_frames=40, users=[1, 2, 4],
                 headline_model=dict(n_codes=64, n_text=8, text_len=4, d_model=32, n_heads=4, n_layers=2, chunk_size=16))

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


def token_pipeline(config: FlashVideoConfig) -> FlashVideoPipeline:
    """A random-weight pipeline that decodes token by token (`draft_len` 0): the method sections time the recurrent
    step against the baselines' steps, and random weights would give drafts next to nothing to keep."""
    pipe = FlashVideoPipeline(RetNet(config), tiny_tokenizer(config))
    pipe.draft_len = 0
    return pipe


def build_models(config: FlashVideoConfig, s: Settings, which=METHODS) -> dict:
    from ..baselines.evdm import EVDM
    from ..baselines.masked import MaskedDecoder
    from ..baselines.transformer import ARTransformer

    torch.manual_seed(0)
    models = {}
    if "flashvideo" in which:
        models["flashvideo"] = token_pipeline(config)
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


# ------------------------------------------------------------------------------------ formatting

def fmt_s(x, extrapolated=False):
    if x is None:
        return "-"
    s = f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"
    return s + (" *" if extrapolated else "")

