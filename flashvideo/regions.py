"""Token regions for redundant-free frame interpolation (paper section 3.3).

Between two key frames' code grids A and B (h x w):

* different   -- A != B: these tokens will change, so they are generated;
* unstable    -- not different, but within `radius` (8-neighbourhood) of a different token: generated;
* stable      -- the rest: generated, except for ...
* inheritable -- a uniformly random subset of the stable tokens, of size round(ratio * |stable|),
                 drawn from a seeded generator. Their codes are copied from A (= B there) into
                 every in-between frame instead of being sampled.

One region map per key-frame pair serves all of that pair's in-between frames.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .layout import UNKNOWN

REGIONS = ("different", "unstable", "stable", "inheritable")
DIFFERENT, UNSTABLE, STABLE, INHERITABLE = range(4)


def token_regions(a: torch.Tensor, b: torch.Tensor, ratio: float, generator: torch.Generator,
                  radius: int = 1) -> torch.Tensor:
    """a, b (h, w) codes -> (h, w) region ids (indices into REGIONS)."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"key-frame code grids must be equal 2-D shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"inherit ratio {ratio} outside [0, 1]")
    different = a != b
    near = F.max_pool2d(different[None, None].float(), 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0
    regions = torch.full(a.shape, STABLE, dtype=torch.long)
    regions[near] = UNSTABLE
    regions[different] = DIFFERENT
    stable = (regions == STABLE).flatten().nonzero().squeeze(1)
    n_inherit = math.floor(ratio * len(stable) + 0.5)
    pick = stable[torch.randperm(len(stable), generator=generator)[:n_inherit]]
    regions.view(-1)[pick] = INHERITABLE
    return regions


def inherit_plan(a: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """(h, w) plan for one in-between frame: A's code where inheritable, UNKNOWN (sample) elsewhere."""
    return torch.where(regions == INHERITABLE, a, torch.full_like(a, UNKNOWN))


def region_labels(regions: torch.Tensor) -> np.ndarray:
    """(h, w) region ids -> (h, w) array of region names."""
    return np.array(REGIONS, dtype=object)[regions.cpu().numpy()]


def region_counts(regions: torch.Tensor) -> dict[str, int]:
    return {name: int((regions == i).sum()) for i, name in enumerate(REGIONS)}
