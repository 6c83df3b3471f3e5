"""One preprocessing for every image that becomes a frame: training clips from folder datasets
(`flashvideo.data.folder`) and a first frame given at inference (`FlashVideoPipeline.encode_image`)
go through `as_rgb_frame`, so the model sees frames prepared the same way in both."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

MAX_IMAGE_SIDE = 8192


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
