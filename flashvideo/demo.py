"""Everything the Gradio app (app.py) does besides layout: loading the model once, checking the
inputs, the upload screening and the bounded output folders. The run itself (frames, continuing a
video, files) is `flashvideo.app_session.Session`; what it draws is `flashvideo.app_view`.

No gradio in here, so the CLI and the tests reach the same code as the UI:

    pipe = load_pipeline()                                   # cached per model id
    settings = Settings.check(pipe, "a red circle moves right", key_frames=4, interp_frames=3)
    for update in Session(pipe, "model", out_root).generate(settings): ...

Errors a user can cause raise ValueError (or FileNotFoundError for a missing model) with a message
meant to be shown as is: it starts with the field's name, says what is allowed, and never holds a
server path.

Hostile input (issue 9): a first frame is read only from a file Gradio received as an upload
(`upload_path`), with a bounded size and pixel count (`limit_image_decoding` sets PIL's process-wide
limit at start-up), in one of a few plain image formats (`load_first_frame`). Each value has one
meaning: whole numbers may come as integral floats (3.0) but never as 1.5, "3" or true; "randomise
seed" is strictly true or false; top-k 0 means off (CLI and app alike); a temperature is 0 (greedy)
or at least MIN_TEMPERATURE (a tiny positive one is refused, not rounded).
"""
from __future__ import annotations

import functools
import math
import os
import random
import re
import stat
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .app_view import COLOR_MAP, REGION_STYLE  # noqa: F401 (the app's colours, re-exported)
from .pipeline import DEFAULT_CHECKPOINT, FlashVideoPipeline
from .sampler import SamplingSettings
from .timeline import Timeline

MODEL_ENV = "FLASHVIDEO_MODEL"     # checkpoint folder or Hub repo id; unset: checkpoints/shapes
MAX_PROMPT_CHARS = 300
MAX_UPLOAD_BYTES = 5 * 2**20       # the app's upload limit (launch(max_file_size="5mb"))
MAX_UPLOAD_SIDE = 4096             # px; larger first frames are refused before they are decoded
MAX_UPLOAD_PIXELS = 4096 * 4096    # px; also PIL's hard limit for the whole process (limit_image_decoding)
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")   # what a first frame may be; PIL's other readers are never used
MAX_SEED = 2**31 - 1
MIN_TEMPERATURE = 0.01             # temperatures are 0 (greedy) or in [MIN_TEMPERATURE, max]
APP_MAX_TEMPERATURE = 2.0          # the app's slider
OUTPUT_MAX_AGE_S = 3600            # our MP4/GIF files older than this are deleted on the next run
OUTPUT_MAX_RUNS = 64               # ... and only the newest runs are kept
CACHE_MAX_BYTES = 512 * 2**20      # the Gradio cache (uploads, streamed frames, videos) is pruned, oldest first,
CACHE_PRUNE_EVERY_S = 30.0         # to stay under this, at most every CACHE_PRUNE_EVERY_S seconds
LOAD_RETRY_S = 300.0               # a Hub model that failed to load is tried again after this long



# ------------------------------------------------------------------------------------ model

_load_lock = threading.Lock()
COMPILE_ENV = "FLASHVIDEO_COMPILE"  # "1": torch.compile the step at load; "0": eager; unset: the AOTInductor step
                                    # if this machine has one (`python app.py` builds it first: `build_step_at_start`)


def model_id(model: str | os.PathLike | None = None) -> str | None:
    """The model to serve: the argument, else $FLASHVIDEO_MODEL, else None (checkpoints/shapes)."""
    model = model if model not in (None, "") else os.environ.get(MODEL_ENV) or None
    if model is None:
        return None
    return str(Path(model).resolve()) if Path(model).is_dir() else str(model)


