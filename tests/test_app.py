"""The Gradio app, served in process against a tiny checkpoint and driven through gradio_client:
streaming, the finished video, token-region views, stats, bad input, and the logic in flashvideo.demo."""
import importlib.util
import os
import re
import socket
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))

import httpx
import imageio.v3 as iio
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from flashvideo import app_session, app_view as view, demo as lib
from flashvideo.data import shapes

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):Warning")  # gradio's pandas use
ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a red circle moves right"
LABELS = [label for label, _ in lib.REGION_STYLE.values()]
# generate's inputs: prompt, first_frame, key_frames, interp_frames, inherit_ratio, seed, randomize, temperature, top_k,
# and optionally top_p, guidance_scale, negative_prompt, length
# generate's outputs: view (frame + regions + caption, one HTML block), strip, stats, seed, video, gif, frame, continue
VIEW, STRIP, STATS, SEED, VIDEO, GIF, FRAME = range(7)  # (the Continue button is not an API output)


def load_app():
    spec = importlib.util.spec_from_file_location("flashvideo_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(demo):
    """Launch in process on a free port; (url, client). The client leaves files on the server (paths
    are local anyway), which keeps every streamed update cheap."""
    _, url, _ = load_app().launch(demo, prevent_thread_lock=True, server_port=free_port(), quiet=True)
    return url, Client(url, analytics_enabled=False, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def checkpoint(tiny_pipe, tmp_path_factory):
    return tiny_pipe.save_pretrained(tmp_path_factory.mktemp("app") / "tiny")


@pytest.fixture(scope="module")
def served(checkpoint):
    """The app as `python app.py` builds it, with FLASHVIDEO_MODEL pointing at the tiny checkpoint."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(lib.MODEL_ENV, str(checkpoint))
        demo = load_app().build_demo()
        url, client = serve(demo)
        yield demo, url, client
        demo.close()


def generate(client, prompt=PROMPT, first_frame=None, key_frames=3, interp_frames=2, inherit_ratio=0.5, seed=5,
             randomize=False, temperature=1.0, top_k=0):
    job = client.submit(prompt, first_frame, key_frames, interp_frames, inherit_ratio, seed, randomize,
                        temperature, top_k, api_name="/generate")
    updates = list(job)
    job.result()  # raises the app's error, if any
    return updates, job


def read(file):
    return np.asarray(Image.open(file["path"]))


def shown(update_view):
    """(frame, region map or None, caption text) of a view block."""
    images = view.images_in(update_view)
    caption = re.sub(r"<[^>]+>", "", update_view.split('id="fv-caption">')[1])
    return images[0], (images[2] if len(images) > 2 else None), caption


def live(updates, events):
    """[(update, event, frames done)] for the streamed updates (all but the finished video's): each shows the newest
    frame decoded by then, so the shown frames are the events in order, skipping only views of frames that came
    together (they are in the filmstrip and the video), and the last frame is always shown."""
    order = [ev.index for ev in events]
    shown_at = [order.index(int(re.search(r"Frame (\d+) ", shown(u[VIEW])[2]).group(1))) for u in updates[:-1]]
    assert shown_at == sorted(set(shown_at)) and shown_at[-1] == len(events) - 1
    return [(u, events[i], i + 1) for u, i in zip(updates, shown_at)]


def test_generate_streams_frames_as_they_come_then_the_video(served, tiny_pipe):
    demo, url, client = served
    K, n = 3, 2
    updates, job = generate(client, key_frames=K, interp_frames=n, seed=5)
    events = list(tiny_pipe.stream(PROMPT, key_frames=K, interp_frames=n, inherit_ratio=0.5, seed=5))
    T = K + (K - 1) * n
    assert 2 <= len(updates) <= T + 1                 # at most one update per frame, then the finished video
    for up, ev, done in live(updates, events):
        assert f"{done}/{T}" in up[STATS] and up[SEED] == 5
        frame, regions, caption = shown(up[VIEW])     # the frame, its regions and its caption in one block
        assert f"Frame {ev.index} " in caption
        assert np.array_equal(frame, ev.image)        # sent at its own size: the browser enlarges it
        if ev.kind == "key":
            assert "key frame" in caption and regions is None
            continue
        expected = view.region_map(ev.regions)       # one (grid, grid) RGBA map of the regions
        assert np.array_equal(regions, expected)
        for name in lib.REGION_STYLE:
            assert f"{lib.REGION_STYLE[name][0]} {int((ev.regions == name).sum())}" in caption
    first = updates[0]                                # a new run clears the last video and the slider
    assert first[VIDEO] is None and first[FRAME]["interactive"] is False and first[GIF]["interactive"] is False

    final = updates[-1]
    assert final == tuple(job.result())
    assert "time to first frame" in final[STATS] and "frames/s" in final[STATS] and "step `eager`" in final[STATS]
    assert "sequential model calls" in final[STATS]
    assert final[FRAME]["maximum"] == T - 1 and final[FRAME]["interactive"]
    mp4 = httpx.get(final[VIDEO]["url"], timeout=30)  # served over HTTP, and playable
    assert mp4.status_code == 200
    scale = app_session.Session(tiny_pipe, "", None).scale
    frames = iio.imread(mp4.content, index=None, extension=".mp4")
    assert frames.shape == (T, 16 * scale, 16 * scale, 3)
    gif = iio.imread(httpx.get(final[GIF]["value"]["url"], timeout=30).content, index=None, extension=".gif")
    by_time = np.stack([ev.image for ev in sorted(events, key=lambda ev: ev.index)])
    assert np.array_equal(gif[..., :3], by_time.repeat(scale, 1).repeat(scale, 2))   # written as frames came, in time order


def test_frame_slider_steps_through_the_finished_video(served, tiny_pipe):
    _, _, client = served
    generate(client, key_frames=2, interp_frames=2, seed=1)  # the session keeps the finished video
    events = {ev.index: ev for ev in tiny_pipe.stream(PROMPT, key_frames=2, interp_frames=2, inherit_ratio=0.5,
                                                       seed=1)}
    html, strip = client.predict(2, api_name="/frame_view")
    frame, regions, caption = shown(html)
    assert np.array_equal(frame, events[2].image) and regions is not None
    assert "interpolated" in caption and "stepping through" in html and "Live" not in html
    html, strip = client.predict(3, api_name="/frame_view")
    assert "key frame" in shown(html)[2] and shown(html)[1] is None


def test_continue_extends_the_video_with_a_new_prompt(served, tiny_pipe):
    """Continue carries the session's video on from its stream state under a new prompt; the strip marks
    where the prompt changed; the stream is made once and then reused (never re-decoding the past)."""
    _, _, client = served
    generate(client, key_frames=2, interp_frames=1, seed=2)             # frames 0..2
    job = client.submit("a blue square grows", None, 2, 1, 0.5, 2, 1.0, 0, 1.0, 1.0, "", "K key frames",
                        api_name="/continue")
    updates = list(job)
    final = job.result()
    indices = [int(re.search(r"Frame (\d+)", shown(u[0])[2]).group(1)) for u in updates[:-1]]
    assert indices == [3, 4, 5, 6]                    # 2 more key frames (4, 6) and the frames before them
    assert "from frame 3: 'a blue square grows'" in final[1] and "prompt changed 1×" in final[2]
    assert final[5]["maximum"] == 6
    again = client.submit("a red circle grows", None, 2, 1, 0.5, 2, 1.0, 0, 1.0, 1.0, "", "K key frames",
                          api_name="/continue")
    assert len(list(again)) == 4 + 1 and "frames 0–10" in again.result()[2]


def test_continue_an_uploaded_clip(served, tmp_path):
    _, _, client = served
    gif = tmp_path / "clip.gif"
    frames = [np.full((20, 20, 3), 40 * i, np.uint8) for i in range(3)]
    iio.imwrite(gif, np.stack(frames), extension=".gif", duration=100, loop=0)
    job = client.submit(PROMPT, [handle_file(gif)], 2, 1, 0.5, 0, 1.0, 0, 1.0, 1.0, "", "K key frames",
                        api_name="/continue")
    updates = list(job)
    captions = [shown(u[0])[2] for u in updates[:-1]]
    assert sum("given" in c for c in captions) == 3 and len(updates) == 3 + 4 + 1
    long_clip = tmp_path / "long.gif"
    ramp = np.arange(app_session.MAX_CLIP_FRAMES + 1, dtype=np.uint8)[:, None, None, None] * 7
    iio.imwrite(long_clip, np.broadcast_to(ramp, (len(ramp), 8, 8, 3)).copy(), extension=".gif",
                duration=100, loop=0)
    with pytest.raises(AppError, match=f"clip: more than {app_session.MAX_CLIP_FRAMES} frames"):
        client.predict(PROMPT, [handle_file(long_clip)], 2, 1, 0.5, 0, 1.0, 0, 1.0, 1.0, "", "K key frames",
                       api_name="/continue")
    text = tmp_path / "notes.txt"
    text.write_text("no")
    with pytest.raises(AppError, match="clip is not a readable image"):
        client.predict(PROMPT, [handle_file(text)], 2, 1, 0.5, 0, 1.0, 0, 1.0, 1.0, "", "K key frames",
                       api_name="/continue")
    with pytest.raises(AppError, match="clip must be an uploaded file or nothing, got text"):
        client.predict(PROMPT, ["/etc/passwd"], 2, 1, 0.5, 0, 1.0, 0,
                       1.0, 1.0, "", "K key frames", api_name="/continue")


def test_advanced_settings_are_checked_and_used(served, tiny_pipe):
    _, _, client = served
    job = client.submit(PROMPT, None, 2, 1, 0.5, 4, False, 0.8, 5, 0.9, 2.0, "a blue square", "K key frames",
                        api_name="/generate")
    updates = list(job)
    job.result()
    expected = list(tiny_pipe.stream(PROMPT, key_frames=2, interp_frames=1, inherit_ratio=0.5, seed=4,
                                     temperature=0.8, top_k=5, top_p=0.9, guidance_scale=2.0,
                                     negative_prompt="a blue square"))
    for up, ev, _ in live(updates, expected):
        assert np.array_equal(shown(up[VIEW])[0], ev.image)
    for args, message in [((0.0, 1.0, ""), "top-p must be a number in (0, 1]"),
                          ((1.0, 11.0, ""), "guidance scale must be a number in [0, 10]"),
                          ((1.0, 1.0, "a blue square"), "negative prompt only acts through guidance"),
                          ((1.0, 2.0, "a dog"), "negative prompt: unknown words ['dog']"),
                          ((1.0, 1.0, 5), "negative prompt must be text")]:
        with pytest.raises(AppError, match=re.escape(message)):
            client.predict(PROMPT, None, 2, 1, 0.5, 4, False, 1.0, 0, *args, "K key frames", api_name="/generate")
    with pytest.raises(AppError, match="length must be one of"):
        client.predict(PROMPT, None, 2, 1, 0.5, 4, False, 1.0, 0, 1.0, 1.0, "", "forever", api_name="/generate")


def test_seed_randomised_and_reported(served):
    _, _, client = served
    updates, _ = generate(client, key_frames=2, interp_frames=0, seed=0, randomize=True)
    seeds = {u[SEED] for u in updates}
    assert len(seeds) == 1
    seed = seeds.pop()
    assert isinstance(seed, int) and 0 <= seed <= lib.MAX_SEED and f"seed {seed}" in updates[-1][STATS]
    again, _ = generate(client, key_frames=2, interp_frames=0, seed=seed)  # the shown seed reproduces it
    assert np.array_equal(shown(updates[-2][VIEW])[0], shown(again[-2][VIEW])[0])


def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(served, tmp_path):
    _, url, client = served
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    huge = tmp_path / "huge.png"
    Image.new("RGB", (lib.MAX_UPLOAD_SIDE + 1, 8)).save(huge)
    cases = [  # every refusal is ours: it names the field and what is allowed
        (dict(prompt="   "), "prompt is empty"),
        (dict(prompt="a dog moves right"), "unknown words ['dog']"),
        (dict(key_frames=99), "key frames must be a whole number in 2..5, got 99"),
        (dict(interp_frames=-1), "interpolated frames must be a whole number in 0..4, got -1"),
        (dict(key_frames="three"), "key frames must be a whole number in 2..5, got text"),
        (dict(interp_frames=1.5), "interpolated frames must be a whole number"),
        (dict(inherit_ratio=None), "inheritable-token ratio must be a number in [0, 1], got nothing"),
        (dict(seed=1.5), "seed must be a whole number in 0..2147483647, got 1.5"),
        (dict(randomize="false"), "randomise seed must be true or false, got text"),
        (dict(temperature=1e-300), "temperature must be 0 (greedy) or a number in [0.01, 2]"),
        (dict(top_k=17), "top-k must be a whole number in 0..16 (0 = off), got 17"),
        (dict(first_frame=handle_file(text_file)), "first frame is not a readable image"),
        (dict(first_frame=handle_file(huge)), f"the largest allowed is {lib.MAX_UPLOAD_SIDE}×{lib.MAX_UPLOAD_SIDE} px"),
        (dict(first_frame="/etc/passwd"), "first frame must be an uploaded file or nothing, got text"),
        (dict(first_frame={"path": str(text_file)}), "first frame: that file was not uploaded to this app"),
    ]
    for kwargs, message in cases:
        with pytest.raises(AppError) as err:
            generate(client, **{"key_frames": 2, "interp_frames": 1, **kwargs})
        assert message in str(err.value), (kwargs, str(err.value))
    assert "known words: red, blue" in str(pytest.raises(AppError, generate, client, prompt="a dog").value)
    big = tmp_path / "big.png"                        # uploads over the size limit are refused
    big.write_bytes(os.urandom(6 * 2**20))
    with big.open("rb") as f:
        response = httpx.post(url.rstrip("/") + "/gradio_api/upload", files={"files": ("big.png", f, "image/png")})
    assert response.status_code == 413 and "maximum allowed size" in response.text
    updates, _ = generate(client, key_frames=2, interp_frames=1)  # still serving
    assert "3/3" in updates[-2][STATS] and "frames/s" in updates[-1][STATS]


def test_first_frame_upload_is_used(served, tmp_path):
    _, _, client = served
    path = tmp_path / "first.png"
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(path)
    updates, _ = generate(client, first_frame=handle_file(path), key_frames=2, interp_frames=1)
    assert "3/3" in updates[-2][STATS]
    assert "the given first frame" in shown(client.predict(0, api_name="/frame_view")[0])[2]


def test_two_requests_in_a_row_both_finish(served):
    _, _, client = served
    jobs = [client.submit(PROMPT, None, 2, k, 0.5, 0, False, 1.0, 0, api_name="/generate") for k in (1, 2)]
    for job, T in zip(jobs, (3, 4)):
        assert f"{T}/{T}" in list(job)[-2][STATS]


def test_stop_cancels_between_frames(served, checkpoint, monkeypatch):
    """Cancelling (what the Stop button does) closes the generator, and the decoding stops at its next frame."""
    _, _, client = served
    pipe = lib.load_pipeline(checkpoint)
    produced, original = [], pipe.tokenizer.decode_frames

    def slow_decode(codes):  # every frame the run decodes passes here
        produced.append(len(produced))
        time.sleep(0.3)
        return original(codes)

    monkeypatch.setattr(pipe.tokenizer, "decode_frames", slow_decode)
    job = client.submit(PROMPT, None, 5, 4, 0.5, 0, False, 1.0, 0, api_name="/generate")  # 21 frames
    while len(job.outputs()) < 2:
        time.sleep(0.05)
    job.cancel()
    time.sleep(1.0)
    assert 2 <= len(produced) < 8


def test_sliders_take_their_ranges_from_the_model(served, tiny_pipe):
    demo, _, _ = served
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert by_id["key-frames"].maximum == tiny_pipe.config.max_key_frames
    assert by_id["interp-frames"].maximum == tiny_pipe.config.max_interp_frames
    deps = demo.config["dependencies"]
    gen = next(d for d in deps if d["api_name"] == "generate")
    assert demo.fns[gen["id"]].concurrency_limit == load_app().GENERATE_CONCURRENCY > 1   # runs decoded together
    assert any(gen["id"] in d["cancels"] for d in deps)
    assert demo._queue.max_size == 16
    assert demo.config["analytics_enabled"] is False


def test_app_builds_and_explains_when_the_default_checkpoint_is_missing(monkeypatch, tmp_path):
    import flashvideo.pipeline as pipeline

    monkeypatch.delenv(lib.MODEL_ENV, raising=False)
    monkeypatch.setattr(pipeline, "DEFAULT_CHECKPOINT", tmp_path / "shapes")
    monkeypatch.setattr(lib, "DEFAULT_CHECKPOINT", tmp_path / "shapes")
    monkeypatch.setattr(pipeline, "_shipped", lambda: None)      # neither the repo's nor a packaged copy
    lib._load.cache_clear()
    lib._failures.clear()
    demo = load_app().build_demo()
    texts = " ".join(str(getattr(b, "value", "")) for b in demo.blocks.values())
    assert "being trained" in texts and "FLASHVIDEO_MODEL" in texts
    url, client = serve(demo)
    try:
        with pytest.raises(AppError, match="being trained"):
            generate(client)
    finally:
        demo.close()


# ------------------------------------------------------------------------ flashvideo.demo on its own

def test_loader_is_cached_per_model_and_reads_the_environment(checkpoint, monkeypatch):
    assert lib.load_pipeline(checkpoint) is lib.load_pipeline(str(checkpoint))
    monkeypatch.setenv(lib.MODEL_ENV, str(checkpoint))
    assert lib.load_pipeline() is lib.load_pipeline(checkpoint)
    monkeypatch.setenv(lib.MODEL_ENV, "org/some-model")
    assert lib.model_id() == "org/some-model" and lib.model_name() == "org/some-model"
    monkeypatch.delenv(lib.MODEL_ENV)
    assert lib.model_id() is None and lib.model_name() == "checkpoints/shapes"


def test_example_prompts_come_from_the_vocabulary(tiny_pipe):
    full = lib.example_prompts(shapes.vocabulary())
    assert full[:3] == ["a red circle moves right", "a blue square grows", "a yellow triangle moves down"]
    tiny = lib.example_prompts(tiny_pipe.tokenizer.vocabulary)
    assert "a red circle moves right" in tiny and len(tiny) > 2
    for prompt in tiny:
        tiny_pipe.tokenizer.encode_text(prompt)      # every example is sayable
    assert lib.example_prompts(["apply", "eye", "makeup", "basketball"]) == []


def test_region_map_colours_each_token_cell():
    regions = np.array([["different", "unstable"], ["inheritable", "stable"]], dtype=object)
    rgba = view.region_map(regions)
    assert rgba.shape == (2, 2, 4) and (rgba[..., 3] == view.REGION_ALPHA).all()
    colours = {name: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for name, (_, c) in lib.REGION_STYLE.items()}
    assert tuple(rgba[0, 0, :3]) == colours["different"] and tuple(rgba[1, 1, :3]) == colours["stable"]
    ids = np.array([[0, 1], [3, 2]])                  # ids into flashvideo.regions.REGIONS work too
    assert np.array_equal(view.region_map(ids), rgba)


def test_strip_is_bounded_and_costs_one_thumbnail_per_frame():
    strip = view.Strip(16, frames=32, cols=8)
    frame = np.full((16, 16, 3), 200, np.uint8)
    shapes_seen = set()
    for i in range(1000):
        strip.put(i, frame, "key" if i % 4 == 0 else "interpolated", changed=(i == 500))
        shapes_seen.add(strip.image(i).shape)
    assert len(shapes_seen) <= 4 and max(s[0] for s in shapes_seen) == strip.canvas.shape[0]  # bounded
    assert strip.first == 1000 - 32 + (1000 % 8 and 8 - 1000 % 8)
    html = strip.html(999, [(0, "a"), (500, "b")], 999)
    assert f"frames {strip.first}–999" in html and "from frame 500: 'b'" in html


def test_steps_wording():
    assert "4.00× as many" in view.steps_line(100, 400)
    assert "as many as token by token" in view.steps_line(448, 448)


def test_rho0_step_count_matches_the_pipeline(tiny_pipe, monkeypatch):
    monkeypatch.setattr(tiny_pipe, "draft_len", 0)  # the baseline is token by token
    for K, n, batch, lead in [(3, 2, True, 0), (4, 1, False, 0), (2, 0, True, 0), (3, 2, True, 2)]:
        ev = list(tiny_pipe.stream(PROMPT, key_frames=K, interp_frames=n, inherit_ratio=0.0, seed=0,
                                   batch_pairs=batch, sampling=replace(tiny_pipe.default_sampling, lead_in=lead)))[-1]
        assert ev.stats["total_steps"] == view.rho0_steps(tiny_pipe.config.frame_tokens, K, n, batch_pairs=batch,
                                                          lead_in=lead)
    image = np.zeros((16, 16, 3), np.uint8)
    ev = list(tiny_pipe.stream(PROMPT, key_frames=3, interp_frames=1, inherit_ratio=0.0, first_frame=image))[-1]
    assert ev.stats["total_steps"] == view.rho0_steps(tiny_pipe.config.frame_tokens, 3, 1, first_frame=True)


def test_settings_check_names_the_bad_value(tiny_pipe):
    ok = lib.Settings.check(tiny_pipe, " a red circle ", 2.0, 1, 0.5, seed=3.0, top_k=0)
    assert (ok.key_frames, ok.seed, ok.top_k, ok.prompt) == (2, 3, None, "a red circle")
    for kwargs, message in [(dict(key_frames=True), "key frames"), (dict(inherit_ratio=2), "ratio"),
                            (dict(seed=-1), "seed"), (dict(top_k=10**6), "top-k"),
                            (dict(prompt="x" * 400), "characters"), (dict(temperature="hot"), "temperature")]:
        with pytest.raises(ValueError, match=message):
            lib.Settings.check(tiny_pipe, **{"prompt": PROMPT, **kwargs})


def test_queue_full_says_how_busy_and_to_try_again(served):
    demo, url, _ = served
    queue = demo._queue
    size = queue.max_size
    queue.max_size = 0                                # every join now finds the queue full
    try:
        r = httpx.post(url.rstrip("/") + "/gradio_api/call/generate",
                       json={"data": [PROMPT, None, 2, 0, 0.5, 0, False, 1.0, 0]}, timeout=30)
    finally:
        queue.max_size = size
    assert r.status_code == 503
    detail = r.json()["detail"]
    assert "queue is full" in detail and "0 requests are waiting" in detail and "try again" in detail


def test_model_load_failures_are_cached_until_the_folder_changes(checkpoint, tmp_path, monkeypatch):
    """A broken checkpoint costs one load, not one per Generate click; fixing it is picked up."""
    import json
    import shutil

    from flashvideo.pipeline import FlashVideoPipeline

    folder = tmp_path / "broken"
    shutil.copytree(checkpoint, folder)
    good = (folder / "config.json").read_text()
    (folder / "config.json").write_text(json.dumps({**json.loads(good), "n_heads": 0}))
    calls = []
    original = FlashVideoPipeline.from_pretrained.__func__

    def counting(cls, path):
        calls.append(path)
        return original(cls, path)

    monkeypatch.setattr(FlashVideoPipeline, "from_pretrained", classmethod(counting))
    for _ in range(3):
        with pytest.raises(ValueError, match="n_heads must be a whole number in 1..256, got 0"):
            lib.load_pipeline(folder)
    assert len(calls) == 1
    message = lib.missing_model_message(folder, ValueError(f"{folder / 'config.json'}: n_heads must be ..."))
    assert str(tmp_path) not in message and "config.json: n_heads" in message   # no server path shown
    (folder / "config.json").write_text(good)           # fixed: the next call loads it
    assert lib.load_pipeline(folder).config.n_heads == 4 and len(calls) == 2


def test_outputs_are_stored_once_and_the_cache_is_bounded(served, tmp_path):
    """The MP4 and GIF are written into Gradio's cache and served from there (no second copy); old runs
    and, past the cap, the oldest cached files are deleted."""
    import gradio as gr

    _, _, client = served
    updates, _ = generate(client, key_frames=2, interp_frames=1, seed=int(time.time()) % 10**6 + 10**6)
    final = updates[-1]
    cache = Path(gr.utils.get_upload_folder()).resolve()
    for path in (final[VIDEO]["path"], final[GIF]["value"]["path"]):
        assert Path(path).resolve().parent.parent == cache / "flashvideo"
    name = Path(final[VIDEO]["path"]).name
    assert [p for p in cache.rglob(name)] == [Path(final[VIDEO]["path"]).resolve()]   # one copy
    root = tmp_path / "out"
    runs = [lib.output_dir(root, max_runs=3) for _ in range(5)]
    assert sorted(p.name for p in root.iterdir()) == sorted(r.name for r in runs[-3:])
    files = tmp_path / "cache"
    files.mkdir()
    for i in range(10):
        (files / f"f{i}").write_bytes(b"x" * 1000)
        os.utime(files / f"f{i}", (i, i))
    assert lib.prune_cache(files, max_bytes=20000) == 0              # under the cap: nothing goes
    assert lib.prune_cache(files, max_bytes=5000, keep=[files / "f0"]) == 6000   # down to 80 %, oldest first
    assert sorted(p.name for p in files.iterdir()) == ["f0", "f7", "f8", "f9"]


def test_upload_path_accepts_only_recorded_uploads(tmp_path):
    real = tmp_path / "real-uploads"
    (real / "abc").mkdir(parents=True)
    folder = tmp_path / "uploads"                      # the upload folder may sit behind a symlink
    folder.symlink_to(real)
    image = folder / "abc" / "x.png"
    Image.new("RGB", (4, 4)).save(image)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    (real / "abc" / "link.png").symlink_to(secret)     # inside the folder, pointing outside
    uploads = {str(image)}
    assert lib.upload_path({"path": str(image)}, folder, uploads) == str(image)
    assert lib.upload_path({"path": str(folder / "abc" / ".." / "abc" / "x.png")}, folder, uploads) == str(image)
    assert lib.upload_path(None, folder, uploads) is None
    for payload, message in [({"path": str(folder / "abc" / "link.png")}, "not uploaded to this app"),
                             ({"path": str(secret)}, "not uploaded to this app"),
                             ({"path": str(image)}, "not uploaded to this app"),      # not recorded (below)
                             ({"url": "data:image/png;base64,AAAA"}, "data: URLs are not accepted"),
                             ({"path": "https://example.com/x.png"}, "URLs and data: URLs are not accepted"),
                             ({"path": str(image), "evil": 1}, "must be an uploaded file or nothing"),
                             ("/etc/passwd", "got text"), (5, "got 5")]:
        with pytest.raises(ValueError, match=re.escape(message)) as e:
            lib.upload_path(payload, folder, uploads if payload != {"path": str(image)} else set())
        assert str(tmp_path) not in str(e.value)


def test_a_long_video_stays_bounded(tiny_pipe, tmp_path, monkeypatch):
    """Until stopped: kept frames, filmstrip, MP4 segments and every update's size stay bounded however
    long the video runs; the MP4 is written while frames arrive; Stop (finish) makes the video so far."""
    monkeypatch.setattr(app_session, "KEEP_FRAMES", 40)
    monkeypatch.setattr(app_session, "SEGMENT_FRAMES", 30)
    monkeypatch.setattr(app_session, "MP4_MAX_FRAMES", 60)
    monkeypatch.setattr(app_session, "STRIP_EVERY_S", 0.0)
    s = lib.Settings.check(tiny_pipe, PROMPT, 2, 1, 0.5, seed=1, length="until stopped")
    session = app_session.Session(tiny_pipe, "tiny", tmp_path)
    sizes, prompts = [], iter(["a blue square grows", "a red circle moves left"])
    run = session.generate(s)
    for i, up in zip(range(400), run):
        sizes.append(len(up.view) + len(up.strip or ""))
        if i in (150, 300):                          # a prompt change mid-stream (what Continue does)
            session.stream.prompt = next(prompts)
        assert len(session.kept) <= 40 and len(session.segments) <= 3
    run.close()                                      # Stop
    done = session.finish()
    assert max(sizes[100:]) <= 1.2 * max(sizes[:100])  # no update grows with the video
    assert session.last >= 399 and done.first == session.last - 39 and done.last == session.last
    assert sum(n for _, _, n in session.segments) <= 60 + 30
    frames = iio.imread(done.mp4, index=None, extension=".mp4")
    assert 30 <= frames.shape[0] <= 90               # the newest segments, joined without re-encoding
    assert len([p for p in Path(session.out).glob("*.mp4")]) <= 5   # older segments deleted
    assert len(session.changes) == 3 and "prompt changed 2×" in done.markdown


def test_the_gif_holds_the_kept_frames_whole_or_stopped(tiny_pipe, tmp_path, monkeypatch):
    """A run's GIF is written while its frames arrive; stopped part-way, the GIF is the frames kept, in time
    order; a new run leaves no half-written GIF behind."""
    monkeypatch.setattr(app_session, "LIVE_EVERY_S", 0.0)  # an update a frame: two updates are part of the video
    s = lib.Settings.check(tiny_pipe, PROMPT, 3, 2, 0.5, seed=2)
    session = app_session.Session(tiny_pipe, "tiny", tmp_path)
    scale = session.scale

    def gif_frames(path):
        return iio.imread(path, index=None, extension=".gif")[..., :3]

    def kept():
        return np.stack([session.kept[i][0] for i in sorted(session.kept)]).repeat(scale, 1).repeat(scale, 2)

    whole = list(session.generate(s))[-1]
    assert np.array_equal(gif_frames(whole.gif), kept()) and len(session.kept) == 7
    run = session.generate(s)
    next(run), next(run)
    run.close()                                      # Stop after two updates
    stopped = session.finish()
    assert np.array_equal(gif_frames(stopped.gif), kept()) and len(session.kept) < 7
    assert not list(tmp_path.rglob("run-*.gif"))    # each live GIF became its video's GIF
    abandoned = session.generate(s)
    next(abandoned), next(abandoned)                 # left unfinished (no Stop): the next run discards its GIF
    assert np.array_equal(gif_frames(list(session.generate(s))[-1].gif), kept())
    assert not list(tmp_path.rglob("run-*.gif"))


def test_the_app_names_the_step_in_use(checkpoint, monkeypatch):
    pipe = lib.load_pipeline(checkpoint)
    monkeypatch.setattr(pipe.model, "step_backend", "aoti")
    demo = load_app().build_demo(checkpoint)
    texts = " ".join(str(getattr(b, "value", "")) for b in demo.blocks.values())
    assert "recurrent step: **aoti**" in texts


def test_launch_warm_runs_one_generate_before_serving(checkpoint, capsys, monkeypatch):
    """`python app.py` launches with warm=True: the default Generate through the app's own API before users come;
    a failing warm-up is logged and the app serves anyway."""
    app = load_app()
    monkeypatch.setenv(lib.MODEL_ENV, str(checkpoint))
    demo = app.build_demo()
    assert demo.warm_request[0] in lib.example_prompts(lib.load_pipeline(checkpoint).tokenizer.vocabulary)
    calls = []
    real = app.warm_click
    monkeypatch.setattr(app, "warm_click", lambda url, request: calls.append(real(url, request)))
    _, url, _ = app.launch(demo, warm=True, prevent_thread_lock=True, server_port=free_port(), quiet=True)
    try:
        assert len(calls) == 1 and "warm-up request done" in capsys.readouterr().err
        app.warm_click(url, ("a purple",) + demo.warm_request[1:])     # refused by the app: logged, not raised
        assert "warm-up request failed" in capsys.readouterr().err
        _, job = generate(Client(url, analytics_enabled=False, verbose=False, download_files=False), key_frames=2,
                          interp_frames=0)
        assert job.status().success
    finally:
        demo.close()
