"""The video timeline: which frame is where, in one place.

A video of K key frames with n frames inserted between each pair has K + (K-1)*n frames. In time
order, key frame k (0-based) is frame k*(n+1), and in-between frame j (1..n) of pair p is frame
p*(n+1) + j. Time is measured in key-frame intervals: frame i sits at t = i / (n+1).

The pipeline decodes key frames first (in time order) and then the in-between frames, pair by pair
in lockstep; `event_order` lists the frame indices in the order the pipeline yields them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeline:
    key_frames: int
    interp_frames: int = 0

    def __post_init__(self):
        if self.key_frames < 1 or self.interp_frames < 0:
            raise ValueError(f"need key_frames >= 1 and interp_frames >= 0, got {self.key_frames}, {self.interp_frames}")

    @property
    def stride(self) -> int:
        return self.interp_frames + 1

    @property
    def n_frames(self) -> int:
        return self.key_frames + (self.key_frames - 1) * self.interp_frames

    @property
    def n_pairs(self) -> int:
        """Key-frame pairs, each interpolated on its own (they decode as one batch)."""
        return self.key_frames - 1

    @property
    def n_interpolated(self) -> int:
        return self.n_pairs * self.interp_frames

    def key_index(self, k: int) -> int:
        """Time-order index of key frame k (0-based)."""
        return k * self.stride

    def interp_index(self, pair: int, j: int) -> int:
        """Time-order index of in-between frame j (1..n) of pair `pair` (0-based)."""
        return pair * self.stride + j

    def kind(self, index: int) -> str:
        return "key" if index % self.stride == 0 else "interpolated"

    def key_number(self, index: int) -> int:
        """1-based number of the key frame at or before frame `index`."""
        return index // self.stride + 1

    @property
    def times(self) -> list[float]:
        """Time of every frame, in key-frame intervals: [0, 1/(n+1), ..., K-1]."""
        return [i / self.stride for i in range(self.n_frames)]

    @property
    def event_order(self) -> list[int]:
        """Frame indices in the order the pipeline yields them: key frames, then each step of the
        interpolation with all pairs in lockstep."""
        keys = [self.key_index(k) for k in range(self.key_frames)]
        between = [self.interp_index(p, j) for j in range(1, self.interp_frames + 1)
                   for p in range(self.n_pairs)]
        return keys + between
