"""Synthetic text-to-video world: one coloured shape on a plain background, moving as the prompt says.

Prompts read "a {colour} {shape} {motion}", e.g. "a red circle moves right". This world trains the
default model and doubles as its benchmark: every clip re-renders exactly at any time, so key-frame
prediction and frame interpolation have exact ground truth, and `describe` reads colour, shape and
motion back out of a generated video.

Time model and the length rule
------------------------------
Time ``t`` is measured in key-frame intervals. Key frame ``k`` (1-based) sits at ``t = k - 1``; with
``n`` frames inserted between two key frames, inserted frame ``j`` (1..n) after key frame ``k`` sits
at ``t = (k - 1) + j / (n + 1)`` (see `flashvideo.timeline`). Motion runs at a fixed rate per motion type, so
a video is fully determined by its prompt and its first frame, and a clip can be as long as asked:

* ``moves left/right/up/down``: the object travels ``SPEED`` = 4 px per unit t (at size 64) on a
  torus: what leaves one edge comes back in at the opposite edge (drawn split across both edges while
  it crosses). Direction never changes, so "moves right" is true of every frame step, for ever.
* ``grows`` / ``shrinks``: the size (circle diameter, square side, triangle base and height) changes
  by ``GROWTH`` = 2 px per unit t (at size 64) and wraps around the range ``SIZE_RANGE`` = 8..32 px:
  a growing object that reaches 32 px starts again at 8 px (a shrinking one the other way round).
  Sizes, like positions, live on a circle, so both rules extend to any length.

The start is random: the centroid anywhere in the frame, the size ``MOVING_SIZE`` = 10..18 px for
moving objects and anywhere in ``SIZE_RANGE`` for growing and shrinking ones. All lengths scale with
``size / 64``. `T_MAX` is only the span that training clips and folder datasets are sampled over.

Rasterisation is hard-edged: a pixel takes the object's colour when its centre lies inside the
shape, computed from float positions, so sub-pixel motion moves edges by whole pixels,
deterministically. The anchor of every shape is its centroid (for the triangle, which points up,
the centroid is 2/3 of the height below the apex), so "grows" and "shrinks" never shift the centroid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

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

T_MAX = 15.0        # training clips span t in [0, T_MAX], i.e. 16 key frames (any t renders)
SPEED = 4.0         # px per unit t for "moves ...", at size 64 (positions wrap around the frame)
GROWTH = 2.0        # px of size per unit t for "grows" / "shrinks", at size 64 (sizes wrap in SIZE_RANGE)
MOVING_SIZE = (10.0, 18.0)  # px at size 64: size of moving objects
SIZE_RANGE = (8.0, 32.0)    # px at size 64: sizes of growing / shrinking objects wrap around this range

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


def grammar() -> dict[str, list[str]]:
    """What a prompt must name, one of each, in the order the model reads them (see `WordTokenizer`)."""
    return {"colour": list(COLOURS), "shape": list(SHAPES), "motion": list(MOTIONS)}


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
    lo, hi = (SIZE_RANGE if motion in ("grows", "shrinks") else MOVING_SIZE)
    s0 = rng.uniform(lo, hi) * k
    return rng.uniform(0, size), rng.uniform(0, size), s0


def state_at(motion: str, x0: float, y0: float, s0: float, t, size: int = 64):
    """Centroid and size at times t (array) under the length rule: ``(cx, cy, s)``, wrapped."""
    k = size / 64
    t = np.asarray(t, dtype=np.float64)
    vx, vy = _VELOCITY.get(motion, (0, 0))
    cx = np.mod(x0 + vx * SPEED * k * t, size)
    cy = np.mod(y0 + vy * SPEED * k * t, size)
    rate = {"grows": GROWTH, "shrinks": -GROWTH}.get(motion, 0.0)
    if rate:
        lo, span = SIZE_RANGE[0] * k, (SIZE_RANGE[1] - SIZE_RANGE[0]) * k
        s = lo + np.mod(s0 - lo + rate * k * t, span)
    else:
        s = np.full_like(t, s0)
    return cx, cy, s


def _check(colour: str, shape: str, motion: str) -> None:
    for value, options, what in ((colour, list(COLOURS), "colour"), (shape, SHAPES, "shape"),
                                 (motion, MOTIONS, "motion")):
        if value not in options:
            raise ValueError(f"unknown {what} {value!r}; expected one of {list(options)}")


def schedule_state(motions: Sequence[tuple[float, str]], x0: float, y0: float, s0: float, times,
                   size: int = 64):
    """`state_at` for a prompt schedule: ``motions`` = [(t_from, motion), ...] sorted, the first from
    t = 0. At each switch the object continues from where it was, with the new motion."""
    t = np.asarray(times, dtype=np.float64)
    cx, cy, s = (np.zeros_like(t) for _ in range(3))
    for i, (start, motion) in enumerate(motions):
        end = motions[i + 1][0] if i + 1 < len(motions) else np.inf
        here = (t >= start) & (t < end)
        cx[here], cy[here], s[here] = state_at(motion, x0, y0, s0, t[here] - start, size)
        if np.isfinite(end):                                  # the state at the switch starts the next segment
            x0, y0, s0 = (float(v) for v in state_at(motion, x0, y0, s0, end - start, size))
    return cx, cy, s


def render(colour: str, shape: str, motion: str, seed: int, times: Sequence[float],
           size: int = 64, switches: Sequence[tuple[float, str]] = ()) -> np.ndarray:
    """Frames of one clip at the given times, uint8 ``(len(times), size, size, 3)``.

    Deterministic in ``(shape, motion, seed, times, size, switches)``; re-rendering at other times
    gives the exact ground truth for prediction and interpolation, at any t (see the length rule
    above). ``switches`` = [(t, new motion), ...] changes the motion from time t on (a prompt schedule).
    """
    for _, m in [(0, motion), *switches]:
        _check(colour, shape, m)
    x0, y0, s0 = _start_state(shape, motion, seed, size)
    motions = [(0.0, motion), *sorted((float(t), m) for t, m in switches)]
    cx, cy, s = (v.reshape(-1, 1, 1) for v in schedule_state(motions, x0, y0, s0, times, size))
    centres = np.arange(size) + 0.5
    px, py = centres[None, None, :], centres[None, :, None]
    dx = np.mod(px - cx + size / 2, size) - size / 2      # offsets on the torus
    dy = np.mod(py - cy + size / 2, size) - size / 2
    if shape == "circle":
        inside = dx ** 2 + dy ** 2 <= (s / 2) ** 2
    elif shape == "square":
        inside = np.maximum(np.abs(dx), np.abs(dy)) <= s / 2
    else:  # triangle pointing up: apex 2s/3 above the centroid, base s/3 below, base width s
        below_apex = dy + 2 * s / 3
        inside = (below_apex >= 0) & (dy <= s / 3) & (np.abs(dx) <= below_apex / 2)
    frames = np.empty((len(cx), size, size, 3), dtype=np.uint8)
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


# --------------------------------------------------------------------------------------- detector

ROUGH_DISTANCE = 80.0   # first pass: pixels this far (RGB distance) from the background are object
MIN_AREA = 6            # fewer object pixels than this in a frame: no object in that frame
FILL_TRIANGLE = 0.64    # bounding-box fill below this: triangle (ideal 0.5) ...
LOW_CENTROID = 0.56     # ... as is a centroid this low in its box, as a fraction of its height (ideal 2/3)
FILL_SQUARE = 0.89      # otherwise fill at or above this: square (ideal 1.0), below: circle (ideal pi/4)
SIZE_WEIGHT = 2.0       # 1 px of size change counts as much as this many px of centroid travel
MIN_MOTION = 3.0        # weighted net effect (px at size 64) below which no motion is reported
_IDEAL_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}


def _neighbours(masks: np.ndarray) -> np.ndarray:
    """How many of each pixel's 8 neighbours are set, for a stack of masks (T, H, W), on the torus."""
    m = masks.astype(np.int16)
    return sum(np.roll(m, (dy, dx), axis=(1, 2)) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def _clean(masks: np.ndarray) -> np.ndarray:
    """Drop object pixels with fewer than two object pixels among their 8 neighbours (speckle noise)."""
    return masks & (_neighbours(masks) >= 2)


def _circular_mean(idx: np.ndarray, n: int) -> float:
    """Mean of pixel indices on a circle of n pixels (the frame wraps around), in [0, n)."""
    angle = (idx + 0.5) * 2 * np.pi / n
    return float(np.mod(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()) * n / (2 * np.pi) - 0.5, n))


