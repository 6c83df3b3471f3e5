"""Everything the Gradio app (app.py) does besides layout: loading the model once, checking the
inputs, streaming frames with their token-region overlays, the filmstrip, the stats and the files.

No gradio in here, so the CLI and the tests reach the same code as the UI:

    pipe = load_pipeline()                                   # cached per model id
    settings = Settings.check(pipe, "a red circle moves right", key_frames=4, interp_frames=3)
    for update in run(pipe, settings):
        if isinstance(update, FrameUpdate): ...              # update.live, .annotated, .strip, .status
        else: ...                                            # Result: update.mp4, .gif, .markdown

Errors a user can cause raise ValueError (or FileNotFoundError for a missing model) with a message
meant to be shown as is.
"""
from __future__ import annotations

import functools
import os
import random
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import FlashVideoConfig
from .pipeline import DEFAULT_CHECKPOINT, FlashVideoPipeline, FrameEvent, Video
from .regions import REGIONS

MODEL_ENV = "FLASHVIDEO_MODEL"     # checkpoint folder or Hub repo id; unset: checkpoints/shapes
DISPLAY_PX = 256                   # frames are enlarged (pixel repetition) to about this size
THUMB_PX = 64                      # filmstrip thumbnails
FPS = 8
MAX_PROMPT_CHARS = 300
MAX_UPLOAD_SIDE = 4096             # px; larger first frames are refused before they are decoded
MAX_SEED = 2**31 - 1
OUTPUT_MAX_AGE_S = 3600            # our MP4/GIF files older than this are deleted on the next run

# region name in the pipeline -> (label shown in the app, colour)
REGION_STYLE = {
    "different": ("different", "#ef4444"),
    "unstable": ("unstable", "#f97316"),
    "inheritable": ("inheritable", "#22c55e"),
    "stable": ("stable (generated)", "#9ca3af"),
}
COLOR_MAP = {label: colour for label, colour in REGION_STYLE.values()}
KEY_BORDER, NEWEST_BORDER, FRAME_BORDER = (96, 165, 250), (250, 204, 21), (75, 85, 99)


# ------------------------------------------------------------------------------------ model

_load_lock = threading.Lock()
COMPILE_ENV = "FLASHVIDEO_COMPILE"  # "1": torch.compile the recurrent step at load, before serving (default: eager)


def model_id(model: str | os.PathLike | None = None) -> str | None:
    """The model to serve: the argument, else $FLASHVIDEO_MODEL, else None (checkpoints/shapes)."""
    model = model if model not in (None, "") else os.environ.get(MODEL_ENV) or None
    if model is None:
        return None
    return str(Path(model).resolve()) if Path(model).is_dir() else str(model)


@functools.lru_cache(maxsize=4)
def _load(key: str | None) -> FlashVideoPipeline:
    pipe = FlashVideoPipeline.from_pretrained(key)
    if os.environ.get(COMPILE_ENV) == "1":  # opt-in, synchronous: never shares the cores with a request
        pipe.compile()
    return pipe


def load_pipeline(model: str | os.PathLike | None = None) -> FlashVideoPipeline:
    """Load once per model id and keep it (failures are not cached: a checkpoint that appears later
    is picked up by the next call)."""
    with _load_lock:
        return _load(model_id(model))


def model_name(model: str | os.PathLike | None = None) -> str:
    key = model_id(model)
    if key is None:
        return "checkpoints/shapes"
    return Path(key).name if Path(key).is_dir() else key


def missing_model_message(model: str | os.PathLike | None, error: Exception) -> str:
    """What to tell the user when the model cannot be loaded."""
    if model_id(model) is None and not DEFAULT_CHECKPOINT.is_dir():
        return (f"The default model is not at `{DEFAULT_CHECKPOINT.parent.name}/{DEFAULT_CHECKPOINT.name}` yet: "
                "it is being trained and appears there when done (Generate picks it up without a restart). "
                f"Meanwhile set `{MODEL_ENV}` to a checkpoint folder or a Hugging Face repo id.")
    return f"Could not load the model `{model_name(model)}`: {error}"


