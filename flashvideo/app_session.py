"""One browser session's video, as the app builds it: a first run, then any number of continuations
with new prompts, at a constant cost per frame and bounded memory and disk.

    session = Session(pipe, "checkpoints/shapes", out_root)
    for up in session.generate(settings): ...            # Update per frame, then a Finished
    for up in session.extend("a red circle moves down", key_frames=8): ...   # None: until stopped
    for up in session.extend(prompt, 8, clip=frames): ...  # continue an uploaded clip instead

* The first run is `FlashVideoPipeline.stream` (key frames first, then every pair's in-between frames
  in one batch), through the pipeline's `serving.Server`: the runs of concurrent sessions share its
  decoding batches. Continuing needs an `EndlessStream`: made once, on the first Continue, by feeding the
  video's key frames in one chunkwise pass; from then on its state (a few hundred KB) is all that is
  kept of the past, and every Continue carries on from it. Nothing is ever re-decoded.
* Per frame: two small PNGs and an HTML string (`app_view`), one thumbnail pasted into the filmstrip,
  one frame appended to the MP4 writer: constant work, whatever the video's length.
* Bounded: the newest KEEP_FRAMES frames are kept (for stepping through them), the filmstrip shows the
  newest STRIP_FRAMES, each run's MP4 is written while frames arrive and the shown MP4 joins the
  newest segments up to MP4_MAX_FRAMES; the GIF holds the newest GIF_MAX_FRAMES.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import app_view as view, serving
from .timeline import Timeline
from .video_writer import VideoWriter

FPS = 8
KEEP_FRAMES = 480            # frames kept in memory for the frame slider (the newest)
MP4_MAX_FRAMES = 2400        # the shown MP4 holds at most this many of the newest frames (5 min at 8 fps)
GIF_MAX_FRAMES = 160
SEGMENT_FRAMES = 600         # a run's MP4 is closed and a new one begun every this many frames
LIVE_EVERY_S = 1 / 10        # while frames stream, the page is updated at most this often (frames decoded
                             # sooner join the next update; every frame still goes to the strip, MP4 and slider).
                             # At 1/30 s a default video sent 11 updates and took Chromium 1.84x the pipeline's
                             # time, at 1/10 s 6 updates and 1.58x (tests/app_speed.py, one run of 5 reps each)
STRIP_EVERY_S = 0.2          # while frames stream, the filmstrip is redrawn at most this often
CONTINUE_BATCH_PAIRS = 2     # key-frame pairs interpolated together while continuing (latency vs batching)


@dataclass
class Update:
    """One new frame: what the app shows for it."""
    index: int
    kind: str
    done: int                 # frames made in this run
    total: int | None         # frames this run will make (None: until stopped)
    seconds: float
    view: str                 # HTML: frame, region view and caption together
    strip: str | None         # HTML: the filmstrip (None: unchanged, redrawn at most every STRIP_EVERY_S)

    @property
    def status(self) -> str:
        of = f"/{self.total}" if self.total else " (until stopped)"
        return f"{self.kind} frame {self.index} · {self.done}{of} · {self.seconds:.2f} s"


def _merged(updates: list) -> Update:
    """Frames decoded together as one page update: the newest frame's view, the newest filmstrip drawn among them.
    Every frame is still in the filmstrip, the MP4 and the frame slider; only views nobody could see are skipped
    (each page update costs a client tens of milliseconds, more than a frame takes to decode)."""
    strip = next((u.strip for u in reversed(updates) if u.strip is not None), None)
    return replace(updates[-1], strip=strip)


@dataclass
class Finished:
    mp4: Path | None
    gif: Path | None
    markdown: str
    first: int                 # the frame slider's range (the frames kept)
    last: int
    index: int                 # the frame to show
    view: str
    strip: str


class Session:
    """See the module docstring. Thread-safe between the run and a Stop (`finish`)."""

    def __init__(self, pipe, model: str, out_root):
        self.pipe, self.model, self.out_root = pipe, model, out_root
        self.grid, self.size = pipe.config.grid, pipe.config.image_size
        self.scale = max(1, round(view.VIEW_PX / self.size))
        self.n_segments = 0
        self.lock = threading.Lock()          # the session's frames and files
        self.busy = threading.Lock()          # the EndlessStream's state: one decoding step at a time
        self.settings = None
        self.stream = None            # EndlessStream, from the first Continue on
        self.offset = 0               # app index of the stream's frame 0
        self.kept: OrderedDict = OrderedDict()   # index -> (image, kind, regions, prompt, uri)
        self.changes: list = []       # [(first frame index, prompt)]
        self.last = -1                # highest frame index made
        self.strip = view.Strip(self.size)
        self.segments: list = []      # [(path, first index, frames)] closed MP4 segments of this video
        self.mp4 = None
        self.gif = None               # the GIF written while a run's frames arrive (see `_gif`)
        self.out = None
        self.run = None               # this run's counters
        self.finished: Finished | None = None
        self.last_total = None

    # ---- one frame ------------------------------------------------------------------------------
    def _add(self, index, kind, image, regions, prompt, stats) -> Update:
        r = self.run
        with self.lock:
            now = time.perf_counter() - r["t0"]
            r["first_s"] = now if r["first_s"] is None else r["first_s"]
            r["done"] += 1
            inherited = int(stats.get("tokens_inherited", 0))
            r["inherited"] += inherited
            r["sampled"] += 0 if kind in ("given", "first") else self.pipe.config.frame_tokens - inherited
            if "total_steps" in stats:  # sequential model calls: token steps and drafted passes
                r["steps"] = stats["total_steps"] + stats.get("total_passes", 0) - r["steps0"]
            if not self.changes or self.changes[-1][1] != prompt:
                self.changes.append((index, prompt))
            changed = index > 0 and self.changes[-1][0] == index
            uri = view.png_uri(image)
            regions_uri = view.png_uri(view.region_map(regions)) if regions is not None else None
            self.kept[index] = (image, kind, regions, prompt, uri)
            while len(self.kept) > KEEP_FRAMES:
                self.kept.popitem(last=False)
            self.last = max(self.last, index)
            self.strip.put(index, image, kind, changed)
            if self.gif is not None:
                self.gif.add(index, image)
            if self.mp4 is not None:
                self.mp4.add(index, image)
                if self.mp4.written >= SEGMENT_FRAMES:
                    self._close_segment()
                    self.mp4 = self._new_segment()
            html = self._frame_html(index, uri, regions_uri, live=True)
            strip = None
            if now - r["strip_s"] >= STRIP_EVERY_S or r["done"] == 1 or changed:
                r["strip_s"], strip = now, self.strip.html(index, self.changes, self.last)
            return Update(index, "key" if kind == "first" else kind, r["done"], r["total"], now, html, strip)

    def _frame_html(self, index, uri=None, regions_uri=None, live=False) -> str:
        image, kind, regions, prompt, uri = self.kept[index]
        if regions is not None and regions_uri is None:
            regions_uri = view.png_uri(view.region_map(regions))
        n = self.settings.interp_frames
        tl = Timeline(1, n)
        total = self.last_total if live and self.stream is None and self.last_total else self.last + 1
        text = view.caption(index, kind, tl.key_number(index), n, view.region_counts(regions), total,
                            prompt if len(self.changes) > 1 else None)
        heading = f"Live: frame {index} as it is decoded" if live else f"Frame {index} of the video (stepping through it)"
        return view.frame_html(uri, regions_uri, self.grid, heading, text)

    # ---- runs -----------------------------------------------------------------------------------
    def _start_run(self, total, new_video: bool):
        from .demo import output_dir

        with self.lock:
            if new_video:
                self.kept.clear()
                self.changes, self.last, self.segments, self.stream, self.offset = [], -1, [], None, 0
                self.strip = view.Strip(self.size)
                self.out = output_dir(self.out_root)
            start = self.last + 1
            self.mp4 = self._new_segment(start if new_video else None)
            if self.gif is not None:          # the GIF of a run that never finished
                self.gif.close()
                _unlink(self.gif.path)
            self.gif = VideoWriter(Path(self.out) / f"run-{start}.gif", fps=FPS, scale=self.scale, start=start,
                                   background=True) if new_video and total and total <= GIF_MAX_FRAMES else None
            self.finished = None
            self.run = {"t0": time.perf_counter(), "first_s": None, "done": 0, "total": total, "inherited": 0,
                        "sampled": 0, "steps": 0, "steps0": 0, "start": start, "strip_s": 0.0}
            if total and new_video:
                self.strip.reserve(total)

    def generate(self, s):
        """A new video from checked `demo.Settings`: Update per frame, then Finished (and, for length
        "until stopped", continue under the same prompt until the caller stops reading)."""
        self.settings = s
        T = s.n_frames
        self.last_total = T
        self._start_run(None if s.until_stopped else T, new_video=True)
        first_given = s.first_frame is not None
        for ready in serving.shared(self.pipe).stream_ready(
                s.prompt, key_frames=s.key_frames, interp_frames=s.interp_frames, inherit_ratio=s.inherit_ratio,
                seed=s.seed, first_frame=s.first_frame, sampling=s.sampling, negative_prompt=s.negative_prompt,
                pace=LIVE_EVERY_S):
            yield _merged([self._add(ev.index, "first" if ev.index == 0 and first_given else ev.kind, ev.image,
                                     ev.regions, s.prompt, ev.stats) for ev in ready])
        if s.until_stopped:
            yield from self._continue(s.prompt, None)
            return
        self.run["baseline"] = view.rho0_steps(self.pipe.config.frame_tokens, s.key_frames, s.interp_frames, first_given,
                                               lead_in=s.sampling.lead_in)
        yield self.finish()

    def extend(self, prompt: str, key_frames: int | None, clip=None, settings=None):
        """Continue the video under `prompt` for `key_frames` more key frames (None: until stopped), or
        start a new video from `clip` (a list of images: they become its first key frames; `settings`,
        checked `demo.Settings`, then give the interpolation and sampling settings)."""
        if clip is not None:
            self.settings = settings or self.settings
            from .endless import EndlessStream

            s = self.settings
            self._start_run(None, new_video=True)
            self.stream = EndlessStream(self.pipe, prompt, interp_frames=s.interp_frames, inherit_ratio=s.inherit_ratio,
                                        seed=s.seed, batch_pairs=CONTINUE_BATCH_PAIRS, sampling=s.sampling,
                                        negative_prompt=s.negative_prompt)
            with self.busy:
                given = self.stream.feed_frames(clip)
            for ev in given:
                yield self._add(ev.index, "given", ev.image, None, prompt, {})
        elif self.last < 0:
            raise ValueError("continue: generate a video first (or upload a clip to continue)")
        else:
            self._start_run(None if key_frames is None else key_frames * (self.settings.interp_frames + 1),
                            new_video=False)
        yield from self._continue(prompt, key_frames)

    def _continue(self, prompt, key_frames):
        if self.stream is None:
            self._make_stream()
        with self.busy:
            self.stream.prompt = prompt
            self.run["steps0"] = self.stream.counts["steps"] + self.stream.counts["passes"]
        for ev in self._locked(self.stream.frames(key_frames)):
            yield self._add(self.offset + ev.index, ev.kind, ev.image, ev.regions, ev.stats.get("prompt", prompt),
                            {**ev.stats, "total_steps": ev.stats.get("total_steps", 0)})
        yield self.finish()

    def _locked(self, events):
        """The stream's events, each drawn under `busy`: after a Stop, the run that was cancelled may still
        be inside a step in Gradio's worker thread; the next Continue waits for that step to end instead of
        decoding from the same stream state at the same time."""
        events = iter(events)
        while True:
            with self.busy:
                ev = next(events, None)
            if ev is None:
                return
            yield ev

    def _make_stream(self):
        """The EndlessStream of the video so far: its kept key frames fed in one chunkwise pass."""
        from .endless import MAX_GIVEN_FRAMES, EndlessStream

        s, stride = self.settings, self.settings.interp_frames + 1
        keys = [i for i in self.kept if i % stride == 0 and self.kept[i][1] != "interpolated"]
        keys = sorted(keys)[-MAX_GIVEN_FRAMES:]
        if not keys:
            raise ValueError("continue: the video has no key frame to continue from; generate it again")
        first_prompt = self.kept[keys[-1]][3]
        self.stream = EndlessStream(self.pipe, first_prompt, interp_frames=s.interp_frames,
                                    inherit_ratio=s.inherit_ratio, seed=s.seed, batch_pairs=CONTINUE_BATCH_PAIRS,
                                    sampling=s.sampling, negative_prompt=s.negative_prompt)
        self.offset = keys[0]
        with self.busy:
            self.stream.feed_frames([self.kept[i][0] for i in keys])
        if keys[-1] != self.last:      # a stopped run: frames past the last key frame are dropped
            for i in [i for i in self.kept if i > keys[-1]]:
                del self.kept[i]
            self.last = keys[-1]

    def _new_segment(self, start=None) -> VideoWriter:
        from .demo import slug

        self.n_segments = getattr(self, "n_segments", 0) + 1
        name = f"{slug(self.settings.prompt)}-seed{self.settings.seed}-{self.n_segments:03d}.mp4"
        return VideoWriter(Path(self.out) / name, fps=FPS, scale=self.scale, start=start, background=True)

    def _close_segment(self) -> None:
        """Close the MP4 being written; keep the newest segments up to MP4_MAX_FRAMES (older ones deleted)."""
        n = self.mp4.close()
        if n:
            self.segments.append((self.mp4.path, self.mp4.first, n))
        else:
            _unlink(self.mp4.path)
        self.mp4 = None
        total = 0
        for i in range(len(self.segments) - 1, -1, -1):
            total += self.segments[i][2]
            if total > MP4_MAX_FRAMES and i < len(self.segments) - 1:
                for old in self.segments[:i + 1]:
                    _unlink(old[0])
                self.segments = self.segments[i + 1:]
                break

    # ---- the end of a run -----------------------------------------------------------------------
    def finish(self) -> Finished:
        """Close this run's MP4 segment, write the GIF, and sum up (also called by Stop: idempotent)."""
        with self.lock:
            if self.finished is not None or self.run is None:
                return self.finished
            r = self.run
            total_s = time.perf_counter() - r["t0"]
            if self.mp4 is not None:
                self._close_segment()
            mp4 = self._joined_mp4()
            gif = self._gif()
            done = max(1, r["done"])
            summary = {"frames": r["done"], "time_to_first_frame_s": r["first_s"] or 0.0, "total_s": total_s,
                       "frames_per_s": done / total_s if total_s > 0 else float("inf"),
                       "tokens_sampled": r["sampled"], "tokens_inherited": r["inherited"],
                       "inherited_share": r["inherited"] / max(1, r["sampled"] + r["inherited"]),
                       "token_steps": r["steps"], "rho0_token_steps": r.get("baseline")}
            step = getattr(self.pipe.model, "step_backend", "eager")
            md = view.stats_markdown(summary, self.settings.seed, self.model, step)
            if len(self.changes) > 1 or self.stream is not None:
                md += f"\n- video so far: frames 0–{self.last}" + (
                    f" (prompt changed {len(self.changes) - 1}×)" if len(self.changes) > 1 else "")
            first = min(self.kept) if self.kept else 0
            index = min(r["start"] + 1, self.last) if self.settings.interp_frames and r["start"] + 1 in self.kept \
                else max(first, r["start"]) if r["start"] in self.kept else first
            self.summary = summary
            self.finished = Finished(mp4, gif, md, first, max(first, self.last), index,
                                     self._frame_html(index) if index in self.kept else "",
                                     self.strip.html(index, self.changes, self.last))
            self.run["total"] = None
            return self.finished

    def frame_view(self, index: int):
        """(view, strip) of a kept frame of the finished video."""
        with self.lock:
            if index not in self.kept:
                raise ValueError(f"frame {index} was not decoded (the run was stopped before it)")
            return self._frame_html(index), self.strip.html(index, self.changes, self.last)

    def _joined_mp4(self) -> Path | None:
        """The newest segments (at most MP4_MAX_FRAMES frames) as one MP4: copied, not re-encoded."""
        total, keep = 0, []
        for seg in reversed(self.segments):
            if keep and total + seg[2] > MP4_MAX_FRAMES:
                break
            keep.insert(0, seg)
            total += seg[2]
        for seg in self.segments[:len(self.segments) - len(keep)]:
            _unlink(seg[0])
        self.segments = keep
        if not keep:
            return None
        if len(keep) == 1:
            return keep[0][0]
        import imageio_ffmpeg

        out = Path(self.out) / f"video-{keep[0][1]}-{keep[-1][1] + keep[-1][2] - 1}.mp4"
        listing = Path(self.out) / "segments.txt"
        listing.write_text("".join(f"file '{p.name}'\n" for p, _, _ in keep))
        try:
            subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0",
                            "-i", str(listing), "-c", "copy", str(out)], check=True, timeout=60,
                           stdin=subprocess.DEVNULL, capture_output=True)
        except (subprocess.SubprocessError, OSError):
            return keep[-1][0]
        return out

    def _gif(self) -> Path | None:
        """The GIF of the newest GIF_MAX_FRAMES kept frames: the one written while this run's frames arrived when it
        holds exactly those (a new video of at most GIF_MAX_FRAMES frames), else written now from the kept frames."""
        from .demo import slug

        live, self.gif = self.gif, None
        written = live.close() if live is not None else 0
        indices = sorted(self.kept)[-GIF_MAX_FRAMES:]
        path = Path(self.out) / f"{slug(self.settings.prompt)}-seed{self.settings.seed}-{indices[0]}-{indices[-1]}.gif" \
            if indices else None
        if live is not None and indices and written == len(indices) and live.first == indices[0]:
            os.replace(live.path, path)
            return path
        if live is not None:
            _unlink(live.path)
        if path is not None:
            with VideoWriter(path, fps=FPS, scale=self.scale) as out:
                for k, i in enumerate(indices):
                    out.add(k, self.kept[i][0])
        return path


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# ---- a clip to continue ----------------------------------------------------------------------------