@functools.lru_cache(maxsize=4)
def _load(key: str | None) -> FlashVideoPipeline:
    pipe = FlashVideoPipeline.from_pretrained(key)
    # The app's server and the browser share the cores with decoding: one thread for the passes kept the app as fast
    # (0.79 s against 0.76 and 1.09 s in two runs with two threads) and its first click no slower than a warm one
    # (0.97x against 1.32x and 0.88x; tests/app_speed.py, runs/app_speed14t1, 14 and 15).
    pipe.threads = 1
    if os.environ.get(COMPILE_ENV) == "1":  # opt-in, synchronous: never shares the cores with a request
        pipe.compile()
    elif os.environ.get(COMPILE_ENV) != "0":  # a step built ahead of time on this machine, if any (never built here)
        pipe.compile("aoti")
    warm_up(pipe)
    return pipe


def warm_up(pipe: FlashVideoPipeline) -> None:
    """One tiny video (2 key frames, 1 in between) when the model loads, so that the first request meets
    warm kernels, allocator and thread pools instead of paying for their one-time set-up. No compiler runs."""
    prompts = example_prompts(pipe.tokenizer.vocabulary, 1)
    if prompts:
        for _ in pipe.stream(prompts[0], key_frames=2, interp_frames=1):
            pass


def build_step_at_start(model: str | os.PathLike | None = None) -> str:
    """`python app.py`, before it serves anyone: if this machine has no AOTInductor step for this CPU type and
    these weights in the precision this CPU runs faster (`aot.preferred_precisions()`), build it now (once; tens
    of seconds of CPU, logged) and use it, so that a fresh machine or a Space decodes at full speed from its first
    click without a request ever waiting for a compiler. A failed build (no C++ compiler, ...) is logged and the
    step loaded before (the eager one, or a build of the other precision) serves. $FLASHVIDEO_COMPILE=0 or 1
    skips it. Returns the step in use ("eager", "aoti", ...), or "" if the model did not load."""
    import logging

    from . import aot

    log = logging.getLogger("flashvideo.app")
    try:
        pipe = load_pipeline(model)
    except Exception:  # the app says why on its page
        return ""
    precision = aot.preferred_precisions()[0]
    if os.environ.get(COMPILE_ENV) in ("0", "1") or aot.built(aot.step_path(pipe.model, precision=precision)):
        return pipe.model.step_backend
    log.info("building the recurrent step and the drafted pass ahead of time for this CPU (once per CPU type and "
             "weights, about a minute; FLASHVIDEO_COMPILE=0 skips it)")
    t0 = time.perf_counter()
    try:
        aot.build_step(pipe.model, precision=precision)
    except Exception as e:
        log.warning("building the step failed; the %s step serves (%s: %s)", pipe.model.step_backend,
                    type(e).__name__, str(e)[:300])
        return pipe.model.step_backend
    aot.load_step(pipe.model)  # the app's warm-up request (`launch(warm=True)`) then runs it once
    log.info("built and loaded the %s step in %.0f s", pipe.model.step_backend, time.perf_counter() - t0)
    return pipe.model.step_backend


_failures: dict = {}  # model id -> (signature, exception): the last failed load and what it saw


