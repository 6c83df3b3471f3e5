"""Tokenizers: prompts -> word ids, frames -> grids of VQ codes and back.

Backends share the `Tokenizer` interface and are found by name in `TOKENIZERS`, the registry that
`load_tokenizer` reads: the name is the "backend" field of the checkpoint's tokenizer.json.
  * "vq"    - `VQTokenizer`: a word-level text tokenizer plus a small patch-local VQ-VAE
              (64x64 frame -> 8x8 codes by default; a code depends only on its own 8x8 patch). Stored as tokenizer.json + tokenizer.safetensors.
  * "icetk" - `IcetkTokenizer`: CogVideo's icetk (optional, needs torchvision and downloaded weights).

A new backend is a `Tokenizer` subclass decorated with `@register_tokenizer("name")`: it writes
{"backend": "name", ...} into tokenizer.json in `save`, reads it back in the classmethod `load`, and
may offer `train` (what `python -m flashvideo train-tokenizer` calls).

The VQ backend's parts live beside this module: `flashvideo.words` (prompt words <-> ids),
`flashvideo.vqvae` (the VQ-VAE) and `flashvideo.frames` (`as_rgb_frame`, the one frame preprocessing).
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from .centring import check_wraps
from .frames import as_rgb_frame  # noqa: F401  (re-exported: the one frame preprocessing)
from .vqvae import VQVAE
from .words import WordTokenizer

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def save_vq(vq: VQVAE, folder, name: str = "vq", extra: dict | None = None) -> None:
    """Write <name>.json ({"vq": constructor kwargs, **extra}) and <name>.safetensors."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.json", "w") as f:
        json.dump({"vq": vq.kwargs, **(extra or {})}, f, indent=2)
    save_file({k: v.detach().cpu().contiguous() for k, v in vq.state_dict().items()},
              str(folder / f"{name}.safetensors"))


def _read_json(path: Path) -> dict:
    """A JSON object from a regular file of at most 1 MB (never a pipe or a device); FileNotFoundError
    or a ValueError that names the file."""
    from .safe_io import read_json

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"tokenizer file {path} is missing")
    return read_json(path)


def _refuse_pickles(folder: Path, name: str) -> None:
    try:
        found = sorted(p.name for p in Path(folder).glob(f"{name}.*") if p.suffix.lower() in PICKLE_SUFFIXES)
    except OSError:
        return
    if found:
        raise ValueError(f"refusing to load pickle file(s) {found} in {folder}: weights are read only from "
                         f"{name}.safetensors (pickle files can run arbitrary code); convert them with "
                         f"safetensors.torch.save_file")


MAX_VQ_SETTING = 4096      # every VQ constructor setting but "wrap" (a bool) is a whole number in 1..MAX_VQ_SETTING,
MAX_VQ_REPEATS = 64        # and a count of repeated blocks (n_res, n_layers, n_blocks, depth) at most this:
REPEAT_SETTINGS = ("n_res", "n_layers", "n_blocks", "depth")   # checking costs ~30 ms a block on the meta device


def _build_vq(kwargs: dict, weights: Path, source: Path) -> VQVAE:
    """VQVAE(**kwargs) with weights read from a safetensors file; ValueError naming any bad setting or tensor.

    Nothing is allocated from the files before it is checked: every setting but "wrap" (a bool) must be a whole
    number in 1..MAX_VQ_SETTING (block counts 1..MAX_VQ_REPEATS), the module is first built on the meta device (no memory) to learn its tensor
    shapes, the weights must be a regular file of bounded size whose safetensors header lists exactly
    those shapes, and no weight may be NaN or inf. Only then is the real module built and filled."""
    from .safe_io import MAX_WEIGHTS_BYTES, load_tensors, read_regular_file, safetensors_header

    if not isinstance(kwargs, dict):
        raise ValueError(f"{source} has no 'vq' settings object")
    for k, v in kwargs.items():
        if k == "wrap":
            if not isinstance(v, bool):
                raise ValueError(f"{source}: VQ setting 'vq.wrap' must be true or false, got {v!r}"[:300])
            continue
        hi = MAX_VQ_REPEATS if k in REPEAT_SETTINGS else MAX_VQ_SETTING
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise ValueError(f"{source}: VQ setting 'vq.{k}' must be a whole number in 1..{hi}, got {v!r}"[:300])
    try:
        with torch.device("meta"):
            own = {k: tuple(v.shape) for k, v in VQVAE(**kwargs).state_dict().items()}
    except TypeError as e:
        raise ValueError(f"{source} has bad VQ settings {kwargs}: {e}") from None
    except (ValueError, RuntimeError, ZeroDivisionError, OverflowError) as e:
        raise ValueError(f"{source} has VQ settings that do not make a VQ-VAE {kwargs}: {e}") from None
    if not weights.exists() and not weights.is_symlink():
        _refuse_pickles(weights.parent, weights.stem)
        raise FileNotFoundError(f"tokenizer weights file {weights} is missing")
    data = read_regular_file(weights, MAX_WEIGHTS_BYTES)
    header = safetensors_header(data, weights)
    missing, extra = sorted(set(own) - set(header)), sorted(set(header) - set(own))
    if missing or extra:
        raise ValueError(f"{weights} does not match the VQ settings in {source}: "
                         f"missing tensors {missing[:8]}, unexpected tensors {extra[:8]}")
    for k, (_, shape) in header.items():
        if shape != own[k]:
            raise ValueError(f"tensor {k!r} in {weights} has shape {shape}, "
                             f"expected {own[k]} for VQ settings {kwargs}")
    state = load_tensors(data, weights)
    del data
    vq = VQVAE(**kwargs)
    vq.load_state_dict(state)
    return vq.eval()


