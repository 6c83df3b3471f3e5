"""What the app draws for a frame, at a constant cost per frame: small PNGs inlined as data: URLs in one
HTML block, so the frame, its token-region view and its caption arrive in the same update (a caption can
never run ahead of its image), and nothing is written to disk per frame.

* `frame_html`: the frame (sent at its own size, enlarged by the browser with crisp pixels), the region
  view (the same frame under one (grid, grid) RGBA map of the regions, plus a CSS token grid: one tiny
  PNG instead of a mask image per region) and the caption under them, with the legend below the images
  (no label covers a tile).
* `Strip`: the filmstrip of the newest STRIP_FRAMES frames in time order, kept as one canvas that a
  new frame pastes one thumbnail into; long videos scroll it by whole rows, so its cost is bounded.
* `caption`, `stats_markdown`: the text.

No gradio in here (the tests and the CLI can use it).
"""
from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
from PIL import Image

from .regions import REGIONS
from .timeline import Timeline

REGION_STYLE = {  # region name in the pipeline -> (label shown in the app, colour)
    "different": ("different", "#ef4444"),
    "unstable": ("unstable", "#f97316"),
    "inheritable": ("inheritable", "#22c55e"),
    "stable": ("stable (generated)", "#9ca3af"),
}
COLOR_MAP = {label: colour for label, colour in REGION_STYLE.values()}
KEY_BORDER, NEWEST_BORDER, FRAME_BORDER, CHANGE_MARK = (96, 165, 250), (250, 204, 21), (75, 85, 99), (236, 72, 153)
VIEW_PX = 256            # the frame and region view are shown this size (the browser enlarges them)
STRIP_FRAMES = 64        # the filmstrip holds the newest this many frames
STRIP_COLS = 16
THUMB_PX = 32
REGION_ALPHA = 110
CSS = """
.fv-view { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.fv-view figure { margin: 0; }
.fv-view figcaption { font-size: 0.85em; opacity: 0.8; margin-bottom: 4px; }
.fv-pic { position: relative; width: 256px; height: 256px; background: #111; }
.fv-pic img, .fv-strip img { image-rendering: pixelated; display: block; }
.fv-pic img { position: absolute; inset: 0; width: 100%; height: 100%; }
.fv-grid { position: absolute; inset: 0; pointer-events: none;
  background-image: linear-gradient(to right, rgba(128,128,128,.45) 1px, transparent 1px),
                    linear-gradient(to bottom, rgba(128,128,128,.45) 1px, transparent 1px); }
.fv-caption { flex-basis: 100%; min-height: 2.6em; }
.fv-legend span { display: inline-block; margin-right: 10px; font-size: 0.85em; }
.fv-legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
.fv-strip img { max-width: 100%; }
.fv-changes { font-size: 0.85em; opacity: 0.85; }
"""


def png_uri(image: np.ndarray) -> str:
    """(H, W, 3|4) uint8 -> a data: URL of a PNG (fast compression: these images are small)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def images_in(text: str) -> list[np.ndarray]:
    """The inline PNGs of an HTML block, in order (for tests and API clients)."""
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(m)))) for m in _URI.findall(text or "")]


def region_names(regions) -> np.ndarray:
    """(h, w) region names, or ids into REGIONS (numpy or torch) -> (h, w) names."""
    regions = np.asarray(regions.cpu() if hasattr(regions, "cpu") else regions)
    if regions.dtype.kind in "iu":
        return np.array(REGIONS, dtype=object)[regions]
    return regions


def region_map(regions) -> np.ndarray:
    """(h, w) regions -> (h, w, 4) RGBA: each token cell in its region's colour, half transparent."""
    names = region_names(regions)
    out = np.zeros((*names.shape, 4), np.uint8)
    for name, (_, colour) in REGION_STYLE.items():
        rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
        out[names == name] = (*rgb, REGION_ALPHA)
    return out


def region_counts(regions) -> dict | None:
    if regions is None:
        return None
    names = region_names(regions)
    return {k: int((names == k).sum()) for k in REGION_STYLE}


def legend_html() -> str:
    return "".join(f'<span><i style="background:{c}"></i>{html.escape(label)}</span>' for label, c in REGION_STYLE.values())


