"""FlashVideo demo: a thin Gradio shell over FlashVideoPipeline (logic: flashvideo/demo.py, the run:
flashvideo/app_session.py, the pictures: flashvideo/app_view.py).

    python app.py                                   # http://127.0.0.1:7860, model checkpoints/shapes
    FLASHVIDEO_MODEL=org/name python app.py         # a Hub repo id or another checkpoint folder

Frames stream in as they are decoded: the key frames first, then the frames between every pair of
key frames (all pairs in one batch). The region view shows each in-between frame's token grid:
which tokens differ between its key frames, which are unstable, which were inherited (copied
instead of sampled) and which were generated although stable. Concurrent Generate runs share their
decoding batches (`flashvideo.serving`), each getting the frames it would get alone. "Continue" extends
the video under a new prompt from its saved stream state (held per browser session), or continues an
uploaded clip; "until stopped" runs until Stop. The /generate endpoint is also an MCP tool
(`launch(mcp_server=...)`).

Hostile requests (issue 9): every value of /generate reaches our checks before Gradio's (the event
runs with preprocess=False, and `FlashVideoBlocks.preprocess_data` screens the first-frame payload
before Gradio touches it), so a refusal is always one of flashvideo.demo's messages: it names the
field and what is allowed, and never a server path. The first frame is read only from a file that
Gradio's upload route received; PIL's pixel limit is set at start-up. A refused request logs one
line; a real failure logs its traceback once. Generated videos are written into Gradio's cache
(stored once) and the cache is pruned to CACHE_MAX_BYTES, oldest files first.
"""
import copy
import logging
import os
import re
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from flashvideo import app_session, app_view as view, demo as lib
from flashvideo.config import FlashVideoConfig
from flashvideo.data import shapes
from flashvideo.sampler import SamplingSettings

lib.limit_image_decoding()  # at start-up: no image of more than lib.MAX_UPLOAD_PIXELS is decoded in this process

# show_error=False: an unexpected exception inside Gradio never shows its text (which may hold a server path);
# our own refusals are gr.Error and are always shown.
LAUNCH_KWARGS = dict(show_error=False, max_file_size="5mb")
GENERATE_INPUTS = ("prompt", "first frame", "key frames", "interpolated frames", "inheritable-token ratio", "seed",
                   "randomise seed", "temperature", "top-k", "top-p", "guidance scale", "negative prompt", "length")
LEGACY_INPUTS = 9                      # a request of the first 9 values gets the defaults for the rest
DEFAULTS = (1.0, 1.0, "", lib.LENGTHS[0])
GENERATE_CONCURRENCY = 16              # Generate runs at once, sharing decoding batches (flashvideo.serving); more wait
                                       # in the queue, up to its max_size
CONTINUE_INPUTS = ("prompt", "clip", "key frames", "interpolated frames", "inheritable-token ratio", "seed",
                   "temperature", "top-k", "top-p", "guidance scale", "negative prompt", "length")
log = logging.getLogger("flashvideo.app")
DESCRIPTION = """# FlashVideo: text to video with a RetNet
Key frames are decoded first, each after the prompt and its **serial-number** token; then the frames
between every two key frames are **interpolated**, all pairs in one batch. Tokens that are stable
between two key frames can be **inherited** (copied, not sampled): ρ sets how many."""
CSS = view.CSS + """
#warning { border: 1px solid #f59e0b; border-radius: 8px; padding: 4px 12px; }
#stats .error, #view .error, #strip .error { display: none; }  /* the toast says it; no badge over the stats */
"""


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (so a test that captures stderr sees the lines)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging() -> None:
    """One line per event on stderr: refusals at INFO, real failures at ERROR with their traceback."""
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s flashvideo.app: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def refuse(api: str, message: str) -> gr.Error:
    """A user's mistake: one log line, and the message (no traceback anywhere). It stays on screen until
    closed (duration=None): a second error never takes the first one's timer and vanishes with it."""
    message = " ".join(str(message).split())
    log.info("refused /%s: %s", api, message[:300])
    return gr.Error(message, duration=None, print_exception=False)


