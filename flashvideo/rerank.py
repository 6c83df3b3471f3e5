"""Self-reranking of a video's first key frame.

The first key frame is drawn from the prompt alone, with no frame before it to follow, and it is the frame a video
most often gets wrong (`tests/first_frame_probe.py`); the frames after it keep its object. So, with
`SamplingSettings.first_candidates` = n > 1, it is drawn n times side by side, each candidate from a generator of
its own (extra rows of the same batch: a recurrent step of 8 rows costs about 1.3 steps of one), and the model
itself picks the candidate whose codes it finds likeliest under the prompt: the mean log-probability of its codes,
from one chunkwise pass (CogView reranks its samples with its own model likewise). The kept candidate is fed to the
video's decoder as a known frame, and the video goes on from it as from a frame drawn there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .sampling import Decoder, torch_threads


def log_likelihood(model, rows: torch.Tensor, start: int) -> torch.Tensor:
    """The mean log-probability of each row's tokens from column `start` on, under the model reading the row from
    its start: rows (B, L) -> (B,). One thread, so that a row's score does not depend on the thread count."""
    with torch.no_grad(), torch_threads(1):
        logits, _ = model(rows)
    logp = F.log_softmax(logits[:, start - 1:-1].float(), -1)
    return logp.gather(-1, rows[:, start:, None])[..., 0].mean(1)


def first_key_frame(pipe, dec: Decoder, plan: torch.Tensor, twin: torch.Tensor | None, seed: int,
                    sampling) -> torch.Tensor:
    """The first key frame's plan (1, n) completed, and fed to `dec` (the video's decoder): drawn by `dec` itself with
    one candidate, else the likeliest of the candidates, each drawn from a generator of its own (from `seed`).
    `twin`: the guided twin's plan, or None."""
    from .pipeline import _generator, child_seed

    n, h = sampling.first_candidates, pipe.layout.header_len
    if n == 1:
        return dec.run(plan, twin)
    many = pipe._decoder([_generator(child_seed(seed, 2, c)) for c in range(n)], sampling, dec.counts)
    drawn = many.run(plan.expand(n, -1).clone(), None if twin is None else twin.expand(n, -1).clone())
    best = drawn[int(log_likelihood(pipe.model, drawn, h).argmax())]
    return dec.run(best[None].clone(), None if twin is None else torch.cat([twin[0, :h], best[h:]])[None])
