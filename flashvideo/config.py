"""One config for the whole model: token grid, vocabulary, layout limits and RetNet sizes.

Every sequence size in the project is derived from these fields (see `flashvideo.layout`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field


@dataclass
class FlashVideoConfig:
    # image tokens
    image_size: int = 64          # frames are image_size x image_size RGB
    grid: int = 8                 # a frame is grid x grid codes (raster order)
    n_codes: int = 1024           # VQ codebook size
    # text tokens
    n_text: int = 32              # text vocabulary size, id 0 is padding
    text_len: int = 6             # prompt words, padded to this length
    # layout limits
    max_key_frames: int = 16      # most key frames in one video
    max_interp_frames: int = 7    # most frames inserted between two key frames
    # RetNet
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 4
    ffn_mult: float = 2.0         # GLU hidden size = ffn_mult * d_model
    chunk_size: int = 128         # chunkwise retention block length
    memory_frames: float = 4.0    # longest head's decay horizon 1/(1-gamma), in frames
    shortest_memory: float = 16.0 # shortest head's horizon, in tokens
    # tokenizer backend: "vq" (ours, shipped) or "icetk" (optional)
    tokenizer: str = "vq"
    tokenizer_args: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")
        if self.max_key_frames < 2:
            raise ValueError("max_key_frames must be at least 2")
        if self.max_interp_frames < 0:
            raise ValueError("max_interp_frames must be >= 0")

    @property
    def frame_tokens(self) -> int:
        return self.grid * self.grid

    @property
    def n_sn(self) -> int:
        """Serial-number tokens needed: the most key frames, and n+2 for the densest interpolation."""
        return max(self.max_key_frames, self.max_interp_frames + 2)

    # Unified token ids: [image codes | text words (0 = pad) | SN_1..SN_n_sn | task tokens KEY, INTERP]
    @property
    def text_offset(self) -> int:
        return self.n_codes

    @property
    def sn_offset(self) -> int:
        return self.n_codes + self.n_text

    @property
    def task_offset(self) -> int:
        return self.sn_offset + self.n_sn

    @property
    def vocab_size(self) -> int:
        return self.task_offset + 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FlashVideoConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config.json has unknown fields {unknown}; is this a FlashVideo checkpoint?")
        return cls(**d)

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, path) -> "FlashVideoConfig":
        with open(path) as f:
            return cls.from_dict(json.load(f))
