"""Tokenizers: prompts -> word ids, frames -> grids of VQ codes and back.

Backends share the `Tokenizer` interface and are found by name in `TOKENIZERS`, the registry that
`load_tokenizer` reads: the name is the "backend" field of the checkpoint's tokenizer.json.
  * "vq"    - `VQTokenizer`: a word-level text tokenizer plus a small patch-local VQ-VAE
              (64x64 frame -> 8x8 codes by default; a code depends only on its own 8x8 patch). Stored as tokenizer.json + tokenizer.safetensors.
  * "icetk" - `IcetkTokenizer`: CogVideo's icetk (optional, needs torchvision and downloaded weights).

A new backend is a `Tokenizer` subclass decorated with `@register_tokenizer("name")`: it writes
{"backend": "name", ...} into tokenizer.json in `save`, reads it back in the classmethod `load`, and
may offer `train` (what `python -m flashvideo train-tokenizer` calls).
"""
from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

MAX_IMAGE_SIDE = 8192
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


# ----------------------------------------------------------------------------- images

def as_rgb_frame(image, size: int) -> np.ndarray:
    """Any image (PIL, or array (H,W) / (H,W,1) / (H,W,3) / (H,W,4), uint8 or float in [0,1])
    -> uint8 (size, size, 3): alpha composited on black, centre-cropped to a square, resized."""
    if isinstance(image, Image.Image):
        w, h = image.size
        if w == 0 or h == 0:
            raise ValueError(f"not an image: PIL image has empty size {image.size}")
        if max(w, h) > MAX_IMAGE_SIDE:
            raise ValueError(f"image is {w}x{h}; the largest side allowed is {MAX_IMAGE_SIDE} px")
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)           # (H,W,4)
            rgb = rgba[..., :3] * (rgba[..., 3:] / 255.0)                         # on black
            image = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
        else:
            image = image.convert("RGB")
    else:
        image = Image.fromarray(_array_to_rgb(image), "RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.LANCZOS if side > size else Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()                              # (size,size,3)


def _array_to_rgb(a) -> np.ndarray:
    """Array-like image -> uint8 (H,W,3); ValueError for anything that is not an image."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        a = np.asarray(a)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"not an image: cannot convert {type(a).__name__} to an array ({e})") from None
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"not an image: expected uint8 or float pixels, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        pass
    elif a.ndim == 2:
        a = a[:, :, None]
    else:
        raise ValueError(f"not an image: expected shape (H,W), (H,W,1), (H,W,3) or (H,W,4), got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"not an image: empty array of shape {a.shape}")
    if max(a.shape[:2]) > MAX_IMAGE_SIDE:
        raise ValueError(f"image is {a.shape[1]}x{a.shape[0]}; the largest side allowed is {MAX_IMAGE_SIDE} px")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0:
            raise ValueError("float images must hold finite values in [0, 1]")
        a = a.astype(np.float32) * 255.0
    elif a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise ValueError(f"integer images must hold values in [0, 255], got dtype {a.dtype} "
                             f"with range [{a.min()}, {a.max()}]")
    a = a.astype(np.float32)                                                     # (H,W,C) in [0,255]
    if a.shape[2] == 4:
        a = a[..., :3] * (a[..., 3:] / 255.0)                                    # alpha on black
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- text

def _words(text: str) -> list[str]:
    """Lower-case, punctuation -> space, split on whitespace."""
    return re.sub(r"[^\w\s]|_", " ", text.lower()).split()


class WordTokenizer:
    """Word-level tokenizer over a fixed vocabulary: word i of `vocab` has id i+1, id 0 is padding.

    With ``slots`` (a grammar, e.g. ``{"colour": ["red", ...], "shape": [...], "motion": ["moves left",
    ..., "grows"]}``) a prompt must name exactly one phrase of every slot, in any order, and is encoded
    in the slot order: "circle right red moves" reads as "red circle moves right", and "a circle moves
    right" is refused with a message naming the missing colour and the choices. Without slots the
    words are encoded as given."""

    def __init__(self, vocab: list[str], ignore: tuple[str, ...] = ("a", "an", "the"),
                 slots: dict[str, list[str]] | None = None):
        vocab, ignore = list(vocab), tuple(ignore)
        bad = [w for w in vocab if not isinstance(w, str) or _words(w) != [w]]
        if bad:
            raise ValueError(f"vocabulary words must be single lower-case words without punctuation, got {bad}")
        dup = sorted({w for w in vocab if vocab.count(w) > 1})
        if dup:
            raise ValueError(f"vocabulary has duplicate words {dup}")
        clash = sorted(set(vocab) & set(ignore))
        if clash:
            raise ValueError(f"words {clash} are both in the vocabulary and ignored")
        if not vocab:
            raise ValueError("vocabulary is empty")
        self.vocab, self.ignore = vocab, ignore
        self._ids = {w: i + 1 for i, w in enumerate(vocab)}
        self.slots = {str(k): [str(p) for p in v] for k, v in (slots or {}).items()}
        outside = sorted({w for v in self.slots.values() for p in v for w in _words(p)} - set(vocab))
        if outside:
            raise ValueError(f"grammar phrases use words {outside} that are not in the vocabulary")

    @property
    def n_text(self) -> int:
        return len(self.vocab) + 1

    def encode(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        words = [w for w in _words(prompt) if w not in self.ignore]
        if not words:
            raise ValueError(f"empty prompt {prompt!r}: it has no words besides {list(self.ignore)}")
        unknown = [w for w in dict.fromkeys(words) if w not in self._ids]
        if unknown:
            raise ValueError(f"unknown words {unknown} in prompt {prompt!r}; known words: {', '.join(self.vocab)}")
        if self.slots:
            words = self._canonical(prompt, words)
        return [self._ids[w] for w in words]

    def _canonical(self, prompt: str, words: list[str]) -> list[str]:
        """The prompt's phrases in slot order; ValueError naming a missing, repeated or stray part."""
        left, found = list(words), {}
        for slot, phrases in self.slots.items():
            for phrase in sorted(phrases, key=lambda p: -len(p.split())):  # "moves left" before "moves"
                parts = phrase.split()
                if all(w in left for w in parts):
                    found.setdefault(slot, []).append(phrase)
                    for w in parts:
                        left.remove(w)
        missing = [slot for slot in self.slots if slot not in found]
        if missing:
            choices = "; ".join(f"{slot}: {', '.join(self.slots[slot])}" for slot in missing)
            raise ValueError(f"prompt {prompt!r} has no {' and no '.join(missing)}; name one ({choices}), "
                             f"e.g. 'a red circle moves right'")
        twice = {slot: v for slot, v in found.items() if len(v) > 1}
        if twice:
            raise ValueError(f"prompt {prompt!r} names more than one {' and '.join(twice)}: "
                             f"{'; '.join(', '.join(v) for v in twice.values())}; name one of each")
        if left:
            raise ValueError(f"prompt {prompt!r}: the word(s) {left} do not fit its description; "
                             f"expected one {', one '.join(self.slots)}, e.g. 'a red circle moves right'")
        return [w for slot in self.slots for w in found[slot][0].split()]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.n_text]
        if bad:
            raise ValueError(f"text ids {bad} are outside [0, {self.n_text})")
        return " ".join(self.vocab[i - 1] for i in ids if i != 0)

    def to_dict(self) -> dict:
        return {"vocab": list(self.vocab), "ignore": list(self.ignore), **({"slots": self.slots} if self.slots else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "WordTokenizer":
        return cls(d["vocab"], tuple(d.get("ignore", ("a", "an", "the"))), d.get("slots"))


# ----------------------------------------------------------------------------- VQ-VAE

class _PixelNorm(nn.Module):
    """RMS norm over the channels of each position on its own (no statistics across positions)."""

    def __init__(self, ch: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ch, 1, 1))

    def forward(self, x):                                                # (B,C,H,W)
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-6) * self.weight