# ------------------------------------------------------------------------------------ prompts

PREFERRED_EXAMPLES = ("a red circle moves right", "a blue square grows", "a yellow triangle moves down",
                      "a green circle shrinks", "a purple square moves left", "a white triangle moves up",
                      "an orange circle grows", "a cyan square moves right")


def is_shapes_world(vocabulary) -> bool:
    """True when every word is a shapes-world word and there is a colour, a shape and a motion."""
    from .data import shapes

    words = set(vocabulary)
    return (words <= set(shapes.vocabulary()) and bool(words & set(shapes.COLOURS))
            and bool(words & set(shapes.SHAPES)) and bool(words & {"moves", "grows", "shrinks"}))


def example_prompts(vocabulary, limit: int = 6) -> list[str]:
    """Prompts this vocabulary can say: for the shapes world, 'a {colour} {shape} {motion}' with the
    known words (trained combinations first); otherwise none (the app lists the known words instead)."""
    from .data import shapes

    if not is_shapes_world(vocabulary):
        return []
    words = set(vocabulary)
    combos = sorted(shapes.ALL_COMBOS, key=lambda c: c in shapes.HELD_OUT)
    prompts = list(PREFERRED_EXAMPLES) + [shapes.make_prompt(*c) for c in combos]
    ok = [p for p in dict.fromkeys(prompts) if set(p.split()) - {"a", "an"} <= words]
    return ok[:limit]


def vocabulary_hint(vocabulary, limit: int = 60) -> str:
    words = list(vocabulary)
    more = f" … ({len(words) - limit} more)" if len(words) > limit else ""
    return "Known words: " + ", ".join(words[:limit]) + more


# ------------------------------------------------------------------------------------ inputs

def as_int(name: str, value, lo: int, hi: int) -> int:
    """A whole number in lo..hi from an int or an integral float (what a slider sends)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number in {lo}..{hi}, got {value!r}")
    return int(value)


def as_float(name: str, value, lo: float, hi: float) -> float:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) \
            or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def load_first_frame(path):
    """An uploaded file -> RGB PIL image, refusing non-images and huge images before decoding them."""
    from PIL import Image, UnidentifiedImageError

    if path is None or path == "":
        return None
    try:
        image = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ValueError(f"the first frame must be an image (PNG, JPEG, WebP, ...): {e}") from None
    except OSError as e:
        raise ValueError(f"could not read the first frame: {e}") from None
    w, h = image.size
    if max(w, h) > MAX_UPLOAD_SIDE:
        raise ValueError(f"the first frame is {w}x{h} px; the largest side allowed is {MAX_UPLOAD_SIDE} px")
    try:
        image.load()
    except (OSError, ValueError) as e:
        raise ValueError(f"the first frame is a damaged image: {e}") from None
    return image


@dataclass
class Settings:
    """Checked generation settings, in the pipeline's terms."""
    prompt: str
    key_frames: int = 4
    interp_frames: int = 3
    inherit_ratio: float = 0.2
    seed: int = 0
    first_frame: object = None          # PIL image or None
    temperature: float = 1.0
    top_k: int | None = None

    @property
    def n_frames(self) -> int:
        return self.key_frames + (self.key_frames - 1) * self.interp_frames

    @classmethod
    def check(cls, pipe: FlashVideoPipeline, prompt, key_frames=4, interp_frames=3, inherit_ratio=0.2,
              seed=0, randomize_seed=False, first_frame=None, temperature=1.0, top_k=0) -> "Settings":
        """Raw UI/API values -> Settings, or ValueError naming the bad value. top_k 0 means off; a
        first_frame is a file path (or already an image)."""
        c = pipe.config
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("empty prompt: describe the video, e.g. 'a red circle moves right'")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS}")
        pipe.tokenizer.encode_text(prompt)            # unknown words: says which, and lists the known ones
        s = cls(prompt=prompt.strip(),
                key_frames=as_int("key frames", key_frames, 2, c.max_key_frames),
                interp_frames=as_int("interpolated frames", interp_frames, 0, c.max_interp_frames),
                inherit_ratio=as_float("inheritable-token ratio", inherit_ratio, 0.0, 1.0),
                seed=random.randint(0, MAX_SEED) if randomize_seed else as_int("seed", seed, 0, MAX_SEED),
                first_frame=first_frame if hasattr(first_frame, "size") else load_first_frame(first_frame),
                temperature=as_float("temperature", temperature, 0.0, 10.0),
                top_k=as_int("top-k", top_k, 0, c.n_codes) or None)
        pipe.check_settings(s.key_frames, s.interp_frames, s.inherit_ratio, s.temperature, s.top_k, s.seed)
        return s