def _signature(key: str | None):
    """What a retry depends on: a local folder's listing (names, sizes, mtimes; nothing is read), or the
    time bucket of LOAD_RETRY_S for a Hub id."""
    folder = Path(key) if key is not None else DEFAULT_CHECKPOINT
    if key is None or folder.is_dir() or key.startswith((".", "/")) or key.count("/") != 1:
        try:
            return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder)))
        except OSError:
            return "missing"
    return int(time.monotonic() // LOAD_RETRY_S)


def load_pipeline(model: str | os.PathLike | None = None) -> FlashVideoPipeline:
    """Load once per model id and keep it. A failure is cached too, so a broken or hostile checkpoint
    costs one load, not one per Generate click: the same error is raised again until the folder's
    files change (a checkpoint that appears or is fixed later is picked up by the next call) or, for a
    Hub id, LOAD_RETRY_S has passed."""
    key = model_id(model)
    with _load_lock:
        signature = _signature(key)
        failed = _failures.get(key)
        if failed is not None and failed[0] == signature:
            raise failed[1].with_traceback(None)
        try:
            pipe = _load(key)
        except Exception as e:
            _failures[key] = (signature, e)
            raise
        _failures.pop(key, None)
        return pipe


def model_name(model: str | os.PathLike | None = None) -> str:
    key = model_id(model)
    if key is None:
        return "checkpoints/shapes"
    return Path(key).name if Path(key).is_dir() else key


_PATH = re.compile(r"(?<![\w.~])(?:/[^/\s'\"`]+)+/?")


def redact_paths(text: str) -> str:
    """Server paths in a message -> their last part ("/srv/x/checkpoints/shapes/config.json" -> "config.json")."""
    def last(m):
        parts = [p for p in m.group(0).split("/") if p]
        return parts[-1] if parts else "…"
    return _PATH.sub(last, text)


def missing_model_message(model: str | os.PathLike | None, error: Exception) -> str:
    """What to tell the user when the model cannot be loaded (no server paths in it)."""
    if model_id(model) is None and not DEFAULT_CHECKPOINT.is_dir():
        return (f"The default model is not at `{DEFAULT_CHECKPOINT.parent.name}/{DEFAULT_CHECKPOINT.name}` yet: "
                "it is being trained and appears there when done (Generate picks it up without a restart). "
                f"Meanwhile set `{MODEL_ENV}` to a checkpoint folder or a Hugging Face repo id.")
    return f"Could not load the model `{model_name(model)}`: {redact_paths(str(error))[:600]}"


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

def describe(value) -> str:
    """A value as a message shows it: numbers as they are, anything else by its kind (a string is never
    echoed, so a message cannot repeat a path or a script it was sent)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(value) if abs(int(value)) < 10**15 else f"{float(value):.3g}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, str):
        return "text" if value.strip() else "empty text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def as_int(name: str, value, lo: int, hi: int, note: str = "") -> int:
    """A whole number in lo..hi from an int or an integral float (what a slider may send: 3.0, never
    1.5, "3" or true)."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number in {lo}..{hi}{note}, got {describe(value)}")
    return int(value)


def as_float(name: str, value, lo: float, hi: float) -> float:
    if not _real(value) or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {describe(value)}")
    return float(value)


def as_bool(name: str, value) -> bool:
    """Strictly true or false: "false", "no", 0 or 2 are refused, not read as truthy."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {describe(value)}")
    return bool(value)


def as_temperature(value, hi: float = APP_MAX_TEMPERATURE, name: str = "temperature") -> float:
    """0 (greedy) or a number in [MIN_TEMPERATURE, hi]. A tiny positive temperature is refused, not
    rounded: sampling at 1e-300 is greedy decoding in disguise (and overflows float32)."""
    if not _real(value) or not math.isfinite(value) or not (value == 0 or MIN_TEMPERATURE <= value <= hi):
        raise ValueError(f"{name} must be 0 (greedy) or a number in [{MIN_TEMPERATURE:g}, {hi:g}], "
                         f"got {describe(value)}")
    return float(value)


def as_top_k(value, n_codes: int, name: str = "top-k") -> int | None:
    """top-k: a whole number in 0..n_codes; 0 means off (None for the pipeline), in the app and the CLI."""
    return as_int(name, value, 0, n_codes, " (0 = off)") or None


def check_prompt(pipe, prompt) -> str:
    """The prompt, stripped; ValueError starting with "prompt" that never echoes the prompt itself
    (unknown words are named, with the words the model knows)."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, e.g. 'a red circle moves right', got {describe(prompt)}")
    if not prompt.strip():
        raise ValueError("prompt is empty: describe the video, e.g. 'a red circle moves right'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} are allowed")
    try:
        pipe.encode_prompt(prompt)      # the tokenizer's words (and grammar), and the model's text length
    except ValueError as e:
        message = str(e).replace(f" in prompt {prompt!r}", "").replace(f"prompt {prompt!r}", "prompt")
        message = message.replace("empty prompt: it has", "prompt has")
        if len(prompt.strip()) > 3:
            message = message.replace(repr(prompt), "(the prompt)")
        if "known words" not in message and "one of" not in message and "e.g." not in message:
            message += "; describe the video, e.g. 'a red circle moves right'"
        raise ValueError(message if message.lower().startswith("prompt") else f"prompt: {message}") from None
    return prompt.strip()


