"""Section `demo`: the default demo video end to end through `FlashVideoPipeline.stream` (4 key frames,
3 inserted per pair, VQ decoding included): total, time to first frame, frames per second."""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from ..config import FlashVideoConfig
from ..pipeline import DEFAULT_CHECKPOINT, FlashVideoPipeline
from ..retnet import RetNet
from ..timeline import Timeline
from ..tokenizer import VQTokenizer, VQVAE, WordTokenizer
from .common import Settings, fmt_s, median

DEMO_KEY_FRAMES, DEMO_INTERP_FRAMES, DEMO_RHO = 4, 3, 0.2  # the app's default video


def demo_pipeline(s: Settings):
    """(pipeline, what its weights are): the shipped checkpoint, else random weights at the default size; quick mode:
    a tiny random model. With --aoti, its step built ahead of time (built first if this machine has none)."""
    if s.quick:
        from ..data import shapes

        config = FlashVideoConfig(image_size=16, grid=4, n_codes=16, n_text=len(shapes.vocabulary()) + 1, text_len=4,
                                  max_key_frames=5, max_interp_frames=4, d_model=32, n_heads=4, n_layers=2, chunk_size=16)
        torch.manual_seed(0)
        vq = VQVAE(image_size=16, downsample=4, n_codes=16, code_dim=8, channels=16, n_res=1)
        pipe = FlashVideoPipeline(RetNet(config), VQTokenizer(WordTokenizer(shapes.vocabulary()), vq))
        weights = "random weights, tiny quick-mode model (16x16 frames, grid 4)"
    else:
        pipe, weights = None, "random weights (no checkpoints/shapes)"
        if (DEFAULT_CHECKPOINT / "model.safetensors").exists():
            try:
                pipe = FlashVideoPipeline.from_pretrained(DEFAULT_CHECKPOINT)
                weights = f"checkpoint {DEFAULT_CHECKPOINT}"
            except (ValueError, OSError) as e:  # e.g. a checkpoint older than the code: time random weights
                weights = f"random weights ({DEFAULT_CHECKPOINT} does not load: {str(e)[:120]})"
        if pipe is None:
            from ..data import shapes

            torch.manual_seed(0)
            config = FlashVideoConfig()
            pipe = FlashVideoPipeline(RetNet(config), VQTokenizer(WordTokenizer(shapes.vocabulary()), VQVAE()))
            weights += ": default FlashVideoConfig and default VQ-VAE"
    if s.aoti and pipe.model.step_backend == "eager":  # the step built ahead of time for these weights, if asked
        from .. import aot

        if not aot.built(aot.step_path(pipe.model)):
            aot.build_step(pipe.model)
        aot.load_step(pipe.model)
    return pipe, weights


def samplings(pipe) -> dict:
    """{name: (sampling, draft_len)}: the model's default sampling with the pipeline's drafted decoding, the same
    token by token (no drafts), and where they differ from the default, every frame guided and no guidance at all."""
    d, drafts = pipe.default_sampling, pipe.draft_len
    options = {"default": (d, drafts), "token by token (no drafts)": (d, 0),
               "every frame guided": (replace(d, guide_interp=True), drafts),
               "unguided": (replace(d, guidance_scale=1.0), drafts)}
    kept = {}
    for name, option in options.items():
        if option not in kept.values():
            kept[name] = option
    return kept


def section_demo(s: Settings) -> dict:
    """The default video with the model's default sampling; beside it, interleaved in the same repeats, the same
    video with the other samplings of `samplings` (as ratios to the default's time)."""
    pipe, weights = demo_pipeline(s)
    K, n = DEMO_KEY_FRAMES, DEMO_INTERP_FRAMES
    options = samplings(pipe)
    runs = {name: [] for name in options}

    def run(name):
        sampling, pipe.draft_len = options[name]
        t0 = time.perf_counter()
        first, last = None, None
        for ev in pipe.stream(s.demo_prompt, key_frames=K, interp_frames=n, inherit_ratio=DEMO_RHO, seed=0,
                              sampling=sampling):
            first = first if first is not None else time.perf_counter() - t0
            last = ev
        runs[name].append({"total": time.perf_counter() - t0, "first": first, "stats": last.stats})

    for name in options:  # warm-up
        run(name)
        runs[name].clear()
    for _ in range(s.repeats):
        for name in options:
            run(name)
    pipe.draft_len = options["default"][1]
    total, first = median([r["total"] for r in runs["default"]]), median([r["first"] for r in runs["default"]])
    stats = runs["default"][-1]["stats"]
    frames = Timeline(K, n).n_frames
    return {"weights": weights, "step": pipe.model.step_backend, "prompt": s.demo_prompt, "key_frames": K, "interp_frames": n, "frames": frames,
            "image_size": pipe.config.image_size, "grid": pipe.config.grid, "seconds": total,
            "time_to_first_frame": first, "seconds_per_frame": total / frames, "fps": frames / total,
            "tokens_sampled": stats.get("total_sampled"), "tokens_inherited": stats.get("total_inherited"),
            "model_calls": stats.get("total_steps", 0) + stats.get("total_passes", 0),
            "drafted_passes": stats.get("total_passes", 0), "sampling": str(options["default"][0]),
            "draft_len": options["default"][1],
            "samplings": {name: {"settings": f"{options[name][0]}, draft_len={options[name][1]}", "seconds": median([r["total"] for r in runs[name]]),
                                 "over_default": median([r["total"] for r in runs[name]]) / total} for name in options}}


def markdown(r: dict) -> list[str]:
    L = []
    d = r["demo"]
    L.append("## Default demo video, end to end")
    L.append("")
    L.append(f"{d['weights']}; recurrent step: {d.get('step', 'eager')}. \"{d['prompt']}\", {d['key_frames']} key frames, {d['interp_frames']} inserted per pair "
             f"({d['frames']} frames, {d['image_size']}x{d['image_size']}, grid {d['grid']}), rho 0.2, VQ decoding included.")
    L.append("")
    L.append("| total | time to first frame | per frame | frames/s | tokens sampled | inherited | sequential model calls |")
    L.append("|---|---|---|---|---|---|---|")
    L.append(f"| {fmt_s(d['seconds'])} | {fmt_s(d['time_to_first_frame'])} | {fmt_s(d['seconds_per_frame'])} | "
             f"{d['fps']:.1f} | {d['tokens_sampled']} | {d['tokens_inherited']} | {d['model_calls']} "
             f"({d['drafted_passes']} drafted passes of up to {d['draft_len']} drafts) |")
    L.append("")
    if len(d.get("samplings", {})) > 1:
        L.append("The same video decoded token by token and with other samplings, timed interleaved with the default "
                 "in the same repeats:")
        L.append("")
        L.append("| sampling | settings | total | × default |")
        L.append("|---|---|---|---|")
        for name, row in d["samplings"].items():
            L.append(f"| {name} | `{row['settings']}` | {fmt_s(row['seconds'])} | {row['over_default']:.2f}× |")
        L.append("")
    return L
