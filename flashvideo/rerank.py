"""Self-reranking of a video's first key frame.

The first key frame is drawn from the prompt alone, with no frame before it to follow, and it is the frame a video
most often gets wrong (`tests/first_frame_probe.py`); the frames after it keep its object. So, with
`SamplingSettings.first_candidates` = n > 1, it is drawn n times side by side, each candidate from a generator of
its own (extra rows of the same batch), and the model itself picks the candidate whose codes it finds likeliest
under the prompt: the mean log-probability of its codes (CogView reranks its samples with its own model likewise).
The video's decoder takes over the kept candidate's state (and its twin's), and the video goes on from it as from a
frame drawn there.

Measured on stage 15 (`tests/compare_models.py`, 387 seen and 45 held-out videos): 2 candidates bring flicker from
8.5 to 7.4 % (seen) and 9.1 to 8.0 % (held out), at 1.07-1.11x the default video's time (`tests/rerank_speed.py`;
README, How good it is).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import centring
from .layout import UNKNOWN
from .sampling import Decoder, torch_threads


def log_probabilities(model, rows: torch.Tensor, start: int) -> torch.Tensor:
    """The log-probability of each of the rows' tokens from column `start` on, under the model reading the row from
    its start: rows (B, L) -> (B, L - start). Read in pieces through `RetNet.verify` (`RetNet.read`: the built pass
    where there is one, 4 candidates of the shipped model in 15 ms against 23 ms through the eager chunkwise form),
    on one thread, so that a row's score does not depend on the thread count."""
    with torch_threads(1):
        logits = torch.cat([piece for piece, _ in model.read(rows)], 1)
    logp = F.log_softmax(logits[:, start - 1:-1].float(), -1)
    return logp.gather(-1, rows[:, start:, None])[..., 0]


def score(model, rows: torch.Tensor, start: int) -> torch.Tensor:
    """Each candidate's score, rows (B, header + frame codes) -> (B,): the mean log-probability of the frame's
    content codes (`centring.content`: all but its most common code), -inf for a frame with none. Its background
    codes are left out: they are the likeliest, so with them in, the mean favours a frame with little or nothing
    on it, and the collapsed first frames that spoil whole videos were kept more often than drawn."""
    logp = log_probabilities(model, rows, start)
    mask = torch.stack([centring.content(r) for r in rows[:, start:]])
    mean = (logp * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.where(mask.any(1), mean, torch.tensor(float("-inf")))


def first_key_frame(pipe, dec: Decoder, plan: torch.Tensor, twin: torch.Tensor | None, seed: int,
                    sampling) -> torch.Tensor:
    """The first key frame's plan (1, n) completed, and `dec` (the video's decoder) past it: drawn by `dec` itself
    with one candidate (or fed, when the plan is a given frame), else the likeliest of the candidates, each drawn
    from a generator of its own (from `seed`), whose state `dec` takes. `twin`: the guided twin's plan, or None.
    A drawn frame is then rolled away from the frame's edges where the settings' `centre_first` asks for it
    (`flashvideo.centring`)."""
    from .pipeline import _generator, child_seed

    n, h = sampling.first_candidates, pipe.layout.header_len
    drawn = bool((plan == UNKNOWN).any())
    centre = drawn and sampling.centre_first  # (a given frame is kept as it is)
    if centre:
        centring.check_wraps(pipe.tokenizer, "the sampling settings")
    if n == 1 or not drawn:
        done = dec.run(plan, twin)
    else:
        many = pipe._decoder([_generator(child_seed(seed, 2, c)) for c in range(n)], sampling, dec.counts)
        tokens = many.run(plan.expand(n, -1).clone(), None if twin is None else twin.expand(n, -1).clone())
        k = int(score(pipe.model, tokens, h).argmax())
        rows = [k] if twin is None else [k, n + k]  # the kept candidate's row, and its twin's
        dec.state, dec.logits, dec.pos = [s[rows] for s in many.state], many.logits[rows], many.pos
        done = tokens[k:k + 1]
    if centre:
        done = centring.recentre(dec, done, plan, twin, h, pipe.config.grid)
    return done
