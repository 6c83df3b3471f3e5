"""Video files written frame by frame as the frames arrive, so memory stays flat however long the video.

    with VideoWriter("long.gif", fps=8, scale=4) as out:
        for ev in events:
            out.add(ev.index, ev.image)      # frames may come out of time order: a frame waits for those before it

* GIF: every frame gets a palette of its own and is appended with Pillow's GIF frame encoder; the file
  loops. Nothing but the file's header is kept. A frame of at most 256 colours keeps them exactly; a
  frame of more is quantised with Pillow's fast octree (0.17 ms for a 64 px frame of the shipped model,
  49 dB against it) instead of its adaptive median cut (3.7 ms, 58 dB), which had made the GIF the
  last thing the app waited for. A frame is quantised before it is enlarged (pixel repetition keeps its
  colours and their shares, so the palette and the pixels are the same).
* MP4: imageio-ffmpeg pipes the frames to ffmpeg (libx264, yuv420p), as `Video.save` does, with x264's
  ultrafast preset and no lookahead (zerolatency): each frame is encoded when it arrives, so closing
  the file takes 10 ms instead of 125-132 ms for 61 frames at 256 px (the file is 75 KB instead of 42,
  48.3 dB against the frames instead of 45.2).
* With ``background=True`` the frames are converted and written by a thread of the writer's own, so the
  caller (the app's request thread) only hands them over; `close` waits for them, and an error in the
  thread is raised by the next `add` or by `close`.

The file is created with its first frame: a writer that never gets a frame leaves no file. `close`
(or leaving the `with` block, also on an error or Ctrl-C) finishes the file with the frames written
so far; frames still waiting for an earlier one are dropped.
"""
from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import numpy as np

# imageio-ffmpeg starts ffmpeg with preexec_fn=os.setpgrp (keeping Ctrl-C from it), which runs Python in the forked
# child: in a threaded server that child can hang before exec (imageio-ffmpeg's issue 58; seen here as a child
# spinning for minutes under the app's concurrent requests). Its documented switch turns that off, once, here.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")

SUFFIXES = (".gif", ".mp4")


def _paletted(frame: np.ndarray):
    """An RGB frame as a paletted Pillow image: its own colours if it has at most 256, else a fast octree's."""
    from PIL import Image

    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"a video frame is (height, width, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
    rgb = frame.astype(np.uint32)
    colours, index = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2], return_inverse=True)
    if len(colours) > 256:
        return Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE)
    im = Image.fromarray(index.reshape(frame.shape[:2]).astype(np.uint8), "P")
    im.putpalette(np.stack([colours >> 16, colours >> 8 & 255, colours & 255], 1).astype(np.uint8).tobytes())
    return im


class _Gif:
    def __init__(self, path: Path, fps: int, scale: int):
        self.file, self.duration, self.scale = open(path, "wb"), 1000 / fps, scale   # ms per frame (GIF keeps 1/100 s)

    def append(self, frame: np.ndarray) -> None:
        from PIL import GifImagePlugin, Image

        im = _paletted(frame)
        if self.scale > 1:
            im = im.resize((im.width * self.scale, im.height * self.scale), Image.Resampling.NEAREST)
        if self.file.tell() == 0:                                    # signature, screen, loop forever
            header, _ = GifImagePlugin.getheader(im, info={"loop": 0, "duration": self.duration})
            self.file.write(b"".join(header))
        self.file.write(b"".join(GifImagePlugin.getdata(im, duration=self.duration, include_color_table=True)))
        self.file.flush()                                            # on disk now: a killed run keeps its frames

    def close(self) -> None:
        self.file.write(b";")                                        # the GIF trailer
        self.file.close()


class _Mp4:
    def __init__(self, path: Path, fps: int, scale: int):
        import imageio.v2 as imageio

        self.scale = scale
        self.writer = imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                                         macro_block_size=1, ffmpeg_log_level="error",
                                         output_params=["-preset", "ultrafast", "-tune", "zerolatency"])

    def append(self, frame: np.ndarray) -> None:
        self.writer.append_data(frame.repeat(self.scale, 0).repeat(self.scale, 1) if self.scale > 1 else frame)

    def close(self) -> None:
        self.writer.close()


class _File:
    """The GIF or MP4, opened with its first frame (a writer that never gets a frame leaves no file)."""

    def __init__(self, path: Path, fps: int, scale: int):
        self.path, self.fps, self.scale, self.sink = path, fps, scale, None

    def append(self, frame: np.ndarray) -> None:
        if self.sink is None:
            self.sink = (_Gif if self.path.suffix.lower() == ".gif" else _Mp4)(self.path, self.fps, self.scale)
        self.sink.append(frame)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None


def _drain(frames: queue.SimpleQueue, file: _File, errors: list) -> None:
    """A background writer's thread: write the frames until None, then finish the file. It holds the queue and
    the file, not the writer, so a writer dropped unclosed is collected, and its __del__ ends the thread."""
    while (frame := frames.get()) is not None:
        if not errors:
            try:
                file.append(frame)
            except Exception as e:   # raised in the caller's thread by the next add or by close
                errors.append(e)
    try:
        file.close()
    except Exception as e:
        errors.append(e)


class VideoWriter:
    """A .gif or .mp4 written in time order from frame `start` on (None: from the first frame added, e.g. when a
    stopped run may leave a gap that is never filled); scale > 1 enlarges by pixel repetition; ``background``: see
    the module docstring."""

    def __init__(self, path, fps: int = 8, scale: int = 1, start: int | None = 0, background: bool = False):
        self.path = Path(path)
        if self.path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{self.path.name}: a video file must end in {' or '.join(SUFFIXES)}")
        self.first = self.next = start  # the time index of the file's first frame, and of the next frame to write
        self.written = 0
        self.pending: dict[int, np.ndarray] = {}
        self._file, self._errors = _File(self.path, fps, scale), []
        self._frames = self._thread = None
        if background:
            self._frames = queue.SimpleQueue()
            self._thread = threading.Thread(target=_drain, args=(self._frames, self._file, self._errors),
                                            name=f"write {self.path.name}", daemon=True)
            self._thread.start()

    def add(self, index: int, image: np.ndarray) -> None:
        self._raise()
        if self.next is None:
            self.first = self.next = index
        self.pending[index] = image
        while self.next in self.pending:
            frame = self.pending.pop(self.next)
            if self._thread is None:
                self._file.append(frame)
            else:
                self._frames.put(frame)
            self.next += 1
            self.written += 1

    def _raise(self) -> None:
        if self._errors:
            raise self._errors.pop()

    def close(self) -> int:
        """Finish the file (after the frames handed to the thread, if any); returns the number of frames in it."""
        if self._thread is not None:
            self._frames.put(None)
            self._thread.join()
            self._thread = None
        self._file.close()
        self.pending.clear()
        self._raise()
        return self.written

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_thread", None) is not None:
            self._frames.put(None)           # the thread finishes the file with the frames it has, and ends
