"""Self-reranking of a video's first key frame.

The first key frame is drawn from the prompt alone, with no frame before it to follow, and it is the frame a video
most often gets wrong (`tests/first_frame_probe.py`); the frames after it keep its object. So, with
`SamplingSettings.first_candidates` = n > 1, it is drawn n times side by side, each candidate from a generator of
its own (extra rows of the same batch), and the model itself picks the candidate whose content it finds likeliest
under the prompt: the mean log-probability of the codes other than the frame's background (`score`; CogView reranks
its samples with its own model likewise). The video's decoder takes over the kept candidate's state (and its
twin's), and the video goes on from it as from a frame drawn there.

Measured on stage 15 (`tests/compare_models.py`, 387 seen and 45 held-out videos): 2 candidates bring flicker from
8.5 to 7.4 % (seen) and 9.1 to 8.0 % (held out), at 1.07-1.11x the default video's time (`tests/rerank_speed.py`;
README, How good it is). Scoring only the content codes, rather than all of them, took stage 17's garbled frames
in those videos from 54 and 6 to 13 and 0 (its flicker from 3.8 and 3.6 % to 2.7 and 1.9 %; 9 and 0 garbled with
the candidates read centred): the mean over all codes had kept a speck or an empty frame over a whole object more
often than one was drawn.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import centring
from .layout import UNKNOWN
from .sampling import Decoder, torch_threads


def read(model, rows: torch.Tensor):
    """Rows (B, L) read by the model from their start: the logits after each token (B, L, n_codes) and the state
    after the last. In pieces through `RetNet.verify` (`RetNet.read`: the built pass where there is one, 4
    candidates of the shipped model in 15 ms against 23 ms through the eager chunkwise form), on one thread, so that
    a row's score does not depend on the thread count."""
    with torch_threads(1):
        pieces = list(model.read(rows))
    return torch.cat([logits for logits, _ in pieces], 1), pieces[-1][1]


def log_probabilities(logits: torch.Tensor, rows: torch.Tensor, start: int) -> torch.Tensor:
    """The log-probability of each of the rows' tokens from column `start` on, given `read`'s logits:
    (B, L - start)."""
    logp = F.log_softmax(logits[:, start - 1:-1].float(), -1)
    return logp.gather(-1, rows[:, start:, None])[..., 0]


def score(logits: torch.Tensor, rows: torch.Tensor, start: int) -> torch.Tensor:
    """Each candidate's score, rows (B, header + frame codes) and `read`'s logits -> (B,): the mean log-probability
    of the frame's content codes (`centring.content`: all but its most common code), -inf for a frame with none. Its
    background codes are left out: they are the likeliest, so with them in, the mean favours a frame with little or
    nothing on it, and the collapsed first frames that spoil whole videos were kept more often than drawn."""
    logp = log_probabilities(logits, rows, start)
    mask = torch.stack([centring.content(r) for r in rows[:, start:]])
    mean = (logp * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.where(mask.any(1), mean, torch.tensor(float("-inf")))


def first_key_frame(pipe, dec: Decoder, plan: torch.Tensor, twin: torch.Tensor | None, seed: int,
                    sampling) -> torch.Tensor:
    """The first key frame's plan (1, n) completed, and `dec` (the video's decoder) past it: drawn by `dec` itself
    with one candidate (or fed, when the plan is a given frame), else the likeliest of the candidates, each drawn
    from a generator of its own (from `seed`): the candidates (and their twins) are read once, for their scores and
    for the state `dec` takes. `twin`: the guided twin's plan, or None. A drawn frame is rolled away from the frame's
    edges where the settings' `centre_first` asks for it (`flashvideo.centring`): candidates before they are read."""
    from .pipeline import _generator, child_seed

    n, h, G = sampling.first_candidates, pipe.layout.header_len, pipe.config.grid
    drawn = bool((plan == UNKNOWN).any())
    centre = drawn and sampling.centre_first  # (a given frame is kept as it is)
    if centre:
        centring.check_wraps(pipe.tokenizer, "the sampling settings")
    if n == 1 or not drawn:
        done = dec.run(plan, twin)
        return centring.recentre(dec, done, plan, twin, h, G) if centre else done
    many = pipe._decoder([_generator(child_seed(seed, 2, c)) for c in range(n)], sampling, dec.counts)
    tokens = many.run(plan.expand(n, -1).clone(), None if twin is None else twin.expand(n, -1).clone())
    codes = tokens[:, h:]
    if centre:
        codes = torch.stack([centring.centred(c.view(G, G)).flatten() for c in codes])
        tokens = torch.cat([plan[:, :h].expand(n, -1), codes], 1)
    rows = tokens if twin is None else torch.cat([tokens, torch.cat([twin[:, :h].expand(n, -1), codes], 1)])
    logits, state = read(pipe.model, rows)  # the candidates' scores, and the state the video goes on from
    k = int(score(logits[:n], tokens, h).argmax())
    keep = [k] if twin is None else [k, n + k]  # the kept candidate's row, and its twin's
    dec.state, dec.logits, dec.pos = [s[keep] for s in state], logits[keep, -1], rows.shape[1]
    return tokens[k:k + 1]