# ------------------------------------------------------------------------------------ pictures

def display_scale(image_size: int, target: int = DISPLAY_PX) -> int:
    """Integer enlargement that brings a frame to about `target` px."""
    return max(1, round(target / image_size))


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) -> (H*scale, W*scale, 3) by pixel repetition (crisp, no blur)."""
    return image.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else image


def draw_grid(image: np.ndarray, grid: int) -> np.ndarray:
    """Faint lines on the token-cell boundaries of a (H, W, 3) image."""
    out = image.copy()
    h, w = out.shape[:2]
    for i in range(1, grid):
        for line in (out[i * h // grid, :], out[:, i * w // grid]):
            line[:] = (0.55 * line + 0.45 * 128).astype(np.uint8)
    return out


def region_names(regions) -> np.ndarray:
    """(h, w) region names, or ids into REGIONS (numpy or torch) -> (h, w) names."""
    regions = np.asarray(regions.cpu() if hasattr(regions, "cpu") else regions)
    if regions.dtype.kind in "iu":
        return np.array(REGIONS, dtype=object)[regions]
    return regions


def region_annotations(image: np.ndarray, regions, scale: int = 1):
    """A frame and its (h, w) token regions -> (enlarged image with the token grid, [(mask, label)])
    for gr.AnnotatedImage: one float mask per region (every region listed, so the legend is fixed),
    each token cell filled lightly with a stronger outline."""
    names = region_names(regions)
    base = draw_grid(upscale(image, scale), names.shape[0])
    H, W = base.shape[:2]
    ch, cw = H // names.shape[0], W // names.shape[1]
    if ch * names.shape[0] != H or cw * names.shape[1] != W:
        raise ValueError(f"a {H}x{W} image does not split into a {names.shape} token grid")
    cell = np.full((ch, cw), 0.5)
    if min(ch, cw) >= 6:
        cell[[0, -1], :] = cell[:, [0, -1]] = 0.95
    annotations = [(np.kron(names == name, cell), label) for name, (label, _) in REGION_STYLE.items()]
    return base, annotations


def key_frame_view(image: np.ndarray, grid: int, scale: int = 1):
    """A key frame for the region view: every token sampled, so no regions, just the grid."""
    return draw_grid(upscale(image, scale), grid), []


def filmstrip(frames: list, kinds: list, newest: int | None = None, thumb: int = THUMB_PX,
              cols: int = 16, border: int = 2, gap: int = 3) -> np.ndarray:
    """The video so far in time order, `cols` thumbnails a row: pending frames (None) dark, and a
    border that is blue for key frames, yellow for the newest (or selected) frame, grey otherwise."""
    size = next(f.shape[0] for f in frames if f is not None)
    s = max(1, round(thumb / size))
    t = size * s                                        # thumbnail side
    cols = min(cols, len(frames))
    rows = -(-len(frames) // cols)
    cell = t + 2 * border + gap
    strip = np.full((rows * cell + gap, cols * cell + gap, 3), 24, np.uint8)
    for i, (frame, kind) in enumerate(zip(frames, kinds)):
        y, x = (i // cols) * cell + gap, (i % cols) * cell + gap
        inner = (slice(y + border, y + border + t), slice(x + border, x + border + t))
        if frame is None:
            strip[inner] = 48
            continue
        strip[y:y + t + 2 * border, x:x + t + 2 * border] = (
            NEWEST_BORDER if i == newest else KEY_BORDER if kind == "key" else FRAME_BORDER)
        strip[inner] = upscale(frame, s)
    return strip


# ------------------------------------------------------------------------------------ text

def frame_info(index: int, kind: str, key_frames: int, interp_frames: int, counts: dict | None = None,
               first_frame_given: bool = False) -> str:
    """One line about a frame: which key frame it is, or which pair it lies between and its regions."""
    n_frames = key_frames + (key_frames - 1) * interp_frames
    stride = interp_frames + 1
    head = f"**Frame {index}** of 0–{n_frames - 1}: "
    if kind == "key":
        k = index // stride + 1
        how = "the given first frame" if (k == 1 and first_frame_given) else "decoded from the prompt"
        return head + f"**key frame** {k} of {key_frames} (serial number {k}, {how}; no token regions)"
    a = index // stride * stride
    text = head + f"interpolated between the key frames at {a} and {a + stride}"
    if counts:
        text += " — " + " · ".join(f"{REGION_STYLE[k][0]} **{counts.get(k, 0)}**" for k in REGION_STYLE)
    return text


def rho0_steps(config: FlashVideoConfig, key_frames: int, interp_frames: int, first_frame: bool = False,
               batch_pairs: bool = True) -> int:
    """Sequential token steps the same video takes at inherit_ratio 0, when every code is sampled:
    G*G per generated key frame, plus n*G*G for the in-between frames (all pairs decode as one batch,
    so a position is one step for every pair; one pair at a time: (K-1)*n*G*G)."""
    per_frame = config.frame_tokens
    keys = (key_frames - int(first_frame)) * per_frame
    pairs = 1 if batch_pairs else key_frames - 1
    return keys + pairs * interp_frames * per_frame


def stats_summary(stats: dict, n_frames: int, first_s: float, total_s: float, baseline_steps: int) -> dict:
    """The numbers the app reports after a run. stats: the last FrameEvent's stats; first_s, total_s:
    seconds from the start of the run to the first and to the last frame."""
    sampled, inherited, steps = stats["total_sampled"], stats["total_inherited"], stats["total_steps"]
    return {"frames": n_frames, "time_to_first_frame_s": first_s, "total_s": total_s,
            "frames_per_s": n_frames / total_s if total_s > 0 else float("inf"),
            "tokens_sampled": sampled, "tokens_inherited": inherited,
            "inherited_share": inherited / max(1, sampled + inherited),
            "token_steps": steps, "rho0_token_steps": baseline_steps,
            "step_speedup": baseline_steps / max(1, steps)}


def stats_markdown(s: dict, seed: int, model: str) -> str:
    return "\n".join([
        f"- time to first frame **{s['time_to_first_frame_s']:.2f} s**",
        f"- all {s['frames']} frames in **{s['total_s']:.2f} s** ({s['frames_per_s']:.1f} frames/s)",
        f"- tokens sampled {s['tokens_sampled']}, inherited {s['tokens_inherited']} "
        f"({100 * s['inherited_share']:.0f} %)",
        f"- token steps {s['token_steps']} vs {s['rho0_token_steps']} at ρ = 0: "
        f"**{s['step_speedup']:.2f}× fewer**",
        f"- seed {seed}, model `{model}`"])


# ------------------------------------------------------------------------------------ files

def output_dir(root: str | os.PathLike | None = None, max_age_s: float = OUTPUT_MAX_AGE_S) -> Path:
    """A fresh folder for one run's files, under a root whose old runs are deleted."""
    root = Path(root) if root is not None else Path(tempfile.gettempdir()) / "flashvideo-app"
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        try:
            if now - old.stat().st_mtime > max_age_s:
                for f in old.iterdir():
                    f.unlink()
                old.rmdir()
        except OSError:
            pass  # another run is cleaning it, or it is not ours
    out = root / uuid.uuid4().hex[:12]
    out.mkdir()
    return out


def slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "video"


# ------------------------------------------------------------------------------------ the run

@dataclass
class FrameUpdate:
    """One decoded frame, with everything the app shows for it."""
    event: FrameEvent
    done: int                   # frames decoded so far
    total: int
    seconds: float              # since the run started
    live: np.ndarray            # the frame, enlarged
    annotated: tuple            # (image, [(mask, label)]) for gr.AnnotatedImage
    info: str                   # markdown line about this frame
    strip: np.ndarray           # filmstrip of the video so far

    @property
    def status(self) -> str:
        return f"{self.event.kind} frame {self.event.index} · {self.done}/{self.total} · {self.seconds:.2f} s"


@dataclass
class Result:
    video: Video
    settings: Settings
    mp4: Path
    gif: Path
    summary: dict
    markdown: str
    scale: int = 1                # display enlargement
    grid: int = 1                 # token grid side

    def frame_view(self, index):
        """Frame `index` of the finished video as (enlarged frame, region view, info, filmstrip with
        that frame highlighted); a key frame's region view is its plain token grid."""
        v, s = self.video, self.settings
        index = as_int("frame", index, 0, len(v.frames) - 1)
        image, regions = v.frames[index], v.regions[index]
        counts = None if regions is None else {k: int((regions == k).sum()) for k in REGION_STYLE}
        view = (key_frame_view(image, self.grid, self.scale) if regions is None
                else region_annotations(image, regions, self.scale))
        return (upscale(image, self.scale), view,
                frame_info(index, v.kinds[index], s.key_frames, s.interp_frames, counts, s.first_frame is not None),
                filmstrip(list(v.frames), v.kinds, newest=index))