# ----------------------------------------------------------------------------- tokenizer interface

class TokenizerUnavailable(RuntimeError):
    """A tokenizer backend cannot be loaded on this machine."""


TOKENIZERS: dict[str, type] = {}   # backend name (tokenizer.json's "backend") -> Tokenizer subclass


def register_tokenizer(name: str):
    """Class decorator: `load_tokenizer` (and `train-tokenizer`) find the class by this backend name."""
    def add(cls):
        cls.backend = name
        TOKENIZERS[name] = cls
        return cls
    return add


def tokenizer_class(name) -> type:
    """The registered Tokenizer subclass for a backend name; ValueError listing the names otherwise."""
    if not isinstance(name, str) or name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer backend {str(name)[:40]!r}; choose one of {list(TOKENIZERS)}")
    return TOKENIZERS[name]


class Tokenizer(ABC):
    """Interface: text <-> ids in [1, n_text) (0 = pad), uint8 frames (T,H,W,3) <-> codes (T,grid,grid)."""

    backend: str = ""                  # the registry name, set by `register_tokenizer`
    image_size: int
    grid: int
    n_codes: int
    n_text: int
    batch_size: int = 64
    wraps: bool = False                # its frames wrap around (a torus): codes rolled draw the frame rolled

    @classmethod
    def load(cls, folder: Path, meta: dict | None, **tokenizer_args) -> "Tokenizer":
        """Read the tokenizer `save` wrote into folder; meta is its parsed tokenizer.json (None if absent)."""
        raise NotImplementedError(f"the {cls.backend!r} tokenizer cannot be loaded from a folder")

    @classmethod
    def train(cls, frames, words: "WordTokenizer", **options) -> tuple["Tokenizer", dict]:
        """Train on an iterator of uint8 frame arrays (N,H,W,3); returns (tokenizer, metrics)."""
        raise ValueError(f"the {cls.backend!r} tokenizer cannot be trained here")

    @abstractmethod
    def encode_text(self, prompt: str) -> list[int]:
        """Prompt -> text ids in [1, n_text)."""

    @property
    @abstractmethod
    def vocabulary(self) -> list[str]:
        """The words (text pieces) this tokenizer knows."""

    @abstractmethod
    def save(self, folder) -> None:
        """Write the tokenizer into folder (read back by `load_tokenizer`)."""

    @abstractmethod
    def _encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """x float (B,3,H,W) in [0,1] -> codes (B,grid,grid)."""

    @abstractmethod
    def _decode_images(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B,grid,grid) -> float (B,3,H,W) in [0,1]."""

    def encode_frames(self, frames) -> torch.Tensor:
        """uint8 frames (T,H,W,3), numpy or torch -> LongTensor codes (T,grid,grid)."""
        want = f"(T,{self.image_size},{self.image_size},3) uint8"
        x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected frames {want} as a numpy array or tensor, got {type(frames).__name__}")
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.image_size, self.image_size, 3) or x.dtype != torch.uint8:
            raise ValueError(f"expected frames {want}, got {tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
                             f" (use as_rgb_frame to convert images)")
        out = [self._encode_images(x[i:i + self.batch_size].permute(0, 3, 1, 2).float() / 255.0)
               for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).long() if out else torch.zeros(0, self.grid, self.grid, dtype=torch.long)

    def decode_frames(self, codes) -> np.ndarray:
        """codes (T,grid,grid) or (grid,grid) -> uint8 frames (T,H,W,3)."""
        c = torch.as_tensor(codes)
        if c.ndim == 2:
            c = c[None]
        if c.ndim != 3 or tuple(c.shape[1:]) != (self.grid, self.grid):
            raise ValueError(f"expected codes (T,{self.grid},{self.grid}) or ({self.grid},{self.grid}), "
                             f"got {tuple(torch.as_tensor(codes).shape)}")
        if c.dtype.is_floating_point or c.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {c.dtype}")
        if c.numel() and (c.min() < 0 or c.max() >= self.n_codes):
            raise ValueError(f"codes must lie in [0, {self.n_codes}), got [{int(c.min())}, {int(c.max())}]")
        out = [self._decode_images(c[i:i + self.batch_size].long()) for i in range(0, len(c), self.batch_size)]
        if not out:
            return np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        x = torch.cat(out).clamp(0, 1).mul(255).round().to(torch.uint8)               # (T,3,H,W)
        return x.permute(0, 2, 3, 1).numpy()


@register_tokenizer("vq")
class VQTokenizer(Tokenizer):
    """WordTokenizer for prompts + VQVAE for frames; saved as tokenizer.json + tokenizer.safetensors."""

    def __init__(self, words: WordTokenizer, vq: VQVAE, batch_size: int = 64):
        self.words, self.vq, self.batch_size = words, vq.eval(), batch_size
        self.image_size, self.grid, self.n_codes = vq.image_size, vq.grid, vq.n_codes
        self.wraps = bool(vq.kwargs.get("wrap", False))
        self.n_text = words.n_text

    def encode_text(self, prompt: str) -> list[int]:
        return self.words.encode(prompt)

    @property
    def vocabulary(self) -> list[str]:
        return list(self.words.vocab)

    @torch.no_grad()
    def _encode_images(self, x):
        self.vq.eval()
        return self.vq.encode(x * 2 - 1)

    @torch.no_grad()
    def _decode_images(self, codes):
        self.vq.eval()
        return (self.vq.decode_codes(codes) + 1) / 2

    def save(self, folder) -> None:
        save_vq(self.vq, folder, "tokenizer", {"backend": self.backend, **self.words.to_dict()})

    @classmethod
    def load(cls, folder: Path, meta: dict | None, **tokenizer_args) -> "VQTokenizer":
        source = folder / "tokenizer.json"
        if meta is None or "vocab" not in meta:
            raise ValueError(f"{source} is not a VQ tokenizer (backend={str((meta or {}).get('backend'))[:40]!r}, "
                             f"needs 'vocab' and 'vq')")
        _check_words(meta, source)
        vq = _build_vq(meta.get("vq"), folder / "tokenizer.safetensors", source)
        try:
            words = WordTokenizer.from_dict(meta)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{source}: {e}") from None
        return cls(words, vq, **tokenizer_args)

    @classmethod
    def train(cls, frames, words: WordTokenizer, **options) -> tuple["VQTokenizer", dict]:
        """A VQ-VAE trained on `frames`: options as `flashvideo.train_tokenizer.train_tokenizer`
        (vq_kwargs, steps, batch_size, lr, seed, ...)."""
        from .train_tokenizer import train_tokenizer

        vq, metrics = train_tokenizer(frames, **options)
        return cls(words, vq), metrics


@register_tokenizer("icetk")
class IcetkTokenizer(Tokenizer):
    """CogVideo's icetk: 160x160 images <-> 20x20 codes in [0,20000); text ids (offset 20000 in icetk)
    are shifted to start at 1 so that 0 stays the padding id."""

    IMAGE_TOKENS = 20000

    def __init__(self, device: str | None = None, batch_size: int = 8):
        try:
            from icetk import icetk
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            icetk.configure(device=device, fp16=device.startswith("cuda"))
            n_text = icetk.num_text_tokens                 # loads (or downloads) the text model
            _ = icetk.image_tokenizer                      # loads (or downloads) the image model now, not later
        except Exception as e:
            raise TokenizerUnavailable(
                f"icetk could not be loaded ({type(e).__name__}: {e}). icetk needs torchvision and its weight "
                f"files, which it downloads on first use (so network access or a pre-populated cache such as "
                f"~/.icetk_models is required). Install it with `pip install icetk`. The default model uses the "
                f"built-in VQ tokenizer instead: omit `tokenizer: \"icetk\"` from the config.") from e
        self._icetk, self._device, self.batch_size = icetk, device, batch_size
        self.image_size, self.grid, self.n_codes = 160, 20, self.IMAGE_TOKENS
        self.n_text = n_text + 1

    def encode_text(self, prompt: str) -> list[int]:
        ids = [i - self.IMAGE_TOKENS + 1 for i in self._icetk.encode(prompt)]
        if not ids:
            raise ValueError(f"empty prompt {prompt!r}")
        return ids

    @property
    def vocabulary(self) -> list[str]:
        return [self._icetk[self.IMAGE_TOKENS + i] for i in range(self.n_text - 1)]

    @torch.no_grad()
    def _encode_images(self, x):
        ids = self._icetk.encode(image_torch=x, image_size=self.image_size, compress_rate=8)   # (B,400)
        return ids.view(len(x), self.grid, self.grid).cpu()

    @torch.no_grad()
    def _decode_images(self, codes):
        return self._icetk.decode(image_ids=codes.to(self._device)).float().cpu()  # (B,3,160,160)

    def save(self, folder) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(Path(folder) / "tokenizer.json", "w") as f:
            json.dump({"backend": self.backend}, f, indent=2)

    @classmethod
    def load(cls, folder: Path, meta: dict | None, **tokenizer_args) -> "IcetkTokenizer":
        return cls(**tokenizer_args)      # icetk keeps its own weights (~/.icetk_models)


MAX_VOCAB = 16384           # words in a tokenizer.json vocabulary


def _check_words(meta: dict, source: Path) -> None:
    """tokenizer.json's word fields, typed and bounded before the WordTokenizer sees them."""
    def strings(name, value, most, longest=64):
        if (not isinstance(value, list) or len(value) > most
                or not all(isinstance(w, str) and 0 < len(w) <= longest for w in value)):
            raise ValueError(f"{source}: '{name}' must be a list of at most {most} words (strings of 1..{longest} "
                             f"characters), got {json.dumps(value)[:60]}")

    strings("vocab", meta.get("vocab"), MAX_VOCAB)
    if "ignore" in meta:
        strings("ignore", meta["ignore"], 64)
    slots = meta.get("slots")
    if slots is not None:
        if not isinstance(slots, dict) or len(slots) > 64:
            raise ValueError(f"{source}: 'slots' must be an object of at most 64 named phrase lists, "
                             f"got {json.dumps(slots)[:60]}")
        for name, phrases in slots.items():
            strings(f"slots.{name}", phrases, MAX_VOCAB, longest=256)


