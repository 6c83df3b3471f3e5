"""Evaluation metrics and the eval command's plumbing (a random model: only ranges are checked)."""
import numpy as np
import torch

from flashvideo.config import FlashVideoConfig
from flashvideo.data import shapes
from flashvideo.evaluate import evaluate, psnr, ssim, to_markdown
from flashvideo.pipeline import FlashVideoPipeline
from flashvideo.retnet import RetNet
from flashvideo.tokenizer import VQTokenizer, VQVAE, WordTokenizer


def test_psnr_and_ssim():
    a = shapes.render("red", "circle", "grows", 0, [0.0])[0]
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 10, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, a) == float("inf") and abs(ssim(a, a) - 1) < 1e-9
    assert 25 < psnr(a, noisy) < 35 and 0 < ssim(a, noisy) < 0.99
    assert ssim(a, 255 - a) < ssim(a, noisy)


def test_evaluate_runs_end_to_end():
    torch.manual_seed(0)
    words = WordTokenizer(shapes.vocabulary())
    config = FlashVideoConfig(image_size=64, grid=8, n_codes=32, n_text=words.n_text, text_len=4, d_model=32,
                              n_heads=2, n_layers=1, max_key_frames=4, max_interp_frames=3)
    vq = VQVAE(image_size=64, downsample=8, n_codes=32, code_dim=8, channels=16, n_res=1)
    pipe = FlashVideoPipeline(RetNet(config), VQTokenizer(words, vq))
    r = evaluate(pipe, seen=2, clips=1, key_frames=3, interp_frames=2)
    assert r["adherence_seen"]["n"] == 2 and r["adherence_heldout"]["n"] == len(shapes.HELDOUT_COMBOS)
    for key in ("colour", "shape", "motion"):
        assert 0 <= r["adherence_heldout"][key] <= 1
    assert r["interpolation_rho0"]["inherited"] == 0 and 0 <= r["interpolation"]["inherited"] <= 1
    assert r["prediction"]["frames"] == 2
    table = to_markdown(r)
    assert table.count("\n") == 7 and "held out (15 prompts)" in table