def upload_folder(blocks: gr.Blocks) -> str:
    app = getattr(blocks, "server_app", None)
    return getattr(app, "uploaded_file_dir", None) or gr.utils.get_upload_folder()


def uploaded_files(blocks: gr.Blocks):
    """The paths Gradio's upload route received (None if this Gradio does not track them: then any
    file inside the upload folder counts)."""
    return getattr(blocks, "upload_file_set", None)


class FlashVideoBlocks(gr.Blocks):
    """gr.Blocks whose /generate first-frame payload is screened before Gradio touches it (and whose skipped
    outputs cost nothing, `postprocess_data`).

    Gradio opens, copies, downloads or decodes a file payload before the event function runs: a raw
    `{"path": ...}` without `meta` reaches PIL unchecked, a `data:` URL is decoded whatever its size,
    and a bare value gets a pydantic dump. Here the payload must name a file Gradio's upload route
    received (`lib.upload_path`), and is replaced by a clean payload of that one path; anything else
    is refused with our message. The other values pass untouched to the event (preprocess=False),
    which checks them all (`lib.Settings.check`)."""

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        api = getattr(block_fn, "api_name", None)
        if api == "generate":
            if not isinstance(inputs, list) or len(inputs) not in (LEGACY_INPUTS, len(GENERATE_INPUTS)):
                n = len(inputs) if isinstance(inputs, list) else 0
                raise refuse("generate", f"request must hold {len(GENERATE_INPUTS)} values ({', '.join(GENERATE_INPUTS)}) "
                                         f"or the first {LEGACY_INPUTS} of them, got {n}")
            inputs = list(inputs) + list(DEFAULTS[len(inputs) - LEGACY_INPUTS:])
            inputs[1] = self._screen(api, "first frame", inputs[1])
        elif api == "continue":
            n_values = len(CONTINUE_INPUTS)
            if not isinstance(inputs, list) or len(inputs) != n_values:
                n = len(inputs) if isinstance(inputs, list) else 0
                raise refuse(api, f"request must hold {len(CONTINUE_INPUTS)} values ({', '.join(CONTINUE_INPUTS)}), got {n}")
            clip = inputs[1]
            if clip is not None and not (isinstance(clip, list) and len(clip) <= app_session.MAX_CLIP_FRAMES):
                raise refuse(api, f"clip must be a list of at most {app_session.MAX_CLIP_FRAMES} uploaded files, "
                                  f"or nothing, got {lib.describe(clip)}")
            inputs = list(inputs)
            inputs[1] = None if not clip else [self._screen(api, "clip", c) for c in clip]
        return await super().preprocess_data(block_fn, inputs, state, explicit_call)

    async def postprocess_data(self, block_fn, predictions, state):
        """Gradio's post-processing, except that an output left as `gr.skip()` passes through untouched. Gradio 6
        treats a skip as a property update: it builds the component anew and its config (pydantic schemas
        included) on every update, 113 config builds per default video, for outputs that do not change. The
        skipped outputs are the same `{"__type__": "update"}` the page receives either way."""
        outputs = block_fn.outputs
        if not isinstance(predictions, (list, tuple)) or len(predictions) != len(outputs) or len(outputs) < 2:
            return await super().postprocess_data(block_fn, predictions, state)
        keep = [i for i, p in enumerate(predictions) if not (isinstance(p, dict) and p == gr.skip())]
        if len(keep) == len(outputs):
            return await super().postprocess_data(block_fn, predictions, state)
        out = [gr.skip() for _ in outputs]
        if keep:
            part = copy.copy(block_fn)
            part.outputs = [outputs[i] for i in keep]
            values = [predictions[i] for i in keep]
            done = await super().postprocess_data(part, values if len(keep) > 1 else values[0], state)
            for i, value in zip(keep, done):
                out[i] = value
        return out

    def _screen(self, api: str, field: str, payload):
        """A file payload -> a clean payload naming a file Gradio's upload route received (or None)."""
        try:
            path = lib.upload_path(payload, upload_folder(self), uploaded_files(self))
        except ValueError as e:
            raise refuse(api, str(e).replace("first frame", field, 1)) from None
        return None if path is None else {"path": path, "meta": {"_type": "gradio.FileData"}}

    def queue(self, *args, **kwargs):
        """The queue, with a full-queue message that says how busy it is and to try again."""
        blocks = super().queue(*args, **kwargs)
        queue = self._queue
        push = queue.push

        async def push_or_explain(*a, **kw):
            ok, detail, status = await push(*a, **kw)
            if status == "queue_full":
                detail = lib.queue_full_message(len(queue), queue.max_size)
                log.info("refused a request: %s", detail)
            return ok, detail, status

        queue.push = push_or_explain
        return blocks