def read_tokenizer(folder, backend: str = "vq", **tokenizer_args) -> Tokenizer:
    """The tokenizer in `folder`, by the backend its tokenizer.json names (`TOKENIZERS`). A folder without
    tokenizer.json serves only when `backend` is "icetk" (its weights live outside the checkpoint);
    `backend` "vq" (the default) means "as tokenizer.json says", any other name must agree with the file.
    A hostile tokenizer.json or tokenizer.safetensors gets a ValueError naming the file and the field."""
    folder = Path(folder)
    if backend == "icetk" and not (folder / "tokenizer.json").exists():
        name, meta = "icetk", None
    else:
        if folder.is_file() or folder.suffix.lower() in PICKLE_SUFFIXES:
            if folder.suffix.lower() in PICKLE_SUFFIXES:
                raise ValueError(f"refusing to load pickle file {folder}: tokenizers are read only from "
                                 f"tokenizer.json + tokenizer.safetensors")
            raise ValueError(f"{folder} is a file; pass the folder holding tokenizer.json and tokenizer.safetensors")
        if not folder.is_dir():
            raise FileNotFoundError(f"tokenizer folder {folder} does not exist")
        source = folder / "tokenizer.json"
        meta = _read_json(source)
        name = meta.get("backend", "vq")
        if not isinstance(name, str) or name not in TOKENIZERS:
            raise ValueError(f"{source}: unknown tokenizer backend {str(name)[:40]!r}; "
                             f"registered: {list(TOKENIZERS)}")
        if backend not in ("vq", name):
            raise ValueError(f"asked for tokenizer backend {backend!r} but {source} holds backend {name!r}")
    return TOKENIZERS[name].load(folder, meta, **tokenizer_args)


def load_tokenizer(folder, config) -> Tokenizer:
    """`read_tokenizer` for a model: the config's tokenizer backend and tokenizer_args, and the tokenizer
    checked against the config's image_size / grid / n_codes / n_text (see `_build_vq` for the file checks)."""
    args = dict(config.tokenizer_args or {})
    unknown = sorted(set(args) - {"batch_size"})
    if unknown:
        raise ValueError(f"unknown tokenizer_args {unknown}; supported: ['batch_size']")
    tok = read_tokenizer(folder, config.tokenizer, **args)
    for name in ("image_size", "grid", "n_codes"):
        if getattr(tok, name) != getattr(config, name):
            raise ValueError(f"tokenizer has {name}={getattr(tok, name)} but the config says "
                             f"{name}={getattr(config, name)}")
    if tok.n_text > config.n_text:
        raise ValueError(f"tokenizer needs n_text={tok.n_text} text ids but the config has n_text={config.n_text}")
    if config.sampling.get("centre_first"):
        check_wraps(tok, f"{Path(folder) / 'config.json'}, sampling")
    return tok
