"""The first key frame of a wrapping world, centred: its object moved away from the frame's edges.

In a world that wraps around (a torus: the shapes world, `Tokenizer.wraps`), the frame's edges are a seam at an
arbitrary place, and an object that straddles it is drawn in pieces at opposite sides of the frame, far apart in
the raster order the codes are sampled in. The model gets such objects wrong more often: in stage 15's default
videos of every seen combination (seed 2, drawn without centring; `tests/edge_probe.py`), 8.6 % of the frames
after the first whose object touches an edge show another shape or colour than the prompt's, against 3.3 % of the
others. The prompt does not say where the object is, so with `SamplingSettings.centre_first` the first key frame
drawn from the prompt alone is rolled by whole patches (which the wrapping decoder draws as the same image rolled)
so that its content sits as far from the edges as it can, and the video goes on from the rolled frame: the model's
state is rebuilt by feeding it (one chunkwise pass; with first-frame candidates, `flashvideo.rerank` rolls each
before scoring them, and the scoring read is the state). The content is every code but the frame's most common one
(the background: one code everywhere for a patch-local tokenizer). With a lead-in key frame, the rolled frame is
the one dropped, so every frame shown is drawn after the move.

Measured on stage 15 (`python tests/compare_models.py 2,3,4 FOLDER...`, 387 seen and 45 held-out videos,
paired): flicker 6.0 -> 3.8 % seen and 7.5 -> 6.8 % held out, first frames right 89 -> 94 % seen; about 10 ms more to
the first frame (README, How good it is).
"""
from __future__ import annotations

import torch


def check_wraps(tokenizer, where: str) -> None:
    """ValueError unless the tokenizer's frames wrap around: only then do codes rolled draw the frame rolled."""
    if not tokenizer.wraps:
        raise ValueError(f"centre_first (in {where}) rolls the first key frame, which only a tokenizer whose frames "
                         "wrap around (vq.wrap) draws as the same frame rolled; this model's does not: set "
                         "centre_first to false")


def content(codes: torch.Tensor) -> torch.Tensor:
    """Which of a frame's codes (any shape) are its content: every code but the frame's most common one (the
    background)."""
    return codes != torch.mode(codes.flatten()).values


def shift(codes: torch.Tensor) -> tuple[int, int]:
    """The roll (rows, columns) of a code grid (G, G) that puts its `content` nearest the middle: for each axis
    the shift minimising the content's summed distance from the middle (ties: the smallest shift). (0, 0) for a
    frame that is all one code."""
    G = codes.shape[0]
    mask = content(codes).float()
    off_middle = (torch.arange(G, dtype=torch.float) - (G - 1) / 2).abs()

    def best(weight: torch.Tensor) -> int:
        return int(torch.stack([(torch.roll(weight, s) * off_middle).sum() for s in range(G)]).argmin())

    return best(mask.sum(1)), best(mask.sum(0))


def centred(codes: torch.Tensor) -> torch.Tensor:
    """A code grid (G, G) rolled by `shift`."""
    return torch.roll(codes, shift(codes), (0, 1))


def recentre(dec, done: torch.Tensor, plan: torch.Tensor, twin: torch.Tensor | None, header_len: int,
             grid: int) -> torch.Tensor:
    """The first key frame `done` (1, header + G*G, as drawn after `plan`) rolled by `shift`, and
    `dec` (a `sampling.Decoder` that has read nothing else) rebuilt on it: its state reset and the rolled
    frame fed after the same header (and the twin's, `twin`). Returns the rolled tokens."""
    codes = done[0, header_len:].view(grid, grid)
    rolled = centred(codes).flatten()
    if torch.equal(rolled, codes.flatten()):
        return done
    dec.state, dec.logits, dec.pos = None, None, 0
    fed = torch.cat([plan[0, :header_len], rolled])[None]
    return dec.run(fed, None if twin is None else torch.cat([twin[0, :header_len], rolled])[None])