def run(pipe: FlashVideoPipeline, settings: Settings, out_root=None, model: str = ""):
    """Generate: yield a FrameUpdate per frame as the pipeline decodes it (key frames first), then a
    Result with the MP4, the GIF and the stats. The filmstrip marks the newest frame."""
    t0 = time.perf_counter()
    s, grid = settings, pipe.config.grid
    scale = display_scale(pipe.config.image_size)
    T = s.n_frames
    frames, kinds, regions = [None] * T, ["key" if i % (s.interp_frames + 1) == 0 else "interpolated"
                                         for i in range(T)], [None] * T
    first_s, stats = None, {}
    for done, ev in enumerate(pipe.stream(s.prompt, key_frames=s.key_frames, interp_frames=s.interp_frames,
                                          inherit_ratio=s.inherit_ratio, seed=s.seed, first_frame=s.first_frame,
                                          temperature=s.temperature, top_k=s.top_k), start=1):
        seconds = time.perf_counter() - t0
        first_s = seconds if first_s is None else first_s
        frames[ev.index], regions[ev.index], stats = ev.image, ev.regions, ev.stats
        if ev.regions is None:
            annotated = key_frame_view(ev.image, grid, scale)
        else:
            annotated = region_annotations(ev.image, ev.regions, scale)
        yield FrameUpdate(ev, done, T, seconds, upscale(ev.image, scale), annotated,
                          frame_info(ev.index, ev.kind, s.key_frames, s.interp_frames, ev.stats.get("regions"),
                                     s.first_frame is not None),
                          filmstrip(frames, kinds, newest=ev.index))
    total_s = time.perf_counter() - t0
    video = Video(np.stack(frames), kinds, regions, stats)
    out = output_dir(out_root)
    name = f"{slug(s.prompt)}-seed{s.seed}"
    mp4 = video.save(out / f"{name}.mp4", fps=FPS, scale=scale)
    gif = video.save(out / f"{name}.gif", fps=FPS, scale=scale)
    summary = stats_summary(stats, T, first_s, total_s,
                            rho0_steps(pipe.config, s.key_frames, s.interp_frames, s.first_frame is not None))
    yield Result(video, s, mp4, gif, summary, stats_markdown(summary, s.seed, model or "model"), scale, grid)