MAX_CLIP_FRAMES = 32
MAX_CLIP_SECONDS = 20.0
MAX_CLIP_SIDE = 1024
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi")


def read_clip(paths, max_frames: int = MAX_CLIP_FRAMES, max_seconds: float = MAX_CLIP_SECONDS) -> list:
    """Uploaded files (already screened by `demo.upload_path`) -> the clip's frames: one GIF/WebP/PNG
    animation or video, or several still images (one frame each). ValueError starting with "clip" when a
    bound (frames, side, duration) is exceeded or a file is not readable; never names a path."""
    from PIL import ImageSequence

    from .demo import load_first_frame

    paths = list(paths)
    if not paths:
        raise ValueError("clip: upload a GIF or MP4, or up to {max_frames} image files")
    frames = []
    for path in paths:
        if Path(path).suffix.lower() in VIDEO_SUFFIXES:
            frames += _read_video(path, max_frames - len(frames), max_seconds)
        else:
            try:
                image = load_first_frame(path)
            except ValueError as e:
                raise ValueError("clip" + str(e)[len("first frame"):]) from None
            for i, f in enumerate(ImageSequence.Iterator(image)):
                if len(frames) >= max_frames:
                    raise ValueError(f"clip: more than {max_frames} frames; at most {max_frames} are continued "
                                     "(trim it, or upload fewer images)")
                if i / 10.0 > max_seconds:  # GIF frames are usually >= 0.1 s
                    raise ValueError(f"clip: longer than {max_seconds:g} s")
                frames.append(np.asarray(f.convert("RGB")))
        if len(frames) > max_frames:
            raise ValueError(f"clip: more than {max_frames} frames; at most {max_frames} are continued")
    for f in frames:
        if max(f.shape[:2]) > MAX_CLIP_SIDE:
            raise ValueError(f"clip frames are {f.shape[1]}×{f.shape[0]} px; at most {MAX_CLIP_SIDE} px a side")
    return frames