def mcp_description(vocabulary, config) -> str:
    """The MCP tool's description: what it makes, the words it knows, and every setting's range."""
    return (f"Generate a short video from a text prompt with FlashVideo (a RetNet text-to-video model; "
            f"{config.image_size}x{config.image_size} px frames). Returns the video as an MP4 (and a GIF), with the "
            f"stats and the seed used. prompt: words from this vocabulary only: {', '.join(vocabulary) or '(model not loaded)'}"
            f"; e.g. 'a red circle moves right'. first_frame: optional image to continue (null for none). "
            f"key_frames: integer 2..{config.max_key_frames} (default 4). interp_frames: integer "
            f"0..{config.max_interp_frames} frames between key frames (default 3). inherit_ratio: 0..1 (default 0.2). "
            f"seed: integer 0..{lib.MAX_SEED}; randomize: true/false. temperature: 0 (greedy) or "
            f"{lib.MIN_TEMPERATURE:g}..{lib.APP_MAX_TEMPERATURE:g} (default 1). top_k: 0 (off)..{config.n_codes}. "
            f"top_p: (0, 1], 1 = off. guidance_scale: 0..{lib.APP_MAX_GUIDANCE:g}, 1 = off. negative_prompt: words "
            f"from the vocabulary or empty (needs guidance_scale != 1). length: 'K key frames' (the only sensible "
            f"choice for a tool call; 'until stopped' never returns).")


