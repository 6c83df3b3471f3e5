"""Real text-video data from folders, as the same `Clip` items the synthetic world yields.

* `VideoFolder`: a UCF-101-style tree ``root/<class_name>/<video>.avi|.mp4|.gif|...``; the caption is
  the class name split into words ("ApplyEyeMakeup" -> "apply eye makeup", "jump_rope" -> "jump rope").
* `FrameFolder`: a BAIR-style tree ``root/<video_name>/<frame images>``; the caption comes from
  ``caption.txt`` in the video folder, else the folder name (when it has letters), else the
  ``caption`` argument.

Each item is a `Clip` with the caption as prompt, ``n_frames`` uint8 frames ``(n_frames, size, size, 3)``
(each frame through `flashvideo.frames.as_rgb_frame`, the same preprocessing as a first frame at
inference: alpha on black, centre-cropped to a square and resized, so frames of mixed sizes are fine), times
0..n_frames-1 (every real frame counts as a key frame), seed = the item's index and no
colour/shape/motion. A video shorter than ``n_frames`` is padded by repeating its last frame.

Files are checked when the dataset is built: a file that is empty or cannot be opened is skipped
with a warning naming it; a root with nothing usable raises ValueError. Only the frames an item
needs are decoded, when the item is read.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image

from flashvideo.data.shapes import Clip
from flashvideo.frames import as_rgb_frame

VIDEO_EXTENSIONS = (".avi", ".mp4", ".gif", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def caption_from_name(name: str) -> str:
    """Words of a folder name, lower case: "ApplyEyeMakeup" -> "apply eye makeup", "TVShow_2" -> "tv show 2"."""
    return " ".join(w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name))


def _normalise(text: str) -> str:
    """A caption as lower-case words separated by single spaces, punctuation dropped."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _natural_key(name: str) -> list:
    """Sort key putting "frame2" before "frame10"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _usable(path: Path, kind: str, probe) -> bool:
    """Whether `probe(path)` reads the file; a warning naming it when it is empty or cannot be read
    (any decoder failure makes the file unusable: PIL and the video plugins raise many types)."""
    if path.stat().st_size == 0:
        warnings.warn(f"skipping empty {kind} file {path}", stacklevel=4)
        return False
    try:
        probe(path)
    except Exception as error:
        warnings.warn(f"skipping unreadable {kind} {path}: {_first_line(error)}", stacklevel=4)
        return False
    return True


def _pad(frames: list[np.ndarray], n_frames: int) -> np.ndarray:
    """Stack frames, repeating the last one up to ``n_frames``."""
    return np.stack(frames + [frames[-1]] * (n_frames - len(frames)))


def _subfolders(root: Path, what: str) -> list[Path]:
    if not root.is_dir():
        raise ValueError(f"{what} root {str(root)!r} is not a directory")
    return sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name))


class _FolderDataset(torch.utils.data.Dataset):
    """Shared map-style behaviour: ``items`` holds ``(caption, source)`` pairs and subclasses
    define ``_load(source) -> uint8 (n_frames, size, size, 3)``. Items are `Clip` objects, so use
    a DataLoader with ``batch_size=None`` or ``collate_fn=list``."""

    items: list[tuple[str, object]]
    n_frames: int

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Clip:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        caption, source = self.items[index]
        frames = self._load(source)
        return Clip(caption, None, None, None, index, frames, tuple(float(t) for t in range(self.n_frames)))

    def vocabulary(self) -> list[str]:
        """Every caption word, sorted."""
        return sorted({w for caption, _ in self.items for w in caption.split()})


class VideoFolder(_FolderDataset):
    """Videos in class folders, ``root/<class_name>/*.avi|.mp4|.gif|.mov|.mkv|.webm``, one item per file.

    An item takes frames 0, stride, 2*stride, ... of its video, ``n_frames`` of them.
    Each file is opened once when the dataset is built (its first frame is decoded) to weed out
    unreadable ones.
    """

    def __init__(self, root: str | os.PathLike, *, size: int = 64, n_frames: int = 16, stride: int = 1):
        if n_frames < 1 or stride < 1 or size < 1:
            raise ValueError(f"need size, n_frames and stride >= 1, got {size}, {n_frames}, {stride}")
        self.root, self.size, self.n_frames, self.stride = Path(root), size, n_frames, stride
        self.items = []
        for folder in _subfolders(self.root, "VideoFolder"):
            caption = caption_from_name(folder.name)
            files = sorted((p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS),
                           key=lambda p: _natural_key(p.name))
            if files and not caption:
                warnings.warn(f"skipping {folder}: its name gives no caption words", stacklevel=2)
                continue
            for path in files:
                if self._usable(path):
                    self.items.append((caption, path))
        if not self.items:
            raise ValueError(f"no usable videos under {str(self.root)!r}: expected class folders of videos, "
                             f"root/<class_name>/<video>{'|'.join(VIDEO_EXTENSIONS)}")

    @staticmethod
    def _usable(path: Path) -> bool:
        def first_frame(path):
            frames = iio.imiter(path)
            try:
                next(frames)
            except StopIteration:
                raise ValueError("it has no frames") from None
            finally:
                frames.close()

        return _usable(path, "video", first_frame)

    def _load(self, path: Path) -> np.ndarray:
        last = (self.n_frames - 1) * self.stride
        frames = []
        reader = iio.imiter(path)
        try:
            for i, frame in enumerate(reader):
                if i % self.stride == 0:
                    frames.append(as_rgb_frame(frame, self.size))
                if i >= last:
                    break
        except Exception as error:  # a file damaged part-way: keep the frames decoded so far
            if not frames:
                raise OSError(f"cannot decode video {path}: {_first_line(error)}") from error
            warnings.warn(f"video {path} failed after {len(frames)} frames ({_first_line(error)}); padding",
                          stacklevel=3)
        finally:
            reader.close()
        if not frames:
            raise OSError(f"video {path} has no frames")
        return _pad(frames, self.n_frames)


class FrameFolder(_FolderDataset):
    """Videos stored as folders of frame images, ``root/<video_name>/*.png|.jpg|...``, in natural name order.

    An item takes the first ``n_frames`` readable frames of its folder. The caption is the text of
    ``caption.txt`` in the folder if present, else the folder name split into words when it contains
    a letter ("push_objects" -> "push objects"; BAIR's numbered folders have none), else
    ``caption``; a folder with no caption at all is skipped with a warning. Frame headers are
    checked when the dataset is built; empty or unreadable frames are skipped with a warning.
    """

    def __init__(self, root: str | os.PathLike, *, size: int = 64, n_frames: int = 16,
                 caption: str | None = None):
        if n_frames < 1 or size < 1:
            raise ValueError(f"need size and n_frames >= 1, got {size}, {n_frames}")
        self.root, self.size, self.n_frames = Path(root), size, n_frames
        self.items = []
        for folder in _subfolders(self.root, "FrameFolder"):
            images = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                            key=lambda p: _natural_key(p.name))
            if not images:
                continue
            text = self._caption(folder, caption)
            if not text:
                warnings.warn(f"skipping {folder}: no caption.txt, no words in its name and no caption "
                              f"argument", stacklevel=2)
                continue
            usable = []
            for path in images:
                if self._usable(path):
                    usable.append(path)
                if len(usable) == n_frames:
                    break
            if usable:
                self.items.append((text, usable))
            else:
                warnings.warn(f"skipping {folder}: none of its frames can be read", stacklevel=2)
        if not self.items:
            raise ValueError(f"no usable frame folders under {str(self.root)!r}: expected "
                             f"root/<video_name>/<frame>{'|'.join(IMAGE_EXTENSIONS)}")

    @staticmethod
    def _caption(folder: Path, default: str | None) -> str:
        caption_file = folder / "caption.txt"
        if caption_file.is_file():
            text = _normalise(caption_file.read_text(encoding="utf-8", errors="replace"))
            if text:
                return text
        if re.search(r"[A-Za-z]", folder.name):
            return caption_from_name(folder.name)
        return _normalise(default or "")

    @staticmethod
    def _usable(path: Path) -> bool:
        def header(path):
            with Image.open(path):  # parses the header only
                pass

        return _usable(path, "frame", header)

    def _load(self, paths: list[Path]) -> np.ndarray:
        frames = []
        for path in paths:
            try:
                with Image.open(path) as image:
                    frames.append(as_rgb_frame(image, self.size))
            except Exception as error:  # damaged past the header: drop this frame
                warnings.warn(f"skipping unreadable frame {path}: {_first_line(error)}", stacklevel=3)
        if not frames:
            raise OSError(f"no frame of {paths[0].parent} can be decoded")
        return _pad(frames, self.n_frames)