# ---- the first frame: an upload, never a server path

FIRST_FRAME_HELP = ("upload an image file (PNG, JPEG, WebP, GIF or BMP, at most 5 MB and 4096×4096 px) with the "
                    "upload button, or through gradio_client.handle_file")
FILE_KEYS = {"path", "url", "size", "orig_name", "mime_type", "is_stream", "meta"}


def upload_path(payload, upload_dir, uploads=None) -> str | None:
    """The server path of a first-frame upload (as Gradio recorded it), or None for no first frame.
    ValueError (never naming a path) unless `payload` is a Gradio file payload whose path is a regular file of at most
    MAX_UPLOAD_BYTES inside `upload_dir` (symlinks resolved) and, when `uploads` is given (the paths
    Gradio's upload route received), one of them. A raw server path, a URL, a data: URL, a bare value
    or a path outside the upload folder is refused before anything opens it."""
    if payload is None:
        return None
    if not isinstance(payload, dict) or not payload or set(payload) - FILE_KEYS:
        raise ValueError(f"first frame must be an uploaded file or nothing, got {describe(payload)}: {FIRST_FRAME_HELP}")
    path, url = payload.get("path"), payload.get("url")
    if path is None and isinstance(url, str) or isinstance(path, str) and re.match(r"^[a-zA-Z][\w+.-]*:", path):
        raise ValueError(f"first frame must be an uploaded file; URLs and data: URLs are not accepted: {FIRST_FRAME_HELP}")
    if isinstance(url, str) and url.startswith("data:"):
        raise ValueError(f"first frame must be an uploaded file; data: URLs are not accepted: {FIRST_FRAME_HELP}")
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > 4096:
        raise ValueError(f"first frame must be an uploaded file, got a file entry without a usable path: {FIRST_FRAME_HELP}")
    root = os.path.realpath(upload_dir)
    path, real = os.path.abspath(path), os.path.realpath(path)
    if not real.startswith(root + os.sep) or (uploads is not None and path not in uploads and real not in uploads):
        raise ValueError(f"first frame: that file was not uploaded to this app: {FIRST_FRAME_HELP}")
    try:
        st = os.stat(real)
    except OSError:
        raise ValueError("first frame: the upload is no longer on the server (uploads are kept for an hour); "
                         "upload it again") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"first frame: that upload is not a file: {FIRST_FRAME_HELP}")
    if st.st_size > MAX_UPLOAD_BYTES:
        raise ValueError(f"first frame is {st.st_size / 2**20:.1f} MB; at most {MAX_UPLOAD_BYTES // 2**20} MB")
    return path


def limit_image_decoding(max_pixels: int = MAX_UPLOAD_PIXELS) -> None:
    """Bound the pixels PIL decodes anywhere in this process: Image.open raises DecompressionBombError
    above max_pixels (PIL's hard limit is twice MAX_IMAGE_PIXELS). Called at start-up by the app and
    the CLI; the first-frame checks refuse anything above MAX_UPLOAD_PIXELS before decoding anyway."""
    import warnings

    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels // 2
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def load_first_frame(path, max_bytes: int = MAX_UPLOAD_BYTES):
    """An image file -> PIL image (first frame of an animation), refusing everything else before it is
    decoded: not a regular file (a pipe or a device is never read), more than max_bytes, not one of
    IMAGE_FORMATS, empty, or more than MAX_UPLOAD_SIDE px a side / MAX_UPLOAD_PIXELS in all.
    Messages start with "first frame" and never name the path."""
    import io

    from PIL import Image, UnidentifiedImageError

    if path is None or path == "":
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ValueError("first frame: no such file") from None
    except OSError as e:
        raise ValueError(f"first frame: the file cannot be opened ({e.strerror or 'error'})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("first frame must be an image file; that is a folder, a pipe or a device")
        if st.st_size > max_bytes:
            raise ValueError(f"first frame is {st.st_size / 2**20:.1f} MB; at most {max_bytes / 2**20:g} MB")
        data = os.read(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if not data:
        raise ValueError(f"first frame is an empty file: {FIRST_FRAME_HELP}")
    big = f"the largest allowed is {MAX_UPLOAD_SIDE}×{MAX_UPLOAD_SIDE} px"
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise ValueError(f"first frame is too large; {big}") from None
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError, EOFError, IndexError, TypeError):
        raise ValueError(f"first frame is not a readable image: {FIRST_FRAME_HELP}") from None
    w, h = image.size
    if w <= 0 or h <= 0:
        raise ValueError(f"first frame is an empty image ({w}×{h} px): {FIRST_FRAME_HELP}")
    if max(w, h) > MAX_UPLOAD_SIDE or w * h > MAX_UPLOAD_PIXELS:
        raise ValueError(f"first frame is {w}×{h} px; {big}")
    try:
        image.load()
        if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):   # deep greyscale -> 8 bit
            a = np.asarray(image, dtype=np.float64)
            a = a / 257.0 if image.mode != "F" else a * 255.0
            image = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
        elif image.mode not in ("RGB", "RGBA", "L", "LA", "P", "PA"):
            image = image.convert("RGB")
    except Image.DecompressionBombError:
        raise ValueError(f"first frame is too large; {big}") from None
    except Exception:  # PIL raises many kinds on corrupt data; none of them is ours to show
        raise ValueError(f"first frame is a damaged or truncated image: {FIRST_FRAME_HELP}") from None
    return image


