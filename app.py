"""FlashVideo demo: a thin Gradio shell over FlashVideoPipeline (all logic: flashvideo/demo.py).

    python app.py                                   # http://127.0.0.1:7860, model checkpoints/shapes
    FLASHVIDEO_MODEL=org/name python app.py         # a Hub repo id or another checkpoint folder

Frames stream in as they are decoded: the key frames first, then the frames between every pair of
key frames (all pairs in one batch). The region view shows each in-between frame's token grid:
which tokens differ between its key frames, which are unstable, which were inherited (copied
instead of sampled) and which were generated although stable.

Hostile requests (issue 9): every value of /generate reaches our checks before Gradio's (the event
runs with preprocess=False, and `FlashVideoBlocks.preprocess_data` screens the first-frame payload
before Gradio touches it), so a refusal is always one of flashvideo.demo's messages: it names the
field and what is allowed, and never a server path. The first frame is read only from a file that
Gradio's upload route received; PIL's pixel limit is set at start-up. A refused request logs one
line; a real failure logs its traceback once. Generated videos are written into Gradio's cache
(stored once) and the cache is pruned to CACHE_MAX_BYTES, oldest files first.
"""
import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from flashvideo import demo as lib
from flashvideo.config import FlashVideoConfig
from flashvideo.data import shapes

lib.limit_image_decoding()  # at start-up: no image of more than lib.MAX_UPLOAD_PIXELS is decoded in this process

# show_error=False: an unexpected exception inside Gradio never shows its text (which may hold a server path);
# our own refusals are gr.Error and are always shown.
LAUNCH_KWARGS = dict(show_error=False, max_file_size="5mb")
GENERATE_INPUTS = ("prompt", "first frame", "key frames", "interpolated frames", "inheritable-token ratio", "seed",
                   "randomise seed", "temperature", "top-k")
log = logging.getLogger("flashvideo.app")
DESCRIPTION = """# FlashVideo: text to video with a RetNet
Key frames are decoded first, each after the prompt and its **serial-number** token; then the frames
between every two key frames are **interpolated**, all pairs in one batch. Tokens that are stable
between two key frames can be **inherited** (copied, not sampled): ρ sets how many."""
CSS = """
.region-view img, .live-view img, .strip img { image-rendering: pixelated; }
#warning { border: 1px solid #f59e0b; border-radius: 8px; padding: 4px 12px; }
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
    """A user's mistake: one log line, and the message (no traceback anywhere)."""
    message = " ".join(str(message).split())
    log.info("refused /%s: %s", api, message[:300])
    return gr.Error(message, print_exception=False)


def upload_folder(blocks: gr.Blocks) -> str:
    app = getattr(blocks, "server_app", None)
    return getattr(app, "uploaded_file_dir", None) or gr.utils.get_upload_folder()


def uploaded_files(blocks: gr.Blocks):
    """The paths Gradio's upload route received (None if this Gradio does not track them: then any
    file inside the upload folder counts)."""
    return getattr(blocks, "upload_file_set", None)


class FlashVideoBlocks(gr.Blocks):
    """gr.Blocks whose /generate first-frame payload is screened before Gradio touches it.

    Gradio opens, copies, downloads or decodes a file payload before the event function runs: a raw
    `{"path": ...}` without `meta` reaches PIL unchecked, a `data:` URL is decoded whatever its size,
    and a bare value gets a pydantic dump. Here the payload must name a file Gradio's upload route
    received (`lib.upload_path`), and is replaced by a clean payload of that one path; anything else
    is refused with our message. The other values pass untouched to the event (preprocess=False),
    which checks them all (`lib.Settings.check`)."""

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        if getattr(block_fn, "api_name", None) == "generate":
            if not isinstance(inputs, list) or len(inputs) != len(GENERATE_INPUTS):
                n = len(inputs) if isinstance(inputs, list) else 0
                raise refuse("generate", f"request must hold {len(GENERATE_INPUTS)} values "
                                         f"({', '.join(GENERATE_INPUTS)}), got {n}")
            try:
                path = lib.upload_path(inputs[1], upload_folder(self), uploaded_files(self))
            except ValueError as e:
                raise refuse("generate", str(e)) from None
            inputs = list(inputs)
            inputs[1] = None if path is None else {"path": path, "meta": {"_type": "gradio.FileData"}}
        return await super().preprocess_data(block_fn, inputs, state, explicit_call)

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


