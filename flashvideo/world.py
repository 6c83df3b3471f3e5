"""Worlds: where training, tokenizer training, eval and the app's examples get prompts, clips and ground truth.

A world is any object with the members of `World`; nothing else in the package knows which one it has:

    world = make_world("shapes", size=64)             # or a dataset folder: make_world("data/ucf101", 64)
    prompt, frames = world.sample(rng, times=[0, 1, 2])   # frames: uint8 (3, 64, 64, 3) at those times
    world.prompts(), world.vocabulary(), world.grammar(), world.example_prompts(), world.t_max, world.wraps

Time is measured in key-frame intervals, as in `flashvideo.timeline`: key frame k of a training clip
sits at t = k, its in-between frames at fractions of an interval. A world renders (or looks up) a
frame for any t in [0, t_max].

Two implementations:
* `ShapesWorld`: the built-in synthetic world (`flashvideo.data.shapes`). It renders any t exactly, so
  its clips are their own ground truth, and it holds out a fixed set of combinations (`heldout_frames`).
* `FolderWorld`: a UCF-101-style tree of videos or a BAIR-style tree of frame folders
  (`flashvideo.data.folder`). A clip is the first `n_frames` frames of a video, spread over
  t in [0, t_max]; by default t_max = n_frames - 1, so one key-frame interval is one frame of the file.

To train on another world, write a class with these members and pass it where a world is asked for
(`make_batch`, `frame_stream`); to make it a `--data` choice, add it to `make_world`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np


class World(Protocol):
    t_max: float            # clips are sampled over t in [0, t_max] (key-frame intervals)
    size: int               # frames are (size, size, 3) uint8
    wraps: bool             # frames are a torus: what leaves one edge enters at the opposite one
    # (rng, times, at) -> (one prompt per frame, frames): the caption changes at time `at`; None if it cannot
    sample_switch: Callable | None

    def sample(self, rng: np.random.Generator, times) -> tuple[str, np.ndarray]:
        """A training clip: its prompt and uint8 frames (len(times), size, size, 3) at those times."""

    def prompts(self) -> list[str]:
        """Every caption a training clip can carry (sizes the model's text length)."""

    def vocabulary(self) -> list[str]:
        """Every word of those captions."""

    def grammar(self) -> dict | None:
        """Slots for `WordTokenizer` (one phrase of each per prompt), or None for free word sequences."""

    def example_prompts(self, limit: int = 6) -> list[str]:
        """A few prompts to show a user (the app's examples, the eval's inheritance prompts)."""

    def heldout_frames(self, n_clips: int = 64) -> np.ndarray:
        """uint8 frames (N, size, size, 3) that training never samples (the tokenizer's held-out score)."""


class ShapesWorld:
    """The built-in world: one coloured shape moving on a plain background (`flashvideo.data.shapes`).
    Training samples the trained combinations only; `heldout_frames` renders the held-out ones."""

    EXAMPLES = ("a red circle moves right", "a blue square grows", "a yellow triangle moves down",
                "a green circle shrinks", "a purple square moves left", "a white triangle moves up",
                "an orange circle grows", "a cyan square moves right")

    def __init__(self, size: int = 64):
        from .data import shapes

        self.shapes, self.size, self.t_max = shapes, size, shapes.T_MAX
        self.wraps = True                   # positions wrap around the frame (shapes.py's length rule)

    def sample(self, rng: np.random.Generator, times) -> tuple[str, np.ndarray]:
        clip = self.shapes.make_clip(int(rng.integers(2**62)), times, "train", self.size)
        return clip.prompt, clip.frames

    def sample_switch(self, rng: np.random.Generator, times, at: float) -> tuple[list[str], np.ndarray]:
        """A clip whose prompt changes at time `at` to another trained motion of the same object: the
        prompt of each frame, and the frames. The step into the first frame under the new prompt already
        follows it, and the object continues from where it was (no jump)."""
        S = self.shapes
        clip = S.make_clip(int(rng.integers(2**62)), [0], "train", self.size)
        others = [m for c, sh, m in S.TRAIN_COMBOS if (c, sh) == (clip.colour, clip.shape) and m != clip.motion]
        new = others[int(rng.integers(len(others)))]
        frames = S.render(clip.colour, clip.shape, clip.motion, clip.seed, times, self.size,
                          switches=[(at - 1, new)])
        prompts = [S.make_prompt(clip.colour, clip.shape, new if t >= at else clip.motion) for t in times]
        return prompts, frames

    def prompts(self) -> list[str]:
        return [self.shapes.make_prompt(*c) for c in self.shapes.ALL_COMBOS]

    def vocabulary(self) -> list[str]:
        return self.shapes.vocabulary()

    def grammar(self) -> dict | None:
        return self.shapes.grammar()

    def example_prompts(self, limit: int = 6) -> list[str]:
        return list(self.EXAMPLES[:limit])

    def heldout_frames(self, n_clips: int = 64) -> np.ndarray:
        return np.concatenate([self.shapes.make_clip(10**9 + i, [0, 2.5, 5], "heldout", self.size).frames
                               for i in range(n_clips)])


class FolderWorld:
    """A dataset folder: videos in class folders (UCF-101 style, any of `VIDEO_EXTENSIONS`) or folders of
    frame images (BAIR style). Each clip is `n_frames` frames of one file (default 16) spanning
    t in [0, t_max] (default n_frames - 1: one frame per key-frame interval); a time maps to the
    nearest frame. The caption stays the same for the whole clip, so there is no `sample_switch`."""

    sample_switch = None
    wraps = False

    def __init__(self, root, size: int = 64, n_frames: int = 16, t_max: float | None = None):
        from .data.folder import VIDEO_EXTENSIONS, FrameFolder, VideoFolder

        root = Path(root)
        has_videos = root.is_dir() and any(p.suffix.lower() in VIDEO_EXTENSIONS for p in root.rglob("*"))
        self.data = (VideoFolder if has_videos else FrameFolder)(root, size=size, n_frames=n_frames)
        self.size, self.t_max = size, float(n_frames - 1 if t_max is None else t_max)
        if not self.t_max > 0:
            raise ValueError(f"t_max must be > 0 (a clip spans t in [0, t_max]), got {self.t_max}")

    def sample(self, rng, times) -> tuple[str, np.ndarray]:
        clip = self.data[int(rng.integers(len(self.data)))]
        frames = clip.frames
        idx = [min(len(frames) - 1, round(t * (len(frames) - 1) / self.t_max)) for t in times]
        return clip.prompt, frames[idx]

    def prompts(self) -> list[str]:
        return [caption for caption, _ in self.data.items]

    def vocabulary(self) -> list[str]:
        return self.data.vocabulary()

    def grammar(self) -> dict | None:
        return None  # captions are free word sequences

    def example_prompts(self, limit: int = 6) -> list[str]:
        return list(dict.fromkeys(self.prompts()))[:limit]

    def heldout_frames(self, n_clips: int = 8) -> np.ndarray:
        """Every 4th frame of the last `n_clips` clips (a folder has no held-out split of its own)."""
        last = range(max(0, len(self.data) - n_clips), len(self.data))
        return np.concatenate([self.data[i].frames[::4] for i in last])


def make_world(data: str, size: int, *, n_frames: int = 16, t_max: float | None = None) -> World:
    """"shapes" (the built-in world; n_frames and t_max do not apply) or a dataset folder (`FolderWorld`)."""
    if data == "shapes":
        return ShapesWorld(size)
    return FolderWorld(data, size, n_frames=n_frames, t_max=t_max)


def frame_stream(world: World, seed: int = 0, per_clip: int = 4):
    """Endless uint8 frame arrays (per_clip, size, size, 3) at random times, for tokenizer training."""
    rng = np.random.default_rng([seed, 7])
    while True:
        yield world.sample(rng, sorted(rng.uniform(0, world.t_max, per_clip)))[1]
