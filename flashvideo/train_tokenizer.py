"""Train the VQ-VAE frame tokenizer on uint8 frames (`VQTokenizer.train` calls this), and measure how well
any tokenizer reconstructs frames (`evaluate_tokenizer`)."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .evaluate import psnr
from .tokenizer import VQVAE, Tokenizer


def _to_model(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [-1,1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _batches(frames_iter, batch_size: int, size: int):
    """Regroup the arrays (N,H,W,3) yielded by frames_iter into uint8 batches (batch_size,size,size,3)."""
    buf, have = [], 0
    for arr in frames_iter:
        arr = np.asarray(arr)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != (size, size, 3) or arr.dtype != np.uint8:
            raise ValueError(f"frames_iter must yield uint8 arrays (N,{size},{size},3), got {arr.shape} {arr.dtype}")
        buf.append(arr)
        have += len(arr)
        while have >= batch_size:
            allf = np.concatenate(buf)
            yield allf[:batch_size]
            buf, have = [allf[batch_size:]], have - batch_size


def _edge_mse(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MSE over the pixels of x (B,3,H,W) whose 3x3 neighbourhood is not flat: the edges that make a shape.
    Over a whole frame they are a few per cent of the pixels, so plain MSE pays little for drawing a small
    square's corners round."""
    spread = F.max_pool2d(x, 3, 1, 1) + F.max_pool2d(-x, 3, 1, 1)               # (B,3,H,W) max - min
    edge = (spread.amax(1, keepdim=True) > 0.1).to(x.dtype)                     # (B,1,H,W)
    return ((recon - x) ** 2 * edge).sum() / (3 * edge.sum()).clamp(min=1.0)


def train_tokenizer(frames_iter, *, vq_kwargs: dict | None = None, steps: int, batch_size: int, lr: float = 2e-3,
                    log_every: int = 100, progress: bool = True, l1_weight: float = 0.0,
                    restart_every: int = 50, weight_decay: float = 1e-4, seed: int = 0,
                    decoder_of: VQVAE | None = None, wrap: bool | None = None, edge_weight: float = 0.0):
    """Train VQVAE(**vq_kwargs) for `steps` batches from frames_iter (yields uint8 (N,H,W,3)).

    Loss = MSE(recon, x) + l1_weight * L1(recon, x) + edge_weight * `_edge_mse`(recon, x) + vq_loss, AdamW with
    linear warm-up then cosine decay.
    The codebook starts on encodings of the first batch; codes unused for `restart_every` steps are moved
    onto encodings of the current batch (until 80% of training).
    ``decoder_of``: a trained VQVAE whose encoder and codebook are kept as they are (every frame keeps its
    codes, so a model trained on them needs no retraining) while its decoder trains on, from its weights;
    ``wrap`` (with decoder_of): whether that decoder now pads around the frame (None: as before).
    Returns (vq in eval mode, metrics dict with the final running losses, the PSNR of the last logged
    batch and timings)."""
    torch.manual_seed(seed)
    if decoder_of is None:
        vq = VQVAE(**(vq_kwargs or {}))
    else:
        kwargs = dict(decoder_of.kwargs)
        if wrap is not None:
            kwargs["wrap"] = wrap
        vq = VQVAE(**kwargs)
        vq.load_state_dict(decoder_of.state_dict())
        vq.encoder.requires_grad_(False)
        vq.quantizer.requires_grad_(False)
    vq = vq.train().to(memory_format=torch.channels_last)                       # faster convs on CPU
    codebook = vq.quantizer.codebook
    params = [p for p in vq.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim == 4]                                  # conv kernels only
    no_decay = [p for p in params if p.ndim != 4]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))
    warmup = max(1, min(50, steps // 20))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))

    hist, run = [], {"loss": 0.0, "mse": 0.0, "vq": 0.0}
    n_run, restarts, done = 0, 0, 0
    start, cpu_start = time.time(), time.process_time()
    bar = tqdm(total=steps, disable=not progress, desc="vq", dynamic_ncols=True)
    for step, frames in enumerate(_batches(frames_iter, batch_size, vq.image_size)):
        if step >= steps:
            break
        x = _to_model(frames).contiguous(memory_format=torch.channels_last)       # (B,3,H,W)
        if decoder_of is not None:                                                # frozen codes
            with torch.no_grad():
                zq, vq_loss = vq.quantizer.embed(vq.encode(x)), torch.zeros(())
        else:
            z = vq.encode_latents(x)                                              # (B,D,h,w)
            if step % restart_every == 0 and step < 0.8 * steps:
                dead = vq.quantizer.restart_dead_codes(z, min_usage=1.0)
                restarts += len(dead) if step else 0
                state = opt.state.get(codebook)
                if state and len(dead):                                           # forget stale Adam moments
                    state["exp_avg"][dead] = 0
                    state["exp_avg_sq"][dead] = 0
            zq, vq_loss, _ = vq.quantizer(z)
        recon = vq.decoder(zq)
        mse = F.mse_loss(recon, x)
        loss = mse + vq_loss + (l1_weight * F.l1_loss(recon, x) if l1_weight else 0.0)
        if edge_weight:
            loss = loss + edge_weight * _edge_mse(recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vq.parameters(), 1.0)
        opt.step()
        sched.step()
        done = step + 1

        run["loss"] += loss.item(); run["mse"] += mse.item(); run["vq"] += vq_loss.item(); n_run += 1
        if done % log_every == 0 or done == steps:
            rec = {"step": done, **{k: v / n_run for k, v in run.items()}}
            rec["psnr"] = psnr(recon.detach().clamp(-1, 1), x, peak=2.0)          # this batch, on [-1,1]
            if decoder_of is None:
                rec["codes_used"] = int((vq.quantizer.usage > 0).sum())           # since last restart
            hist.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", psnr=f"{rec['psnr']:.1f}", codes=rec.get("codes_used", "kept"))
            run, n_run = {k: 0.0 for k in run}, 0
        bar.update(1)
    bar.close()
    if done == 0:
        raise ValueError("frames_iter yielded no complete batch")
    seconds = time.time() - start
    last = hist[-1] if hist else {}
    metrics = {"steps": done, "seconds": seconds, "step_time": seconds / done,
               "cpu_seconds": time.process_time() - cpu_start, "restarts": restarts,
               "loss": last.get("loss"), "mse": last.get("mse"), "vq_loss": last.get("vq"),
               "train_psnr": last.get("psnr"), "history": hist}
    return vq.eval(), metrics


def evaluate_tokenizer(tokenizer: Tokenizer, frames: np.ndarray) -> dict:
    """Encode + decode uint8 frames (N,H,W,3) through any tokenizer's codes. Returns psnr (dB, over all
    pixels), codebook_usage (fraction of codes used) and codes_used."""
    frames = np.asarray(frames)
    size = tokenizer.image_size
    if frames.ndim != 4 or frames.shape[1:] != (size, size, 3) or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"expected uint8 frames (N,{size},{size},3), got {frames.shape} {frames.dtype}")
    codes = tokenizer.encode_frames(frames)                                       # (N,h,w)
    used = int(len(torch.unique(codes)))
    return {"psnr": psnr(tokenizer.decode_frames(codes), frames), "codebook_usage": used / tokenizer.n_codes,
            "codes_used": used}
