"""Masked parallel decoder baseline (MaskGIT / MAGVIT / MaskViT style), for benchmarks only.

The same transformer as `baselines.transformer` (width, depth, heads, GLU, vocabulary, layout) with
one extra input token, [MASK], and block-causal attention over frame slots: a slot
(`header + grid*grid codes`, see `flashvideo.layout`) sees every earlier slot and all of itself
(bidirectional within the frame). A frame is decoded in a fixed number of refinement steps:

* step 1 starts from all codes masked; every step predicts all masked codes at once, samples them
  (temperature / top-k, seeded), and re-masks the least confident of the newly sampled codes so that
  after step t, round(N * cos(pi/2 * t/steps)) codes stay masked (the cosine schedule; 0 after the
  last step). Codes kept in an earlier step are never re-masked.
* Each step is one forward of the current slot (N + header tokens) against the cached keys/values of
  the earlier slots; the finished slot is then run once more and committed to the cache.

So a frame costs `steps + 1` slot forwards instead of N token steps: fewer sequential steps, more
work per step, and attention over the prefix still grows with the video (O(L) per frame).
"""
from __future__ import annotations

import math

import torch

from ..config import FlashVideoConfig
from ..layout import KEY, Layout
from ..sampler import Sampler, SamplingSettings
from .transformer import ARTransformer


def cosine_schedule(n_tokens: int, steps: int) -> list[int]:
    """Codes still masked after each step t = 1..steps: round(N cos(pi/2 t/steps)), strictly
    decreasing where possible, ending at 0."""
    out, prev = [], n_tokens
    for t in range(1, steps + 1):
        m = int(round(n_tokens * math.cos(math.pi / 2 * t / steps)))
        m = min(m, prev - 1) if prev > 0 else 0
        m = max(m, 0)
        out.append(m)
        prev = m
    out[-1] = 0
    return out


class MaskedDecoder(ARTransformer):
    """ARTransformer with a [MASK] input id (= config.vocab_size) and block-causal slot attention."""

    def __init__(self, config: FlashVideoConfig, steps: int = 8):
        super().__init__(config, extra_tokens=1)
        self.steps = steps
        self.mask_id = config.vocab_size

    def slot_logits(self, slot: torch.Tensor, cache, offset: int, commit: bool = False) -> torch.Tensor:
        """slot (B, S) tokens of one frame slot at positions offset..; bidirectional within the slot,
        sees the whole cache. Returns logits (B, S, n_codes)."""
        return self.head(self.hidden(slot, cache, offset, causal=False, commit=commit))


@torch.no_grad()
def generate_frames(model: MaskedDecoder, text: torch.Tensor, n_frames: int, seed: int = 0,
                    temperature: float | None = None, top_k: int | None = None, steps: int | None = None,
                    counts: dict | None = None, *, sampling: SamplingSettings | None = None):
    """Yield the (grid, grid) codes of key frames 1..n_frames (key-frame layout), each decoded in
    `steps` (default model.steps) parallel refinement steps with a cosine masking schedule. All codes of
    a video draw from one seeded generator, through the pipeline's `Sampler` (every masked code of a step
    in one batched draw)."""
    layout, G = Layout(model.config), model.config.grid
    N, H = G * G, layout.header_len
    steps = steps or model.steps
    schedule = cosine_schedule(N, steps)
    gen = torch.Generator().manual_seed(seed)
    sampler = Sampler([gen] * N, SamplingSettings.resolve(sampling, temperature=temperature, top_k=top_k))
    device = model.head.weight.device
    counts = counts if counts is not None else {}
    for key in ("forwards", "tokens_processed", "steps"):
        counts.setdefault(key, 0)
    cache = model.new_cache(1, n_frames * layout.frame_len)
    for k in layout.key_sns(n_frames):
        offset = (k - 1) * layout.frame_len
        slot = torch.cat([layout.header(KEY, text, k), torch.full((N,), model.mask_id)]).to(device)[None]
        masked = torch.ones(N, dtype=torch.bool, device=device)
        for remain in schedule:
            logits = model.slot_logits(slot, cache, offset)[0, H:]  # (N, n_codes)
            counts["forwards"] += 1
            counts["steps"] += 1
            counts["tokens_processed"] += slot.shape[1]
            idx = masked.nonzero()[:, 0]
            codes, conf = sampler.sample(logits[idx], idx.tolist(), with_probs=True)
            codes, conf = codes.to(device), conf.to(device)
            n_fix = len(idx) - remain  # newly fixed codes this step: the most confident
            keep = idx[torch.topk(conf, n_fix).indices] if n_fix < len(idx) else idx
            fixed = torch.zeros(N, dtype=torch.long, device=device)
            fixed[idx] = codes
            slot[0, H + keep] = fixed[keep]
            masked[keep] = False
        model.slot_logits(slot, cache, offset, commit=True)  # the finished slot joins the prefix
        counts["forwards"] += 1
        counts["tokens_processed"] += slot.shape[1]
        yield slot[0, H:].view(G, G).cpu().clone()


def generate(model: MaskedDecoder, text: torch.Tensor, n_frames: int, **kwargs) -> torch.Tensor:
    return torch.stack(list(generate_frames(model, text, n_frames, **kwargs)))