def build_demo(model_id=None) -> gr.Blocks:
    """The app for one model (a folder or Hub repo id; None: $FLASHVIDEO_MODEL or checkpoints/shapes).
    If the model cannot be loaded yet, the app still builds and says why (a failed load is cached:
    see `lib.load_pipeline`)."""
    _setup_logging()
    try:
        pipe = lib.load_pipeline(model_id)
        config, vocabulary, problem = pipe.config, pipe.tokenizer.vocabulary, None
        step = pipe.model.step_backend
    except Exception as e:  # missing default checkpoint, bad folder, Hub unreachable: say so, keep serving
        config, problem, step = FlashVideoConfig(), lib.missing_model_message(model_id, e), "eager"
        log.warning("model not loaded: %s", " ".join(problem.split())[:300])
        vocabulary = shapes.vocabulary() if lib.model_id(model_id) is None else []
    examples, name = lib.example_prompts(vocabulary), lib.model_name(model_id)
    d = SamplingSettings.resolve(None, config.sampling)   # the model's own sampling defaults (measured)
    default_top_k, default_top_p = d.top_k or 0, d.top_p or 1.0
    outputs_root = os.path.join(gr.utils.get_upload_folder(), "flashvideo")  # inside Gradio's cache: served as is
    sessions = app_session.SessionStore()    # each browser session's video (continued by Continue)

    def via_mcp(request) -> bool:
        """A call made by Gradio's MCP server (it forwards the MCP client's headers)."""
        headers = getattr(request, "headers", None) or {}
        return any(k.lower().startswith("mcp-") for k in headers.keys())

    def session_key(request):
        return getattr(request, "session_hash", None)

    def pipeline(api):
        try:
            return lib.load_pipeline(model_id)
        except Exception as e:
            raise refuse(api, lib.missing_model_message(model_id, e)) from None

    def failed(api, e):  # not the user's doing: the traceback goes to the log, once
        log.exception("/%s failed", api)
        return gr.Error(f"generating the video failed on the server ({type(e).__name__}: "
                        f"{lib.redact_paths(str(e))[:200]}); it is logged. Try again, or change the settings.",
                        duration=None, print_exception=False)

    def finished_outputs(done, compact=False):
        if compact:  # an MCP client reads text: the caption and the stats, not inline PNGs
            return (re.sub(r"<[^>]+>", "", done.view.split('id="fv-caption">')[-1]) if done.view else "",
                    "", done.markdown, str(done.mp4) if done.mp4 else None,
                    gr.DownloadButton(value=str(done.gif) if done.gif else None, interactive=done.gif is not None),
                    gr.skip(), gr.skip())
        return (done.view or gr.skip(), done.strip, done.markdown,
                str(done.mp4) if done.mp4 else None,
                gr.DownloadButton(value=str(done.gif) if done.gif else None, interactive=done.gif is not None),
                gr.Slider(minimum=done.first, maximum=max(done.last, done.first + 1) if done.last == done.first else done.last,
                          value=done.index, interactive=done.last > done.first),
                gr.Button(interactive=True))

    def stream_updates(session, updates, first_outputs):
        """Session updates -> output tuples: view, strip, stats, video, gif, frame, continue."""
        for up in updates:
            if isinstance(up, app_session.Update):
                out = (up.view, gr.skip() if up.strip is None else up.strip, up.status, gr.skip(), gr.skip(), gr.skip(),
                       gr.skip())
                if first_outputs is not None:   # the first frame of a run clears the last video and slider
                    out, first_outputs = first_outputs(out), None
                yield out
            else:
                yield finished_outputs(up)

    def generate(prompt, first_frame=None, key_frames=4, interp_frames=3, inherit_ratio=0.2, seed=0, randomize=False,
                 temperature=d.temperature, top_k=default_top_k, top_p=default_top_p, guidance_scale=d.guidance_scale,
                 negative_prompt="", length=lib.LENGTHS[0],
                 request: gr.Request = None):
        """Generate a video from a prompt (the MCP tool's description is `mcp_description`).

        Args:
            prompt: what happens, in the model's words, e.g. 'a red circle moves right'
            first_frame: optional uploaded image to predict from (omit for text to video)
            key_frames: key frames K (serial numbers)
            interp_frames: frames interpolated between two key frames
            inherit_ratio: share of stable tokens copied instead of sampled (0..1)
            seed: random seed
            randomize: pick a random seed (the one used is returned)
            temperature: 0 = greedy
            top_k: 0 = off
            top_p: 1 = off
            guidance_scale: classifier-free guidance, 1 = off
            negative_prompt: steer away from this (needs guidance_scale != 1); empty for none
            length: 'K key frames' ('until stopped' runs until cancelled)
        """
        pipe = pipeline("generate")
        try:
            path = lib.upload_path(first_frame, upload_folder(demo), uploaded_files(demo))
            s = lib.Settings.check(pipe, prompt, key_frames, interp_frames, inherit_ratio, seed, randomize,
                                   path, temperature, top_k, top_p, guidance_scale, negative_prompt, length)
        except ValueError as e:  # the checks' messages are written for users
            raise refuse("generate", str(e)) from None
        lib.maybe_prune_cache(gr.utils.get_upload_folder(), keep=[path] if path else ())
        session = sessions.put(session_key(request), app_session.Session(pipe, name, outputs_root))

        def clear(out):
            return (*out[:3], None, gr.DownloadButton(value=None, interactive=False),
                    gr.Slider(minimum=0, maximum=1, value=0, interactive=False), gr.Button(interactive=False))
        try:
            for out in stream_updates(session, session.generate(s), clear):
                if via_mcp(request) and isinstance(session.finished, app_session.Finished) and out[2] == session.finished.markdown:
                    out = finished_outputs(session.finished, compact=True)
                yield out[:3] + (s.seed,) + out[3:]
        except Exception as e:
            raise failed("generate", e) from None

    def continue_video(prompt, clip, key_frames, interp_frames, inherit_ratio, seed, temperature, top_k, top_p,
                       guidance_scale, negative_prompt, length, request: gr.Request = None):
        """Continue the session's video under a new prompt (or an uploaded clip): UI only, not an MCP tool."""
        pipe = pipeline("continue")
        session = sessions.get(session_key(request))
        try:
            s = lib.Settings.check(pipe, prompt, key_frames, interp_frames, inherit_ratio, seed, False, None,
                                   temperature, top_k, top_p, guidance_scale, negative_prompt, length)
            frames = app_session.read_clip([c["path"] for c in clip]) if clip else None
            if frames is None and (session is None or session.last < 0):
                raise ValueError("continue: generate a video first, or upload a clip to continue")
        except ValueError as e:
            raise refuse("continue", str(e)) from None
        if frames is not None or session is None:
            session = sessions.put(session_key(request), app_session.Session(pipe, name, outputs_root))
        n = None if s.until_stopped else s.key_frames
        try:
            yield from stream_updates(session, session.extend(s.prompt, n, clip=frames, settings=s),
                                      lambda out: (*out[:3], gr.skip(), gr.DownloadButton(interactive=False),
                                                   gr.Slider(interactive=False), gr.Button(interactive=False)))
        except ValueError as e:  # a prompt the stream refuses mid-way: the frames so far stay
            raise refuse("continue", str(e)) from None
        except Exception as e:
            raise failed("continue", e) from None

    def stopped(request: gr.Request = None):
        """After Stop: the frames made so far become the video (MP4, GIF, frame slider, Continue)."""
        session = sessions.get(session_key(request))
        if session is None or session.run is None:
            return (gr.skip(),) * 7
        return finished_outputs(session.finish())

    def show_frame(index, request: gr.Request = None):
        session = sessions.get(session_key(request))
        if session is None:
            raise refuse("frame_view", "frame: generate a video first, then step through its frames")
        if session.finished is None:  # a run is going on (its start resets the slider): nothing to step through yet
            return gr.skip(), gr.skip()
        f = session.finished
        try:
            index = lib.as_int("frame", index, f.first, f.last)
            return session.frame_view(index)
        except ValueError as e:
            raise refuse("frame_view", str(e)) from None

    def forget(request: gr.Request = None):
        sessions.drop(session_key(request))

    for fn in (continue_video, show_frame, stopped):
        fn._mcp_type = "none"   # UI endpoints: only /generate is an MCP tool (gradio lists `_mcp_type == "tool"`)

    with FlashVideoBlocks(title="FlashVideo", delete_cache=(600, 3600)) as demo:
        gr.Markdown(DESCRIPTION)
        if problem:
            gr.Markdown(f"⚠️ {problem}", elem_id="warning")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                prompt = gr.Textbox(label="Prompt", value=examples[0] if examples else "", max_lines=1,
                                    placeholder="a red circle moves right", info=lib.vocabulary_hint(vocabulary),
                                    elem_id="prompt")
                with gr.Row():
                    run_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                if examples:
                    gr.Examples(examples, inputs=[prompt], cache_examples=False, examples_per_page=8)
                key_frames = gr.Slider(2, config.max_key_frames, value=min(4, config.max_key_frames), step=1,
                                       label="Key frames K (serial numbers)", elem_id="key-frames")
                interp_frames = gr.Slider(0, config.max_interp_frames, value=min(3, config.max_interp_frames),
                                          step=1, label="Interpolated frames n per pair", elem_id="interp-frames")
                inherit_ratio = gr.Slider(0, 1, value=0.2, step=0.05, label="Inheritable-token ratio ρ",
                                          info="share of stable tokens copied from the key frame instead of sampled")
                length = gr.Radio(list(lib.LENGTHS), value=lib.LENGTHS[0], label="Length",
                                  info="K key frames, or on and on until Stop (Generate and Continue)", elem_id="length")
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=lib.MAX_SEED, min_width=120)
                    randomize = gr.Checkbox(True, label="Randomise seed", min_width=120)
                with gr.Accordion("Continue the video", open=True):
                    next_prompt = gr.Textbox(label="Next prompt", value=examples[1] if len(examples) > 1 else "",
                                             max_lines=1, elem_id="next-prompt",
                                             info="continues the current video from its saved state (K more key "
                                                  "frames, or until Stop); or continues an uploaded clip")
                    clip = gr.File(label=f"Clip to continue (optional): a GIF or MP4 (≤ {app_session.MAX_CLIP_SECONDS:g} s), "
                                         f"or image frames; ≤ {app_session.MAX_CLIP_FRAMES} frames", file_count="multiple",
                                   file_types=[".gif", ".mp4", ".webm", ".png", ".jpg", ".jpeg", ".webp"], height=120,
                                   elem_id="clip")
                    cont_btn = gr.Button("Continue", interactive=False, elem_id="continue")
                with gr.Accordion("First frame (optional)", open=False):
                    first_frame = gr.Image(label="Predict from this image instead of text alone", type="filepath",
                                           image_mode=None, sources=["upload", "clipboard"], height=180, elem_id="first-frame")
                with gr.Accordion("Advanced", open=False):
                    temperature = gr.Slider(0, lib.APP_MAX_TEMPERATURE, value=d.temperature, step=0.05,
                                            elem_id="temperature",
                                            label=f"Temperature (0 = greedy, else at least {lib.MIN_TEMPERATURE:g})")
                    top_k = gr.Slider(0, config.n_codes, value=default_top_k, step=1, label="Top-k (0 = off)",
                                      elem_id="top-k")
                    top_p = gr.Slider(0.05, 1, value=default_top_p, step=0.05, label="Top-p (1 = off)", elem_id="top-p")
                    guidance = gr.Slider(0, lib.APP_MAX_GUIDANCE, value=d.guidance_scale, step=0.25, elem_id="guidance",
                                         label="Guidance scale (1 = off; each token is decoded twice when on)")
                    negative = gr.Textbox("", label="Negative prompt (with guidance)", max_lines=1, elem_id="negative",
                                          placeholder="e.g. a blue square: steer away from it")
            with gr.Column(scale=3, min_width=560):
                frame_view = gr.HTML("<div class='fv-caption'>Key frames first, then the in-between frames.</div>",
                                     elem_id="view", min_height=330)
                frame = gr.Slider(0, 1, value=0, step=1, label="Step through the finished video's frames",
                                  interactive=False, elem_id="frame")
                strip = gr.HTML("", elem_id="strip")
                with gr.Row():
                    video = gr.Video(label="Video (MP4)", autoplay=True, loop=True, height=260, elem_id="video")
                    with gr.Column(min_width=200):
                        stats = gr.Markdown(label="Status and stats", elem_id="stats", min_height=60)
                        gif = gr.DownloadButton("Download GIF", interactive=False, elem_id="gif")
                        gr.Markdown(f"Model `{name}`: {config.image_size}×{config.image_size} px frames, "
                                    f"{config.grid}×{config.grid} tokens each; recurrent step: **{step}**.",
                                    elem_id="model-info")

        settings = [key_frames, interp_frames, inherit_ratio, seed]
        sampling = [temperature, top_k, top_p, guidance, negative, length]
        gen = gr.on([run_btn.click, prompt.submit], generate,
                    inputs=[prompt, first_frame, *settings, randomize, *sampling],
                    outputs=[frame_view, strip, stats, seed, video, gif, frame, cont_btn],
                    api_name="generate", api_description=mcp_description(vocabulary, config),
                    concurrency_limit=GENERATE_CONCURRENCY, trigger_mode="always_last", show_progress="hidden",
                    preprocess=False)  # raw values: lib.Settings.check is the one judge of every field
        cont = gr.on([cont_btn.click, next_prompt.submit], continue_video,
                     inputs=[next_prompt, clip, *settings, *sampling],
                     outputs=[frame_view, strip, stats, video, gif, frame, cont_btn],
                     api_name="continue", concurrency_limit=1, trigger_mode="always_last", show_progress="hidden",
                     preprocess=False)
        stop_btn.click(None, None, None, cancels=[gen, cont]).then(
            stopped, None, [frame_view, strip, stats, video, gif, frame, cont_btn], api_visibility="private",
            show_progress="hidden")
        frame.change(show_frame, [frame], [frame_view, strip], api_name="frame_view",
                     concurrency_limit=4, show_progress="hidden", preprocess=False)
        demo.unload(forget)
    demo.queue(max_size=16, default_concurrency_limit=1)
    # `launch(warm=True)`: the default video (the sliders' values, the model's sampling) through the app's own API at
    # start, so that the first click meets no shape the process has not run yet (a smaller warm-up left the first
    # default click at 1.4-1.5x a warm one, `tests/app_speed.py`)
    demo.warm_request = None if problem else (examples[0], None, key_frames.value, interp_frames.value,
                                              inherit_ratio.value, 0, False, d.temperature, default_top_k,
                                              default_top_p, d.guidance_scale, "", lib.LENGTHS[0])
    return demo


