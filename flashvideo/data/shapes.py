"""Synthetic text-to-video world: one coloured shape on a plain background, moving as the prompt says.

Prompts read "a {colour} {shape} {motion}", e.g. "a red circle moves right". This world trains the
default model and doubles as its benchmark: every clip re-renders exactly at any time, so key-frame
prediction and frame interpolation have exact ground truth, and `describe` reads colour, shape and
motion back out of a generated video.

Time model
----------
Time ``t`` is measured in key-frame intervals. Key frame ``k`` (1-based) sits at ``t = k - 1``; with
``n`` frames inserted between two key frames, inserted frame ``j`` (1..n) after key frame ``k`` sits
at ``t = (k - 1) + j / (n + 1)`` (see `frame_times`). Motion runs at a fixed rate per motion type, so
a video is fully determined by its prompt and its first frame:

* ``moves left/right/up/down``: the object travels ``SPEED`` = 4 px per unit t (at size 64);
* ``grows`` / ``shrinks``: its size (circle diameter, square side, triangle base and height) changes
  by ``GROWTH`` = 2 px per unit t (at size 64).

Only the start position and the size are random. The size drawn is ``START_SIZE`` = 10..18 px (at 64)
at t = 0, except for "shrinks", where it is the size at ``T_MAX`` (so shrinking objects start at
24..32 px and never fall below 10 px); growing objects reach at most 32 px. Positions are drawn so
the object lies wholly inside the frame, ``MARGIN`` px from its edges, for every t in [0, T_MAX].
All lengths scale with ``size / 64``.

Rasterisation is hard-edged: a pixel takes the object's colour when its centre lies inside the
shape, computed from float positions, so sub-pixel motion moves edges by whole pixels,
deterministically. The anchor of every shape is its centroid (for the triangle, which points up,
the centroid is 2/3 of the height below the apex), so "grows" and "shrinks" never shift the centroid.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np
import torch

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 70, 240),
    "yellow": (240, 225, 30),
    "purple": (150, 40, 210),
    "orange": (250, 140, 20),
    "white": (240, 240, 240),
    "cyan": (30, 220, 230),
}
BACKGROUND: tuple[int, int, int] = (16, 16, 16)
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("moves left", "moves right", "moves up", "moves down", "grows", "shrinks")

T_MAX = 7.0         # clips are guaranteed in frame for t in [0, T_MAX], i.e. 8 key frames
SPEED = 4.0         # px per unit t for "moves ...", at size 64
GROWTH = 2.0        # px of size per unit t for "grows" / "shrinks", at size 64
START_SIZE = (10.0, 18.0)  # px at size 64 (for "shrinks": the size at T_MAX)
MARGIN = 1.0        # px kept free between the object and the frame edge, at size 64

_VELOCITY = {"moves left": (-1, 0), "moves right": (1, 0), "moves up": (0, -1), "moves down": (0, 1)}

ALL_COMBOS: list[tuple[str, str, str]] = [(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS]

# 15 of the 144 combinations (~10%), never used for "train". Each colour appears once or twice,
# each shape five times, each motion two or three times, and no colour-shape or shape-motion pair
# is repeated, so every colour, shape, motion and every pair of them is still seen in training.
HELD_OUT: frozenset[tuple[str, str, str]] = frozenset({
    ("red", "circle", "grows"),
    ("red", "triangle", "moves up"),
    ("green", "square", "moves left"),
    ("green", "triangle", "shrinks"),
    ("blue", "circle", "moves down"),
    ("blue", "square", "grows"),
    ("yellow", "triangle", "moves right"),
    ("yellow", "circle", "moves up"),
    ("purple", "square", "shrinks"),
    ("purple", "circle", "moves right"),
    ("orange", "triangle", "moves down"),
    ("orange", "square", "moves up"),
    ("white", "circle", "shrinks"),
    ("white", "triangle", "moves left"),
    ("cyan", "square", "moves right"),
})
TRAIN_COMBOS: list[tuple[str, str, str]] = [c for c in ALL_COMBOS if c not in HELD_OUT]
HELDOUT_COMBOS: list[tuple[str, str, str]] = [c for c in ALL_COMBOS if c in HELD_OUT]
_SPLITS = {"train": TRAIN_COMBOS, "heldout": HELDOUT_COMBOS, "all": ALL_COMBOS}


# ----------------------------------------------------------------------------------------- prompts

def make_prompt(colour: str, shape: str, motion: str) -> str:
    """The canonical prompt, e.g. ``make_prompt("red", "circle", "moves right")`` -> "a red circle moves right"."""
    return f"a {colour} {shape} {motion}"


def vocabulary() -> list[str]:
    """Every word a prompt may use, article excluded: colours, shapes, then motion words (18 words)."""
    words = list(COLOURS) + list(SHAPES)
    for motion in MOTIONS:
        words += [w for w in motion.split() if w not in words]
    return words


def parse_prompt(prompt: str) -> tuple[str, str, str]:
    """Read ``(colour, shape, motion)`` from a prompt such as "A red circle, moves right!".

    Case, extra whitespace, punctuation and the articles "a"/"an" are ignored, and word order is free.
    Raises ValueError naming unknown words (and listing the known ones), or saying what is missing
    or given twice.
    """
    words = [w for w in re.findall(r"[a-z]+", prompt.lower()) if w not in ("a", "an")]
    known = vocabulary()
    unknown = [w for w in words if w not in known]
    if unknown:
        raise ValueError(f"unknown word(s) {unknown} in prompt {prompt!r}; known words: {', '.join(known)}")
    directions = [m.split()[1] for m in _VELOCITY]
    found = {
        "colour": [w for w in words if w in COLOURS],
        "shape": [w for w in words if w in SHAPES],
        "motion": [w for w in words if w in ("grows", "shrinks")]
        + [f"moves {w}" for w in words if w in directions],
    }
    if "moves" in words and not any(w in directions for w in words):
        raise ValueError(f"prompt {prompt!r} says 'moves' but not where ({', '.join(directions)})")
    if any(w in directions for w in words) and "moves" not in words:
        raise ValueError(f"prompt {prompt!r} gives a direction without 'moves'")
    missing = [k for k, v in found.items() if not v]
    if missing:
        raise ValueError(f"prompt {prompt!r} is missing a {' and a '.join(missing)}; "
                         f"expected 'a {{colour}} {{shape}} {{motion}}', e.g. 'a red circle moves right'")
    twice = [k for k, v in found.items() if len(v) > 1]
    if twice:
        raise ValueError(f"prompt {prompt!r} gives more than one {' and '.join(twice)}: "
                         f"{[found[k] for k in twice]}")
    return found["colour"][0], found["shape"][0], found["motion"][0]


# ------------------------------------------------------------------------------------------- time

def frame_times(n_key: int, n_inserted: int = 0) -> list[float]:
    """Times of all frames of a video with ``n_key`` key frames and ``n_inserted`` frames between each pair.

    ``frame_times(3, 1)`` -> ``[0.0, 0.5, 1.0, 1.5, 2.0]``.
    """
    if n_key < 1 or n_inserted < 0:
        raise ValueError(f"need n_key >= 1 and n_inserted >= 0, got {n_key}, {n_inserted}")
    times = []
    for k in range(n_key):
        times.append(float(k))
        if k < n_key - 1:
            times += [k + j / (n_inserted + 1) for j in range(1, n_inserted + 1)]
    return times


# -------------------------------------------------------------------------------------- rendering

def _extents(shape: str, s: float) -> tuple[float, float, float, float]:
    """Distances from the centroid to the (left, right, top, bottom) edges of a shape of size ``s``."""
    if shape == "triangle":
        return s / 2, s / 2, 2 * s / 3, s / 3
    return s / 2, s / 2, s / 2, s / 2


def _start_state(shape: str, motion: str, seed: int, size: int) -> tuple[float, float, float]:
    """The random start of a clip, ``(x0, y0, size0)``: centroid and size at t = 0, in pixels."""
    rng = np.random.default_rng(seed)
    k = size / 64
    s = rng.uniform(*START_SIZE) * k
    s0 = s + GROWTH * k * T_MAX if motion == "shrinks" else s
    s_max = s0 + GROWTH * k * T_MAX if motion == "grows" else s0
    left, right, top, bottom = _extents(shape, s_max)
    vx, vy = _VELOCITY.get(motion, (0, 0))
    travel = SPEED * k * T_MAX
    margin = MARGIN * k
    x_lo = margin + left - min(0, vx) * travel
    x_hi = size - margin - right - max(0, vx) * travel
    y_lo = margin + top - min(0, vy) * travel
    y_hi = size - margin - bottom - max(0, vy) * travel
    return rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi), s0


def _check(colour: str, shape: str, motion: str) -> None:
    for value, options, what in ((colour, list(COLOURS), "colour"), (shape, SHAPES, "shape"),
                                 (motion, MOTIONS, "motion")):
        if value not in options:
            raise ValueError(f"unknown {what} {value!r}; expected one of {list(options)}")


def render(colour: str, shape: str, motion: str, seed: int, times: Sequence[float],
           size: int = 64) -> np.ndarray:
    """Frames of one clip at the given times, uint8 ``(len(times), size, size, 3)``.

    Deterministic in ``(shape, motion, seed, times, size)``; re-rendering at other times gives the
    exact ground truth for prediction and interpolation. The object stays in frame for t in
    [0, T_MAX]; outside that range it keeps moving (and a shrinking object may vanish).
    """
    _check(colour, shape, motion)
    x0, y0, s0 = _start_state(shape, motion, seed, size)
    k = size / 64
    t = np.asarray(times, dtype=np.float64).reshape(-1, 1, 1)
    vx, vy = _VELOCITY.get(motion, (0, 0))
    cx = x0 + vx * SPEED * k * t
    cy = y0 + vy * SPEED * k * t
    rate = {"grows": GROWTH, "shrinks": -GROWTH}.get(motion, 0.0)
    s = np.maximum(s0 + rate * k * t, 0.0)
    centres = np.arange(size) + 0.5
    px, py = centres[None, None, :], centres[None, :, None]
    dx, dy = px - cx, py - cy
    if shape == "circle":
        inside = dx ** 2 + dy ** 2 <= (s / 2) ** 2
    elif shape == "square":
        inside = np.maximum(np.abs(dx), np.abs(dy)) <= s / 2
    else:  # triangle pointing up: apex 2s/3 above the centroid, base s/3 below, base width s
        below_apex = dy + 2 * s / 3
        inside = (below_apex >= 0) & (dy <= s / 3) & (np.abs(dx) <= below_apex / 2)
    frames = np.empty((len(t), size, size, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    frames[inside] = COLOURS[colour]
    return frames


@dataclass
class Clip:
    """One text-video pair. ``times`` holds the time of each frame; real-data clips have no colour/shape/motion."""
    prompt: str
    colour: str | None
    shape: str | None
    motion: str | None
    seed: int
    frames: np.ndarray                      # uint8 (T, size, size, 3)
    times: tuple[float, ...] = field(default=())


def make_clip(seed: int, times: Sequence[float], split: str = "train", size: int = 64) -> Clip:
    """A clip whose combination (drawn from ``split``: "train", "heldout" or "all") and start come from ``seed``."""
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(_SPLITS)}")
    combos = _SPLITS[split]
    colour, shape, motion = combos[np.random.default_rng([seed, 1]).integers(len(combos))]
    frames = render(colour, shape, motion, seed, times, size)
    return Clip(make_prompt(colour, shape, motion), colour, shape, motion, seed, frames,
                tuple(float(t) for t in times))


TimesSpec = Union[int, Sequence[float], Callable[[np.random.Generator], Sequence[float]]]


class ShapesStream(torch.utils.data.IterableDataset):
    """Endless stream of training `Clip` s.

    ``times`` says which frames each clip has: an int ``n`` (key frames at t = 0..n-1), a fixed
    list of times, or a callable ``times(rng) -> list of times`` called once per clip with a
    Generator seeded from that clip's seed (so a training loop can mix key-frame and interpolation
    samples freely).

    Streams are disjoint and deterministic: with ``W = world_size * num_workers`` streams (DataLoader
    workers included), stream ``i = rank * num_workers + worker_id`` yields the clips with seeds
    ``seed * 2**32 + i + W * n`` for n = 0, 1, 2, ... Clips are Python objects, so use a DataLoader
    with ``batch_size=None`` or ``collate_fn=list``.
    """

    def __init__(self, times: TimesSpec = 8, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 split: str = "train", size: int = 64):
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(_SPLITS)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.times, self.seed, self.rank, self.world_size = times, seed, rank, world_size
        self.split, self.size = split, size

    def _times(self, clip_seed: int) -> list[float]:
        if callable(self.times):
            return [float(t) for t in self.times(np.random.default_rng([clip_seed, 2]))]
        if isinstance(self.times, int):
            return [float(t) for t in range(self.times)]
        return [float(t) for t in self.times]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        n_streams = self.world_size * workers
        clip_seed = self.seed * 2 ** 32 + self.rank * workers + worker
        while True:
            yield make_clip(clip_seed, self._times(clip_seed), self.split, self.size)
            clip_seed += n_streams


# --------------------------------------------------------------------------------------- detector

ROUGH_DISTANCE = 80.0   # first pass: pixels this far (RGB distance) from the background are object
MIN_AREA = 6            # fewer object pixels than this in a frame: no object in that frame
FILL_TRIANGLE = 0.64    # bounding-box fill below this: triangle (ideal 0.5) ...
LOW_CENTROID = 0.56     # ... as is a centroid this low in its box, as a fraction of its height (ideal 2/3)
FILL_SQUARE = 0.89      # otherwise fill at or above this: square (ideal 1.0), below: circle (ideal pi/4)
SIZE_WEIGHT = 2.0       # 1 px of size change counts as much as this many px of centroid travel
MIN_MOTION = 1.0        # weighted effect (px) below which no motion is reported
_IDEAL_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}


def _neighbours(masks: np.ndarray) -> np.ndarray:
    """How many of each pixel's 8 neighbours are set, for a stack of masks (T, H, W)."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1))).astype(np.int16)
    h, w = masks.shape[1:]
    return sum(padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def _clean(masks: np.ndarray) -> np.ndarray:
    """Drop object pixels with fewer than two object pixels among their 8 neighbours (speckle noise)."""
    return masks & (_neighbours(masks) >= 2)


def _classify_shape(mask: np.ndarray) -> str:
    """Triangle, circle or square from one frame's object mask (see `describe`)."""
    ys, xs = np.nonzero(mask)
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = len(ys) / (height * width)
    centroid_depth = (ys.mean() - ys.min() + 0.5) / height
    if fill < FILL_TRIANGLE or centroid_depth >= LOW_CENTROID:
        return "triangle"
    return "square" if fill >= FILL_SQUARE else "circle"


def describe(frames: np.ndarray) -> dict:
    """Read colour, shape and motion off a video, uint8 ``(T, H, W, 3)``, analytically.

    1. Object pixels: a rough pass takes pixels more than ``ROUGH_DISTANCE`` from the background
       colour and their median colour. The mask of each frame is then the pixels closer to that
       colour than to the background (projection on the background->object line above 1/2), so
       blurred edges split half way, with isolated speckles dropped. The colour is re-estimated as
       the median over the mask's interior (pixels whose 8 neighbours are all object; the whole
       mask if the interior is tiny) and the mask recomputed, twice. The final colour is reported
       as the nearest palette colour.
    2. Shape, on the frame where the object is largest: triangle when its bounding-box fill
       (area / box area) is below ``FILL_TRIANGLE`` or its centroid lies at ``LOW_CENTROID`` of the
       box height or lower (an upright triangle is bottom-heavy: fill 0.5, centroid at 2/3; circle
       and square are centred); otherwise square when the fill is at least ``FILL_SQUARE`` (ideal
       1.0), else circle (ideal pi/4 ~ 0.785).
    3. Motion: between the first and last frames showing the object, the centroid travel (dx, dy)
       and the size change ds, size = sqrt(area / ideal fill of the shape) (diameter, side, base).
       The largest of -dx (left), dx (right), -dy (up), dy (down), ``SIZE_WEIGHT`` * ds (grows) and
       -``SIZE_WEIGHT`` * ds (shrinks) wins; below ``MIN_MOTION`` px, or with one such frame, motion is None.

    Returns ``dict(colour=..., shape=..., motion=...)``, all None when no object is found.
    """
    video = np.asarray(frames)
    if video.ndim == 3:
        video = video[None]
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected frames (T, H, W, 3), got shape {video.shape}")
    result = {"colour": None, "shape": None, "motion": None}
    pixels = video.astype(np.float32) - np.asarray(BACKGROUND, np.float32)
    rough = _clean(np.linalg.norm(pixels, axis=-1) > ROUGH_DISTANCE)
    if rough.sum() < MIN_AREA:
        return result
    colour = np.median(pixels[rough], axis=0)
    for _ in range(2):  # mask from the colour estimate, then colour from the mask's interior
        masks = _clean(pixels @ colour / float(colour @ colour) > 0.5)
        if masks.sum() < MIN_AREA:
            return result
        interior = masks & (_neighbours(masks) == 8)
        colour = np.median(pixels[interior if interior.sum() >= MIN_AREA else masks], axis=0)
    masks = _clean(pixels @ colour / float(colour @ colour) > 0.5)
    areas = masks.sum(axis=(1, 2))
    present = np.flatnonzero(areas >= MIN_AREA)
    if len(present) == 0:
        return result
    palette = np.asarray(list(COLOURS.values()), np.float32) - np.asarray(BACKGROUND, np.float32)
    result["colour"] = list(COLOURS)[int(np.argmin(np.linalg.norm(palette - colour, axis=1)))]
    shape = result["shape"] = _classify_shape(masks[int(np.argmax(areas))])
    if len(present) < 2:
        return result

    def centroid_and_size(i: int) -> tuple[float, float, float]:
        ys, xs = np.nonzero(masks[i])
        return xs.mean(), ys.mean(), np.sqrt(len(ys) / _IDEAL_FILL[shape])

    x0, y0, s0 = centroid_and_size(present[0])
    x1, y1, s1 = centroid_and_size(present[-1])
    effects = {"moves left": x0 - x1, "moves right": x1 - x0, "moves up": y0 - y1, "moves down": y1 - y0,
               "grows": SIZE_WEIGHT * (s1 - s0), "shrinks": SIZE_WEIGHT * (s0 - s1)}
    motion = max(effects, key=effects.get)
    result["motion"] = motion if effects[motion] >= MIN_MOTION else None
    return result
