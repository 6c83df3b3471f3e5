"""Video files written frame by frame as the frames arrive, so memory stays flat however long the video.

    with VideoWriter("long.gif", fps=8, scale=4) as out:
        for ev in events:
            out.add(ev.index, ev.image)      # frames may come out of time order: a frame waits for those before it

* GIF: every frame is quantised to its own adaptive palette (as a whole-file Pillow save does) and
  appended with Pillow's GIF frame encoder; the file loops. Nothing but the file's header is kept.
* MP4: imageio-ffmpeg pipes the frames to ffmpeg (libx264, yuv420p), as `Video.save` does.

The file is created with its first frame: a writer that never gets a frame leaves no file. `close`
(or leaving the `with` block, also on an error or Ctrl-C) finishes the file with the frames written
so far; frames still waiting for an earlier one are dropped.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# imageio-ffmpeg starts ffmpeg with preexec_fn=os.setpgrp (keeping Ctrl-C from it), which runs Python in the forked
# child: in a threaded server that child can hang before exec (imageio-ffmpeg's issue 58; seen here as a child
# spinning for minutes under the app's concurrent requests). Its documented switch turns that off, once, here.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")

SUFFIXES = (".gif", ".mp4")


class _Gif:
    def __init__(self, path: Path, fps: int):
        self.file, self.duration = open(path, "wb"), 1000 / fps      # ms per frame (GIF keeps 1/100 s)

    def append(self, frame: np.ndarray) -> None:
        from PIL import GifImagePlugin, Image

        im = Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE)
        if self.file.tell() == 0:                                    # signature, screen, loop forever
            header, _ = GifImagePlugin.getheader(im, info={"loop": 0, "duration": self.duration})
            self.file.write(b"".join(header))
        self.file.write(b"".join(GifImagePlugin.getdata(im, duration=self.duration, include_color_table=True)))
        self.file.flush()                                            # on disk now: a killed run keeps its frames

    def close(self) -> None:
        self.file.write(b";")                                        # the GIF trailer
        self.file.close()


class _Mp4:
    def __init__(self, path: Path, fps: int):
        import imageio.v2 as imageio

        self.writer = imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                                         macro_block_size=1, ffmpeg_log_level="error")

    def append(self, frame: np.ndarray) -> None:
        self.writer.append_data(frame)

    def close(self) -> None:
        self.writer.close()


class VideoWriter:
    """A .gif or .mp4 written in time order from frame `start` on (None: from the first frame added, e.g. when a
    stopped run may leave a gap that is never filled); scale > 1 enlarges by pixel repetition."""

    def __init__(self, path, fps: int = 8, scale: int = 1, start: int | None = 0):
        self.path, self.fps, self.scale = Path(path), fps, scale
        if self.path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{self.path.name}: a video file must end in {' or '.join(SUFFIXES)}")
        self.first = self.next = start  # the time index of the file's first frame, and of the next frame to write
        self.written = 0
        self.pending: dict[int, np.ndarray] = {}
        self._sink = None

    def add(self, index: int, image: np.ndarray) -> None:
        if self.next is None:
            self.first = self.next = index
        self.pending[index] = image
        while self.next in self.pending:
            frame = self.pending.pop(self.next)
            if self._sink is None:
                self._sink = (_Gif if self.path.suffix.lower() == ".gif" else _Mp4)(self.path, self.fps)
            self._sink.append(frame.repeat(self.scale, 0).repeat(self.scale, 1) if self.scale > 1 else frame)
            self.next += 1
            self.written += 1

    def close(self) -> int:
        """Finish the file; returns the number of frames in it."""
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        self.pending.clear()
        return self.written

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
