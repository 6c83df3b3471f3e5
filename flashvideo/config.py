"""One config for the whole model: token grid, vocabulary, layout limits and RetNet sizes.

Every sequence size in the project is derived from these fields (see `flashvideo.layout`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field


def without_sampling(config: dict) -> dict:
    """A config dict without its sampling defaults (`FlashVideoConfig.model_dict`), e.g. one read from a file."""
    return {k: v for k, v in config.items() if k != "sampling"}


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
    interp_count_token: bool = False  # an interpolation's task token names its n (one per n), not INTERP alone
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
    # the model's default sampling, chosen by measuring it (`python -m flashvideo eval --sweep`), e.g.
    # {"temperature": 0.8, "guidance_scale": 1.5}; what a caller leaves out comes from here, then from
    # `SamplingSettings`' neutral values (temperature 1, no top-k / top-p, no guidance)
    sampling: dict = field(default_factory=dict)

    def __post_init__(self):
        """Every field type-checked and bounded, so a hostile or corrupt config.json is refused before
        anything is sized from it. ValueError names the field and what is allowed (`load` adds the file)."""
        import numbers

        def whole(name, lo, hi):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not lo <= v <= hi:
                raise ValueError(f"{name} must be a whole number in {lo}..{hi}, got {v!r}")
            setattr(self, name, int(v))

        def number(name, lo, hi, open_low=False):
            v = getattr(self, name)
            ok = (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                  and (lo < v if open_low else lo <= v) and v <= hi)
            if not ok:
                raise ValueError(f"{name} must be a finite number in {'(' if open_low else '['}{lo}, {hi}], got {v!r}")
            setattr(self, name, float(v) if not isinstance(v, int) else v)

        whole("image_size", 4, 4096)
        whole("grid", 1, 256)
        whole("n_codes", 2, 65536)
        whole("n_text", 2, 1 << 20)
        whole("text_len", 1, 4096)
        whole("max_key_frames", 2, 1024)
        whole("max_interp_frames", 0, 1023)
        whole("d_model", 2, 16384)
        whole("n_layers", 1, 128)                  # also bounds the time to check a checkpoint (~20 ms a layer)
        whole("n_heads", 1, 256)
        number("ffn_mult", 0, 64, open_low=True)
        whole("chunk_size", 1, 1 << 16)
        number("memory_frames", 0.5, 1e4)          # with frames of >= 3 tokens, every decay is in (0, 1)
        number("shortest_memory", 1, 1e9, open_low=True)
        if not isinstance(self.interp_count_token, bool):
            raise ValueError(f"interp_count_token must be true or false, got {self.interp_count_token!r}")
        if self.image_size % self.grid:
            raise ValueError(f"image_size={self.image_size} must be a multiple of grid={self.grid}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")
        if int(self.ffn_mult * self.d_model) < 1:
            raise ValueError(f"ffn_mult * d_model must be at least 1, got {self.ffn_mult} * {self.d_model}")
        if self.tokenizer not in ("vq", "icetk"):
            raise ValueError(f"unknown tokenizer backend {self.tokenizer!r}; choose one of ['vq', 'icetk']")
        args = self.tokenizer_args
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise ValueError(f"tokenizer_args must be an object of named settings, got {args!r}"[:200])
        for k, v in args.items():
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096:
                raise ValueError(f"tokenizer_args.{k} must be a whole number in 1..4096, got {v!r}"[:200])
        from .sampler import SamplingSettings

        if not isinstance(self.sampling, dict):
            raise ValueError(f"sampling must be an object of sampling settings, got {self.sampling!r}"[:200])
        try:
            SamplingSettings.resolve(**self.sampling).check_codes(self.n_codes)
        except (TypeError, ValueError) as e:
            raise ValueError(f"sampling: {e}"[:300]) from None

    @property
    def frame_tokens(self) -> int:
        return self.grid * self.grid

    @property
    def n_sn(self) -> int:
        """Serial-number tokens needed: the most key frames, and n+2 for the densest interpolation."""
        return max(self.max_key_frames, self.max_interp_frames + 2)

    # Unified token ids: [image codes | text words (0 = pad) | SN_1..SN_n_sn | task tokens KEY, INTERP (n = 1, 2, ...)]
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
        return self.task_offset + 1 + (self.max_interp_frames if self.interp_count_token else 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def model_dict(self) -> dict:
        """The config without its sampling defaults: what fixes the model's shape and function."""
        return without_sampling(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "FlashVideoConfig":
        if not isinstance(d, dict):
            raise ValueError(f"the config must be a JSON object {{...}} of FlashVideo settings, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config.json has unknown fields {unknown[:10]}; is this a FlashVideo checkpoint? "
                             f"Known fields: {sorted(names)}")
        return cls(**d)

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, path) -> "FlashVideoConfig":
        """Read a config.json: a regular file of at most 1 MB holding valid settings; ValueError naming the
        file, the field and what is allowed otherwise (FileNotFoundError if it is missing)."""
        from .safe_io import read_json

        d = read_json(path)
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