def mcp_available() -> bool:
    try:
        import mcp  # noqa: F401
        return True
    except ImportError:
        return False


def launch(demo: gr.Blocks, warm: bool = False, **kwargs):
    """Serve on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT (default 127.0.0.1:7860), with /generate as an MCP
    tool at /gradio_api/mcp/ when the `mcp` package (gradio[mcp]) is installed ($FLASHVIDEO_MCP=0: off).
    warm=True (`python app.py`): one warm-up request (`warm_click`) before serving users."""
    kwargs.setdefault("server_name", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    kwargs.setdefault("server_port", int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    if "mcp_server" not in kwargs:
        wanted = os.environ.get("FLASHVIDEO_MCP", "1") != "0"
        kwargs["mcp_server"] = wanted and mcp_available()
        if wanted and not kwargs["mcp_server"]:
            _setup_logging()
            log.warning("MCP server off: the `mcp` package is not installed (pip install 'gradio[mcp]')")
    if not warm or not getattr(demo, "warm_request", None):
        return demo.launch(**LAUNCH_KWARGS, css=CSS, **kwargs)
    block = not kwargs.pop("prevent_thread_lock", False)
    served = demo.launch(**LAUNCH_KWARGS, css=CSS, prevent_thread_lock=True, **kwargs)
    warm_click(served[1], demo.warm_request)
    if block:
        demo.block_thread()
    return served


def warm_click(url: str, request: tuple) -> None:
    """The default Generate through the app's own HTTP API right after start. Gradio's request path has one-time
    costs of its own (its first job, first outputs and files: the first click after start took several times a
    warm click's time to its first frame, while a new client on a warm server did not); this pays them before
    any user clicks. A failure is logged and the app serves anyway."""
    import time

    from gradio_client import Client

    t0 = time.perf_counter()
    try:
        Client(url, verbose=False, download_files=False, analytics_enabled=False,
               httpx_kwargs={"trust_env": False}).predict(*request, api_name="/generate")  # local: no proxy
        log.info("warm-up request done in %.1f s", time.perf_counter() - t0)
    except Exception as e:
        log.warning("warm-up request failed (the app serves anyway): %s", str(e)[:200])


if __name__ == "__main__":
    _setup_logging()
    lib.build_step_at_start()  # once per CPU type and weights: before serving, never on a request
    launch(build_demo(), warm=True)