def _centred(mask: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """The mask rolled so that its centroid sits in the middle of the frame (undoes wrapping)."""
    h, w = mask.shape
    return np.roll(mask, (int(round(h / 2 - cy)), int(round(w / 2 - cx))), axis=(0, 1))


def _classify_shape(mask: np.ndarray) -> str:
    """Triangle, circle or square from one frame's (centred) object mask (see `measure`)."""
    ys, xs = np.nonzero(mask)
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = len(ys) / (height * width)
    centroid_depth = (ys.mean() - ys.min() + 0.5) / height
    if fill < FILL_TRIANGLE or centroid_depth >= LOW_CENTROID:
        return "triangle"
    return "square" if fill >= FILL_SQUARE else "circle"


def _nearest_colour(rgb_minus_background: np.ndarray) -> str:
    palette = np.asarray(list(COLOURS.values()), np.float32) - np.asarray(BACKGROUND, np.float32)
    return list(COLOURS)[int(np.argmin(np.linalg.norm(palette - rgb_minus_background, axis=1)))]


def measure(frames: np.ndarray) -> dict:
    """Per-frame readings of a video, uint8 ``(T, H, W, 3)``, analytically, on the torus the world lives on.

    1. Object pixels: a rough pass takes pixels more than ``ROUGH_DISTANCE`` from the background
       colour and their median colour. The mask of each frame is then the pixels closer to that
       colour than to the background (projection on the background->object line above 1/2), so
       blurred edges split half way, with isolated speckles dropped; the colour is re-estimated
       from the masks' interiors and the masks recomputed, twice.
    2. Per frame: ``area`` (pixels), centroid ``cx, cy`` (circular means, so an object split across
       an edge is one object), ``colour`` (nearest palette colour of the frame's median object
       colour), ``shape`` (on the mask rolled to the centre: triangle when its bounding-box fill is
       below ``FILL_TRIANGLE`` or its centroid lies at ``LOW_CENTROID`` of the box height or lower;
       else square when the fill is at least ``FILL_SQUARE``, else circle), ``size``
       (sqrt(area / ideal fill of the video's shape): diameter, side, or base) and ``stray``: the
       share of clearly non-background pixels (``ROUGH_DISTANCE``) outside the object mask.
    Frames without an object (area < ``MIN_AREA``) read None / NaN.

    Returns a dict of per-frame lists plus ``shape`` and ``colour`` for the whole video (the most
    common per-frame class), or all None when no frame has an object.
    """
    video = np.asarray(frames)
    if video.ndim == 3:
        video = video[None]
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected frames (T, H, W, 3), got shape {video.shape}")
    T, H, W, _ = video.shape
    out = {"area": np.zeros(T), "cx": np.full(T, np.nan), "cy": np.full(T, np.nan), "size": np.full(T, np.nan),
           "colours": [None] * T, "shapes": [None] * T, "stray": np.zeros(T), "colour": None, "shape": None}
    pixels = video.astype(np.float32) - np.asarray(BACKGROUND, np.float32)
    loud = np.linalg.norm(pixels, axis=-1) > ROUGH_DISTANCE
    rough = _clean(loud)
    if rough.sum() < MIN_AREA:
        return out
    colour = np.median(pixels[rough], axis=0)
    for _ in range(2):  # mask from the colour estimate, then colour from the mask's interior
        masks = _clean(pixels @ colour / float(colour @ colour) > 0.5)
        if masks.sum() < MIN_AREA:
            return out
        interior = masks & (_neighbours(masks) == 8)
        colour = np.median(pixels[interior if interior.sum() >= MIN_AREA else masks], axis=0)
    masks = _clean(pixels @ colour / float(colour @ colour) > 0.5)
    for i in range(T):
        ys, xs = np.nonzero(masks[i])
        n_loud = loud[i].sum()
        out["stray"][i] = (loud[i] & ~masks[i]).sum() / max(1, n_loud)
        if len(ys) < MIN_AREA:
            continue
        out["area"][i] = len(ys)
        out["cx"][i], out["cy"][i] = _circular_mean(xs, W), _circular_mean(ys, H)
        inner = masks[i] & (_neighbours(masks[i:i + 1])[0] == 8)
        out["colours"][i] = _nearest_colour(np.median(pixels[i][inner if inner.sum() >= 4 else masks[i]], axis=0))
        out["shapes"][i] = _classify_shape(_centred(masks[i], out["cx"][i], out["cy"][i]))
    seen = [c for c in out["shapes"] if c]
    if not seen:
        return out
    out["shape"] = max(set(seen), key=seen.count)
    colours = [c for c in out["colours"] if c]
    out["colour"] = max(set(colours), key=colours.count)
    out["size"] = np.sqrt(out["area"] / _IDEAL_FILL[out["shape"]])
    out["size"][out["area"] == 0] = np.nan
    return out


def wrapped(delta, period: float):
    """A difference on a circle of the given period, into [-period/2, period/2)."""
    return np.mod(np.asarray(delta) + period / 2, period) - period / 2


def steps(m: dict, size: int) -> dict:
    """Frame-to-frame changes of a `measure` reading, under the world's wrapping: travel ``dx, dy``
    on the torus and size change ``ds`` on the circle of sizes (a growing object that wraps from the
    largest to the smallest size has grown by one step). NaN where either frame has no object."""
    k = size / 64
    span = (SIZE_RANGE[1] - SIZE_RANGE[0]) * k
    return {"dx": wrapped(np.diff(m["cx"]), size), "dy": wrapped(np.diff(m["cy"]), size),
            "ds": wrapped(np.diff(m["size"]), span)}


def rate(motion: str) -> float:
    """How fast the world carries out `motion`: px per unit t at size 64 (travel, or size change)."""
    return GROWTH if motion in ("grows", "shrinks") else SPEED


def progress(st: dict, motion: str) -> np.ndarray:
    """Per-step change along `motion`, from `steps`: travel in its direction, or size change (negated
    for "shrinks"); in the pixels of `steps`."""
    if motion in ("grows", "shrinks"):
        return (1 if motion == "grows" else -1) * st["ds"]
    vx, vy = _VELOCITY[motion]
    return vx * st["dx"] + vy * st["dy"]


def motion_effects(m: dict, size: int) -> dict:
    """Net effect of each motion over the whole video, in px at size 64 (summed wrapped steps); a size
    change counts ``SIZE_WEIGHT`` times."""
    st = steps(m, size)
    return {motion: float(np.nansum(progress(st, motion))) / (size / 64) * (1 if motion.startswith("moves") else SIZE_WEIGHT)
            for motion in MOTIONS}


def describe(frames: np.ndarray) -> dict:
    """Colour, shape and motion of a video, uint8 ``(T, H, W, 3)``: the most common per-frame colour and
    shape (`measure`) and the motion with the largest net effect (`motion_effects`: travel in px, or
    ``SIZE_WEIGHT`` x size change), None when below ``MIN_MOTION`` px, so a 1 px drift is not motion.
    Returns ``dict(colour=..., shape=..., motion=...)``, all None when no object is found."""
    m = measure(frames)
    result = {"colour": m["colour"], "shape": m["shape"], "motion": None}
    if m["shape"] is None or np.isfinite(m["cx"]).sum() < 2:
        return result
    effects = motion_effects(m, np.asarray(frames).shape[-2])
    motion = max(effects, key=effects.get)
    result["motion"] = motion if effects[motion] >= MIN_MOTION else None
    return result