def frame_html(frame_uri: str, regions_uri: str | None, grid: int, heading: str, caption_md: str) -> str:
    """One block: the frame, its region view, and the caption (same update, so always in step)."""
    cell = f"background-size: calc(100% / {grid}) calc(100% / {grid});"
    overlay = f'<img alt="token regions" src="{regions_uri}" style="opacity:1">' if regions_uri else ""
    legend = (f'<div class="fv-legend">{legend_html()}</div>' if regions_uri
              else '<div class="fv-legend">key frame: every token sampled, no regions</div>')
    return (f'<div class="fv-view">'
            f'<figure class="fv-live"><figcaption>{html.escape(heading)}</figcaption>'
            f'<div class="fv-pic"><img alt="frame" src="{frame_uri}"></div></figure>'
            f'<figure class="fv-regions"><figcaption>Token regions ({grid}×{grid} tokens)</figcaption>'
            f'<div class="fv-pic"><img alt="frame" src="{frame_uri}">{overlay}<div class="fv-grid" style="{cell}">'
            f'</div></div>{legend}</figure>'
            f'<div class="fv-caption" id="fv-caption">{markdown_bold(caption_md)}</div></div>')


def markdown_bold(text: str) -> str:
    """Escape, then **bold** -> <b>bold</b> (the only markup captions use)."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def caption(index: int, kind: str, key_number: int, interp_frames: int, counts: dict | None = None,
            total: int | None = None, prompt: str | None = None) -> str:
    """One line about a frame: which key frame it is, or which pair it lies between and its regions."""
    of = f" of 0–{total - 1}" if total else ""
    head = f"**Frame {index}**{of}: "
    said = f" — prompt '{prompt}'" if prompt else ""
    if kind in ("key", "given", "first"):
        how = {"key": "decoded from the prompt", "given": "given (uploaded or kept), not sampled",
               "first": "the given first frame"}[kind]
        return head + f"**key frame** {key_number} ({how}; no token regions){said}"
    timeline = Timeline(key_number + 1, interp_frames)
    a, b = timeline.key_index(key_number - 1), timeline.key_index(key_number)
    text = head + f"interpolated between the key frames at {a} and {b}"
    if counts:
        text += " — " + " · ".join(f"{REGION_STYLE[k][0]} **{counts.get(k, 0)}**" for k in REGION_STYLE)
    return text + said


class Strip:
    """The newest STRIP_FRAMES frames in time order as one image; pasting a frame costs one thumbnail,
    and when the video outgrows the window the canvas scrolls by one row."""

    def __init__(self, frame_px: int, frames: int = STRIP_FRAMES, cols: int = STRIP_COLS, thumb: int = THUMB_PX,
                 border: int = 2, gap: int = 3):
        self.s = max(1, thumb // frame_px)                 # enlarge small frames by repetition ...
        self.step = max(1, frame_px // thumb)              # ... and shrink large ones by striding
        self.t, self.border, self.gap, self.cols, self.rows = -(-frame_px // self.step) * self.s, border, gap, cols, frames // cols
        self.cell = self.t + 2 * border + gap
        self.first = 0                                   # time index of the canvas's first cell
        self.highlight = None
        self.canvas = np.full((self.rows * self.cell + gap, cols * self.cell + gap, 3), 24, np.uint8)
        self.used_rows = 1

    def _origin(self, i: int):
        k = i - self.first
        return (k // self.cols) * self.cell + self.gap, (k % self.cols) * self.cell + self.gap

    def _scroll_to(self, index: int) -> None:
        while index - self.first >= self.rows * self.cols:         # drop the oldest row
            self.canvas[self.gap:-self.cell] = self.canvas[self.gap + self.cell:].copy()
            self.canvas[-self.cell:] = 24
            self.first += self.cols

    def put(self, index: int, frame: np.ndarray, kind: str, changed: bool = False) -> None:
        """Paste frame `index` (time order); `changed`: the prompt changed at this frame (pink bar)."""
        if index < self.first:
            return
        self._scroll_to(index)
        y, x = self._origin(index)
        b, t = self.border, self.t
        self.canvas[y:y + t + 2 * b, x:x + t + 2 * b] = (CHANGE_MARK if changed else KEY_BORDER if kind != "interpolated"
                                                         else FRAME_BORDER)
        thumb = frame[::self.step, ::self.step]
        thumb = thumb.repeat(self.s, 0).repeat(self.s, 1) if self.s > 1 else thumb
        self.canvas[y + b:y + b + t, x + b:x + b + t] = thumb
        self.used_rows = max(self.used_rows, (index - self.first) // self.cols + 1)

    def reserve(self, n_frames: int) -> None:
        """Show n_frames pending (dark) cells from the start: a fixed-length run's whole timeline."""
        self.used_rows = max(self.used_rows, min(self.rows, -(-n_frames // self.cols)))
        for i in range(self.first, self.first + min(n_frames, self.rows * self.cols)):
            y, x = self._origin(i)
            self.canvas[y + self.border:y + self.border + self.t, x + self.border:x + self.border + self.t] = 48

    def image(self, highlight: int | None = None) -> np.ndarray:
        out = self.canvas[:self.used_rows * self.cell + self.gap]
        if highlight is not None and self.first <= highlight < self.first + self.rows * self.cols:
            out = out.copy()
            y, x = self._origin(highlight)
            b, t = self.border, self.t
            for sl in ((slice(y, y + b), slice(x, x + t + 2 * b)), (slice(y + t + b, y + t + 2 * b), slice(x, x + t + 2 * b)),
                       (slice(y, y + t + 2 * b), slice(x, x + b)), (slice(y, y + t + 2 * b), slice(x + t + b, x + t + 2 * b))):
                out[sl] = NEWEST_BORDER
        return out

    def html(self, highlight: int | None, changes: list, last: int) -> str:
        span = f"frames {self.first}–{last}" if self.first else f"frames 0–{last}"
        marks = " · ".join(f"from frame {i}: '{html.escape(p)}'" for i, p in changes[-4:])
        more = f" (+{len(changes) - 4} earlier)" if len(changes) > 4 else ""
        return (f'<div class="fv-strip"><div class="fv-changes">Filmstrip, {span} (blue: key frames, yellow: '
                f'newest or selected, pink: the prompt changed here). Prompts {marks}{more}</div>'
                f'<img alt="filmstrip" src="{png_uri(self.image(highlight))}"></div>')


def rho0_steps(frame_tokens: int, key_frames: int, interp_frames: int, first_frame: bool = False,
               batch_pairs: bool = True, lead_in: int = 0) -> int:
    """Sequential token steps of the same fixed-length video at inherit_ratio 0 (every code sampled):
    G*G per generated key frame (lead-in key frames included; none when the first frame is given), plus n*G*G for
    the in-between frames (all pairs decode as one batch)."""
    keys = (key_frames - 1 if first_frame else lead_in + key_frames) * frame_tokens
    return keys + (1 if batch_pairs else key_frames - 1) * interp_frames * frame_tokens


def steps_line(steps: int, baseline: int | None) -> str:
    """`steps`: the run's sequential model calls (recurrent steps and drafted passes); `baseline`: `rho0_steps`."""
    if not baseline:
        return f"- sequential model calls **{steps}**"
    if baseline > steps:
        return (f"- sequential model calls **{steps}**; token by token with every code sampled (ρ = 0, no drafts) it "
                f"would take {baseline}: **{baseline / max(1, steps):.2f}× as many**")
    return f"- sequential model calls **{steps}**, as many as token by token with every code sampled (ρ = 0, no drafts)"


def stats_markdown(s: dict, seed: int, model: str, step: str) -> str:
    lines = [f"- time to first frame **{s['time_to_first_frame_s']:.2f} s**",
             f"- {s['frames']} frames in **{s['total_s']:.2f} s** ({s['frames_per_s']:.1f} frames/s)",
             f"- tokens sampled {s['tokens_sampled']}, inherited {s['tokens_inherited']} "
             f"({100 * s['inherited_share']:.0f} %)",
             steps_line(s["token_steps"], s.get("rho0_token_steps")),
             f"- seed {seed}, model `{model}`, step `{step}`"]
    return "\n".join(lines)