def _read_video(path, max_frames: int, max_seconds: float) -> list:
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(path, format="FFMPEG")
    except Exception:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError("clip is not a readable video (MP4, WebM, MOV, MKV or AVI)") from None
    try:
        meta = reader.get_meta_data()
        w, h = meta.get("size", (0, 0))
        if max(w, h) > MAX_CLIP_SIDE:
            raise ValueError(f"clip is {w}×{h} px; at most {MAX_CLIP_SIDE} px a side")
        duration = float(meta.get("duration") or 0)
        if duration > max_seconds:
            raise ValueError(f"clip is {duration:.1f} s long; at most {max_seconds:g} s")
        frames = []
        for f in reader:
            if len(frames) >= max_frames:
                raise ValueError(f"clip: more than {max_frames + 0} frames; at most {MAX_CLIP_FRAMES} are continued")
            frames.append(np.asarray(f)[..., :3])
        return frames
    except ValueError:
        raise
    except Exception:  # noqa: BLE001
        raise ValueError("clip is a damaged video") from None
    finally:
        reader.close()


class SessionStore:
    """The videos of the browser sessions (keyed by Gradio's session hash), newest MAX_SESSIONS kept: a
    session's memory is bounded (KEEP_FRAMES frames), and so is their number. Held on the server, not in
    a gr.State, so that the /generate endpoint stays a plain MCP tool (Gradio's MCP server mishandles a
    State output)."""

    def __init__(self, max_sessions: int = 24):
        self.max_sessions, self.items, self.lock = max_sessions, OrderedDict(), threading.Lock()

    def put(self, key, session: Session) -> Session:
        with self.lock:
            self.items[key] = session
            self.items.move_to_end(key)
            while len(self.items) > self.max_sessions:
                self.items.popitem(last=False)
        return session

    def get(self, key) -> Session | None:
        with self.lock:
            session = self.items.get(key)
            if session is not None:
                self.items.move_to_end(key)
            return session

    def drop(self, key) -> None:
        with self.lock:
            self.items.pop(key, None)