class _ResBlock(nn.Module):
    """x + conv(silu(conv(silu(pixelnorm(x))))). ``k=1`` keeps each position on its own (encoder);
    ``k=3`` with replicate padding lets the decoder look at neighbouring codes without border effects.
    `VQVAE._init_weights` zeroes the last conv so that every block starts as the identity."""

    def __init__(self, ch: int, k: int):
        super().__init__()
        conv = dict(padding=k // 2, padding_mode="replicate") if k > 1 else {}
        self.body = nn.Sequential(_PixelNorm(ch), nn.SiLU(), nn.Conv2d(ch, ch, k, **conv),
                                  nn.SiLU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        return x + self.body(x)


class CosineQuantizer(nn.Module):
    """Nearest code by cosine similarity; codes and encodings live on the unit sphere.
    Straight-through gradients; `usage` counts how often each code was picked since the last restart."""

    def __init__(self, n_codes: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.n_codes, self.dim, self.beta = n_codes, dim, beta
        self.codebook = nn.Parameter(F.normalize(torch.randn(n_codes, dim), dim=1))   # (K,D)
        self.register_buffer("usage", torch.zeros(n_codes), persistent=False)         # (K,)

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """z (N,D) unit vectors -> code ids (N,)."""
        return (z @ F.normalize(self.codebook, dim=1).t()).argmax(dim=1)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B,h,w) -> unit vectors (B,D,h,w)."""
        return F.normalize(self.codebook, dim=1)[codes].permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor):
        """z (B,D,h,w) -> (quantised (B,D,h,w), loss, codes (B,h,w))."""
        b, d, h, w = z.shape
        zf = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, d), dim=1)                 # (N,D)
        idx = self.lookup(zf)                                                         # (N,)
        zq = F.normalize(self.codebook, dim=1)[idx]                                   # (N,D)
        loss = ((zq - zf.detach()) ** 2).sum(1).mean() + self.beta * ((zf - zq.detach()) ** 2).sum(1).mean()
        if self.training:
            self.usage += torch.bincount(idx, minlength=self.n_codes).to(self.usage)
        zq = zf + (zq - zf).detach()                                                  # straight-through
        return zq.view(b, h, w, d).permute(0, 3, 1, 2), loss, idx.view(b, h, w)

    @torch.no_grad()
    def restart_dead_codes(self, z: torch.Tensor, min_usage: float = 1.0) -> torch.Tensor:
        """Move codes used fewer than `min_usage` times onto random encodings z (B,D,h,w) of a batch,
        reset the usage counts, and return the restarted code ids."""
        zf = F.normalize(z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]), dim=1)  # (N,D)
        dead = torch.nonzero(self.usage < min_usage).flatten()
        if len(dead):
            pick = torch.randint(len(zf), (len(dead),), device=zf.device)
            new = zf[pick] + 0.01 * torch.randn(len(dead), zf.shape[1], device=zf.device)
            self.codebook.data[dead] = F.normalize(new, dim=1).to(self.codebook.dtype)
        self.usage.zero_()
        return dead


class VQVAE(nn.Module):
    """Patch-local VQ-VAE: (B,3,H,W) in [-1,1] -> (B,h,w) codes with h = w = image_size // downsample.

    Encoder: a code sees only its own downsample x downsample patch. Two non-overlapping strided convs
    (sub-patches of downsample/2, then 2x2 of them) and position-wise (1x1) residual blocks; no padding
    and no statistics across positions, so identical patches get identical codes wherever they are and
    whatever else is in the frame, and a plain frame is a single code.
    Decoder: 3x3 convs with replicate padding over the code grid (it may look at neighbouring codes to
    draw smooth edges), nearest 2x upsampling steps, a 3x3 conv to RGB.
    """

    def __init__(self, *, image_size: int = 64, downsample: int = 8, n_codes: int = 1024,
                 code_dim: int = 32, channels: int = 64, n_res: int = 2):
        super().__init__()
        if downsample < 2 or downsample & (downsample - 1):
            raise ValueError(f"downsample must be a power of 2 >= 2, got {downsample}")
        if image_size % downsample:
            raise ValueError(f"image_size={image_size} is not a multiple of downsample={downsample}")
        self.kwargs = dict(image_size=image_size, downsample=downsample, n_codes=n_codes,
                           code_dim=code_dim, channels=channels, n_res=n_res)
        self.image_size, self.n_codes, self.grid = image_size, n_codes, image_size // downsample
        top = 2 * channels
        sub = downsample // 2
        enc = [nn.Conv2d(3, channels, sub, stride=sub), nn.SiLU(),     # (B,C,H/sub,W/sub): one per sub-patch
               nn.Conv2d(channels, top, 2, stride=2)]                   # (B,2C,h,w): one per patch
        enc += [_ResBlock(top, 1) for _ in range(n_res)]
        enc += [_PixelNorm(top), nn.SiLU(), nn.Conv2d(top, code_dim, 1)]                # (B,D,h,w)
        self.encoder = nn.Sequential(*enc)
        self.quantizer = CosineQuantizer(n_codes, code_dim)

        rep = dict(padding=1, padding_mode="replicate")
        dec = [nn.Conv2d(code_dim, top, 3, **rep)] + [_ResBlock(top, 3) for _ in range(n_res)]
        c_in = top
        for i in range(int(math.log2(downsample))):                      # (B,c,2h,2w) ... (B,c,H,W)
            c = max(channels // 2, top >> (i + 1))
            dec += [nn.SiLU(), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c, 3, **rep)]
            c_in = c
        dec += [nn.SiLU(), nn.Conv2d(c_in, 3, 3, **rep)]                                # (B,3,H,W)
        self.decoder = nn.Sequential(*dec)
        self._init_weights()

    def _init_weights(self):
        """He-normal init (PyTorch's default shrinks the signal at every layer, which stalls early training)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, _ResBlock):
                nn.init.zeros_(m.body[-1].weight)

    def _check_images(self, x: torch.Tensor):
        want = (3, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images (B,{want[0]},{want[1]},{want[2]}), got {tuple(x.shape)}")

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,3,H,W) in [-1,1] -> continuous encodings (B,D,h,w), before quantisation."""
        self._check_images(x)
        return self.encoder(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,3,H,W) in [-1,1] -> codes LongTensor (B,h,w)."""
        z = self.encode_latents(x)
        b, d, h, w = z.shape
        zf = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, d), dim=1)
        return self.quantizer.lookup(zf).view(b, h, w)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B,h,w) -> images (B,3,H,W) clamped to [-1,1]."""
        if codes.ndim != 3 or tuple(codes.shape[1:]) != (self.grid, self.grid):
            raise ValueError(f"expected codes (B,{self.grid},{self.grid}), got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.n_codes):
            raise ValueError(f"codes must lie in [0, {self.n_codes}), got [{int(codes.min())}, {int(codes.max())}]")
        return self.decoder(self.quantizer.embed(codes.long())).clamp(-1, 1)

    def forward(self, x: torch.Tensor):
        """x (B,3,H,W) -> (recon (B,3,H,W) unclamped, vq_loss scalar, codes (B,h,w))."""
        zq, vq_loss, codes = self.quantizer(self.encode_latents(x))
        return self.decoder(zq), vq_loss, codes


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


MAX_VQ_SETTING = 4096      # every VQ constructor setting is a whole number in 1..MAX_VQ_SETTING,
MAX_VQ_REPEATS = 64        # and a count of repeated blocks (n_res, n_layers, n_blocks, depth) at most this:
REPEAT_SETTINGS = ("n_res", "n_layers", "n_blocks", "depth")   # checking costs ~30 ms a block on the meta device


def _build_vq(kwargs: dict, weights: Path, source: Path) -> VQVAE:
    """VQVAE(**kwargs) with weights read from a safetensors file; ValueError naming any bad setting or tensor.

    Nothing is allocated from the files before it is checked: every setting must be a whole number in
    1..MAX_VQ_SETTING (block counts 1..MAX_VQ_REPEATS), the module is first built on the meta device (no memory) to learn its tensor
    shapes, the weights must be a regular file of bounded size whose safetensors header lists exactly
    those shapes, and no weight may be NaN or inf. Only then is the real module built and filled."""
    from .safe_io import MAX_WEIGHTS_BYTES, load_tensors, read_regular_file, safetensors_header

    if not isinstance(kwargs, dict):
        raise ValueError(f"{source} has no 'vq' settings object")
    for k, v in kwargs.items():
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
    return tok