def build_demo(model_id=None) -> gr.Blocks:
    """The app for one model (a folder or Hub repo id; None: $FLASHVIDEO_MODEL or checkpoints/shapes).
    If the model cannot be loaded yet, the app still builds and says why (a failed load is cached:
    see `lib.load_pipeline`)."""
    _setup_logging()
    try:
        pipe = lib.load_pipeline(model_id)
        config, vocabulary, problem = pipe.config, pipe.tokenizer.vocabulary, None
    except Exception as e:  # missing default checkpoint, bad folder, Hub unreachable: say so, keep serving
        config, problem = FlashVideoConfig(), lib.missing_model_message(model_id, e)
        log.warning("model not loaded: %s", " ".join(problem.split())[:300])
        vocabulary = shapes.vocabulary() if lib.model_id(model_id) is None else []
    examples, name = lib.example_prompts(vocabulary), lib.model_name(model_id)
    outputs_root = os.path.join(gr.utils.get_upload_folder(), "flashvideo")  # inside Gradio's cache: served as is

    def generate(prompt, first_frame, key_frames, interp_frames, inherit_ratio, seed, randomize,
                 temperature, top_k, progress=gr.Progress()):
        try:
            pipe = lib.load_pipeline(model_id)
        except Exception as e:
            raise refuse("generate", lib.missing_model_message(model_id, e)) from None
        try:
            path = lib.upload_path(first_frame, upload_folder(demo), uploaded_files(demo))
            s = lib.Settings.check(pipe, prompt, key_frames, interp_frames, inherit_ratio, seed, randomize,
                                   path, temperature, top_k)
        except ValueError as e:  # the checks' messages are written for users
            raise refuse("generate", str(e)) from None
        lib.maybe_prune_cache(gr.utils.get_upload_folder(), keep=[path] if path else ())
        try:
            for up in lib.run(pipe, s, out_root=outputs_root, model=name):
                if isinstance(up, lib.FrameUpdate):  # the frame slider waits for the finished video
                    progress((up.done, up.total), desc=up.status, unit="frames")
                    yield (up.live, up.annotated, up.info, up.strip, up.status, s.seed, gr.skip(), gr.skip(),
                           gr.Slider(interactive=False) if up.done == 1 else gr.skip(), gr.skip())
                else:  # finished: show the first in-between frame (or the first frame)
                    index = min(1, s.n_frames - 1) if s.interp_frames else 0
                    yield (*up.frame_view(index), up.markdown, s.seed, str(up.mp4),
                           gr.DownloadButton(value=str(up.gif), interactive=True),
                           gr.Slider(minimum=0, maximum=s.n_frames - 1, value=index, interactive=True), up)
        except Exception as e:  # not the user's doing: the traceback goes to the log, once
            log.exception("/generate failed")
            raise gr.Error(f"generating the video failed on the server ({type(e).__name__}: "
                           f"{lib.redact_paths(str(e))[:200]}); it is logged. Try again, or change the settings.",
                           print_exception=False) from None

    def show_frame(result, index):
        if result is None:
            raise refuse("frame_view", "frame: generate a video first, then step through its frames")
        try:
            return result.frame_view(index)
        except ValueError as e:
            raise refuse("frame_view", str(e)) from None

    with FlashVideoBlocks(title="FlashVideo", delete_cache=(600, 3600)) as demo:
        gr.Markdown(DESCRIPTION)
        if problem:
            gr.Markdown(f"⚠️ {problem}", elem_id="warning")
        result = gr.State(None)
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
                inherit_ratio = gr.Slider(0, 1, value=0.5, step=0.05, label="Inheritable-token ratio ρ",
                                          info="share of stable tokens copied from the key frame instead of sampled")
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=lib.MAX_SEED, min_width=120)
                    randomize = gr.Checkbox(True, label="Randomise seed", min_width=120)
                with gr.Accordion("First frame (optional)", open=False):
                    first_frame = gr.Image(label="Predict from this image instead of text alone", type="filepath",
                                           image_mode=None, sources=["upload", "clipboard"], height=180)
                with gr.Accordion("Advanced", open=False):
                    temperature = gr.Slider(0, lib.APP_MAX_TEMPERATURE, value=1.0, step=0.05,
                                            label=f"Temperature (0 = greedy, else at least {lib.MIN_TEMPERATURE:g})")
                    top_k = gr.Slider(0, config.n_codes, value=0, step=1, label="Top-k (0 = off)")
            with gr.Column(scale=3, min_width=480):
                with gr.Row():
                    live = gr.Image(label="Frame: live while decoding", format="png", height=300,
                                    interactive=False, elem_id="live", elem_classes="live-view")
                    regions = gr.AnnotatedImage(label="Token regions", color_map=lib.COLOR_MAP, format="png",
                                                height=300, elem_id="regions", elem_classes="region-view")
                frame_info = gr.Markdown("Key frames first, then the in-between frames.", label="Frame info",
                                         elem_id="frame-info")
                frame = gr.Slider(0, 1, value=0, step=1, label="Step through the finished video's frames",
                                  interactive=False, elem_id="frame")
                strip = gr.Image(label="All frames in time order (blue: key frames, yellow: newest or selected)",
                                 format="png", height=110, interactive=False, elem_id="strip", elem_classes="strip")
                with gr.Row():
                    video = gr.Video(label="Video (MP4)", autoplay=True, loop=True, height=260, elem_id="video")
                    with gr.Column(min_width=200):
                        stats = gr.Markdown(label="Status and stats", elem_id="stats", min_height=60)
                        gif = gr.DownloadButton("Download GIF", interactive=False, elem_id="gif")
                        gr.Markdown(f"Model `{name}`: {config.image_size}×{config.image_size} px frames, "
                                    f"{config.grid}×{config.grid} tokens each.")

        gen = gr.on([run_btn.click, prompt.submit], generate,
                    inputs=[prompt, first_frame, key_frames, interp_frames, inherit_ratio, seed, randomize,
                            temperature, top_k],
                    outputs=[live, regions, frame_info, strip, stats, seed, video, gif, frame, result],
                    api_name="generate", concurrency_limit=1, trigger_mode="once", show_progress_on=[stats],
                    preprocess=False)  # raw values: lib.Settings.check is the one judge of every field
        stop_btn.click(None, None, None, cancels=[gen])
        frame.change(show_frame, [result, frame], [live, regions, frame_info, strip], api_name="frame_view",
                     concurrency_limit=4, show_progress="hidden", preprocess=False)
    demo.queue(max_size=16, default_concurrency_limit=1)
    return demo


def launch(demo: gr.Blocks, **kwargs):
    """Serve on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT (default 127.0.0.1:7860)."""
    kwargs.setdefault("server_name", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    kwargs.setdefault("server_port", int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    return demo.launch(**LAUNCH_KWARGS, css=CSS, **kwargs)


if __name__ == "__main__":
    launch(build_demo())