LENGTHS = ("K key frames", "until stopped")   # the app's length choice (first run and Continue)
APP_MAX_GUIDANCE = 10.0
NEGATIVE_HELP = "words the model knows, or nothing"


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
    top_p: float | None = None          # None: off
    guidance_scale: float = 1.0         # 1: off
    model_sampling: SamplingSettings = SamplingSettings()  # the model's own choices beyond the controls above
                                        # (guide_interp, lead_in, first_candidates, centre_first): not UI controls
    negative_prompt: str | None = None
    length: str = LENGTHS[0]

    @property
    def n_frames(self) -> int:
        return Timeline(self.key_frames, self.interp_frames).n_frames

    @property
    def until_stopped(self) -> bool:
        return self.length == "until stopped"

    @property
    def sampling(self) -> SamplingSettings:
        return replace(self.model_sampling, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                       guidance_scale=self.guidance_scale)

    @classmethod
    def check(cls, pipe: FlashVideoPipeline, prompt, key_frames=4, interp_frames=3, inherit_ratio=0.2,
              seed=0, randomize_seed=False, first_frame=None, temperature=1.0, top_k=0, top_p=1.0,
              guidance_scale=1.0, negative_prompt="", length=LENGTHS[0],
              max_temperature: float = APP_MAX_TEMPERATURE) -> "Settings":
        """Raw UI/API values -> Settings, or ValueError naming the bad value and what is allowed. Cheap
        checks first, the image last. top_k 0 and top_p 1 mean off; guidance 1 means off; an empty
        negative prompt means none; a first_frame is a trusted file path (the app passes only
        `upload_path`'s result), an image, or None."""
        c = pipe.config
        prompt = check_prompt(pipe, prompt)
        key_frames = as_int("key frames", key_frames, 2, c.max_key_frames)
        interp_frames = as_int("interpolated frames", interp_frames, 0, c.max_interp_frames)
        inherit_ratio = as_float("inheritable-token ratio", inherit_ratio, 0.0, 1.0)
        seed = as_int("seed", seed, 0, MAX_SEED)
        if as_bool("randomise seed", randomize_seed):
            seed = random.randint(0, MAX_SEED)
        temperature = as_temperature(temperature, max_temperature)
        top_k = as_top_k(top_k, c.n_codes)
        top_p = as_float("top-p", top_p, 0.0, 1.0)
        if top_p == 0:
            raise ValueError("top-p must be a number in (0, 1] (1 = off), got 0")
        guidance_scale = as_float("guidance scale", guidance_scale, 0.0, APP_MAX_GUIDANCE)
        if negative_prompt is None or negative_prompt == "" or isinstance(negative_prompt, str) and not negative_prompt.strip():
            negative_prompt = None
        else:
            try:
                negative_prompt = check_prompt(pipe, negative_prompt)
            except ValueError as e:
                raise ValueError("negative " + str(e)) from None
            if guidance_scale == 1.0:
                raise ValueError("negative prompt only acts through guidance: set the guidance scale to a value "
                                 "other than 1 (e.g. 3), or leave the negative prompt empty")
        if not isinstance(length, str) or length not in LENGTHS:
            raise ValueError(f"length must be one of {', '.join(repr(x) for x in LENGTHS)}, got {describe(length)}")
        if first_frame is not None and not hasattr(first_frame, "size"):
            first_frame = load_first_frame(first_frame)
        s = cls(prompt=prompt, key_frames=key_frames, interp_frames=interp_frames, inherit_ratio=inherit_ratio,
                seed=seed, first_frame=first_frame, temperature=temperature, top_k=top_k,
                top_p=None if top_p == 1.0 else top_p, guidance_scale=guidance_scale,
                model_sampling=pipe.default_sampling, negative_prompt=negative_prompt, length=length)
        pipe.check_settings(s.key_frames, s.interp_frames, s.inherit_ratio, seed=s.seed, sampling=s.sampling,
                            negative_prompt=s.negative_prompt)
        return s


# ------------------------------------------------------------------------------------ files

def output_dir(root: str | os.PathLike | None = None, max_age_s: float = OUTPUT_MAX_AGE_S,
               max_runs: int = OUTPUT_MAX_RUNS) -> Path:
    """A fresh folder for one run's files, under a root where runs older than max_age_s, and all but
    the newest max_runs - 1 runs, are deleted first (so the root never holds more than max_runs runs).
    The app puts the root inside Gradio's cache, so Gradio serves the files from there without copying
    them (each MP4 and GIF is stored once)."""
    root = Path(root) if root is not None else Path(tempfile.gettempdir()) / "flashvideo-app"
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    runs = []
    for old in root.iterdir():
        try:
            runs.append((old.stat().st_mtime, old))
        except OSError:
            pass
    runs.sort(reverse=True)
    for i, (mtime, old) in enumerate(runs):
        if now - mtime > max_age_s or i >= max_runs - 1:
            _remove_run(old)
    out = root / uuid.uuid4().hex[:12]
    out.mkdir()
    return out


def _remove_run(folder: Path) -> None:
    try:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    except OSError:
        pass  # another run is cleaning it, or it is not ours


def folder_bytes(root) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def prune_cache(root, max_bytes: int = CACHE_MAX_BYTES, keep=()) -> int:
    """Delete the oldest files under root (Gradio's cache: uploads, streamed frames, videos) until it
    holds at most 80 % of max_bytes, whenever it holds more than max_bytes; files in `keep` stay.
    Returns the bytes deleted. Empty folders left behind are removed."""
    files, total = [], 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
            total += st.st_size
    if total <= max_bytes:
        return 0
    keep = {os.path.realpath(k) for k in keep}
    freed = 0
    for _, size, p in sorted(files):
        if total - freed <= 0.8 * max_bytes:
            break
        if p in keep or os.path.realpath(p) in keep:
            continue
        try:
            os.unlink(p)
            freed += size
        except OSError:
            pass
    for dirpath, dirs, names in os.walk(root, topdown=False):
        if dirpath != str(root) and not dirs and not names:
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
    return freed


_last_prune = [0.0]


def maybe_prune_cache(root, max_bytes: int = CACHE_MAX_BYTES, every_s: float = CACHE_PRUNE_EVERY_S, keep=()) -> int:
    """`prune_cache`, at most once every every_s seconds (walking a big cache costs a little)."""
    now = time.monotonic()
    if root is None or now - _last_prune[0] < every_s:
        return 0
    _last_prune[0] = now
    return prune_cache(root, max_bytes, keep)


def queue_full_message(waiting: int, limit: int | None) -> str:
    """What a request gets when the queue is full: how busy it is, and to try again."""
    return (f"The queue is full: {waiting} requests are waiting (at most {limit} can wait). "
            "Please try again in a minute.")


def slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "video"
