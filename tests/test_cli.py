"""python -m flashvideo generate: files written, and every bad argument a one-line error, found
before anything is generated (the pipeline's stream is never reached) and leaving no file behind."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from flashvideo import demo
from flashvideo.cli import build_parser, main
from flashvideo.endless import EndlessStream
from flashvideo.pipeline import FlashVideoPipeline
from flashvideo.timeline import Timeline
from flashvideo.video_writer import VideoWriter
from conftest import make_tiny_pipeline
from fuzzkit import bomb_png

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ckpt(tiny_pipe, tmp_path_factory):
    return tiny_pipe.save_pretrained(tmp_path_factory.mktemp("cli") / "tiny")


def test_generate_writes_gif_and_mp4(ckpt, tmp_path, capsys):
    gif, mp4 = tmp_path / "v.gif", tmp_path / "v.mp4"
    main(["generate", "a red circle moves right", "--model", str(ckpt), "--key-frames", "3", "--interp-frames", "2",
          "--scale", "2", "--out", str(gif), str(mp4)])
    assert iio.imread(gif, index=None).shape == (7, 32, 32, 3)
    assert iio.imread(mp4, index=None).shape[0] == 7
    assert "7 frames" in capsys.readouterr().out


def test_top_k_0_means_off_and_temperature_0_is_greedy(ckpt, tmp_path):
    """One meaning of top-k 0 in the CLI and the app: off (all codes), the same video as no top-k."""
    outs = []
    for extra in (["--top-k", "0"], ["--top-k", "16"], ["--temperature", "0"]):
        out = tmp_path / f"v{len(outs)}.gif"
        main(["generate", "a red circle moves right", "--model", str(ckpt), "--key-frames", "2", "--interp-frames",
              "1", "--seed", "4", "--scale", "1", "--out", str(out), *extra])
        outs.append(iio.imread(out, index=None))
    assert np.array_equal(outs[0], outs[1])          # top-k = n_codes keeps every code: the same as off


def test_any_draft_length_draws_the_same_video_and_0_decodes_token_by_token(ckpt, tmp_path, capsys):
    outs, calls = [], []
    for n in ("1", "8", "0"):
        out = tmp_path / f"d{n}.gif"
        main(["generate", "a red circle moves right", "--model", str(ckpt), "--key-frames", "3", "--seed", "2",
              "--scale", "1", "--draft-len", n, "--out", str(out)])
        outs.append(iio.imread(out, index=None))
        calls.append(int(capsys.readouterr().out.split("sequential model calls ")[1].split()[0]))
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    assert calls[1] <= calls[0] <= calls[2]  # the same decisions: longer passes never take more of them


@pytest.fixture
def no_generation(monkeypatch):
    """Fail the test if anything is generated: every refusal must come first."""
    def stream(*args, **kwargs):
        raise AssertionError("generation started before the arguments were checked")
    monkeypatch.setattr(FlashVideoPipeline, "stream", stream)
    monkeypatch.setattr(EndlessStream, "frames", stream)
    monkeypatch.setattr(EndlessStream, "feed_frames", stream)


def bomb(path: Path) -> Path:
    path.write_bytes(bomb_png())                     # 12,000 x 12,000 px in 0.14 MB
    return path


@pytest.mark.parametrize("args, message", [
    (["a pink circle"], "unknown words ['pink']"),
    (["a red circle", "--key-frames", "100001"], "--key-frames must be a whole number in 2..100000, got 100001"),
    (["a red circle", "--key-frames", "1"], "--key-frames must be a whole number in 2..100000, got 1"),
    (["a red circle", "--then", "0", "blue square grows"], "--then 0: key frames count from 0 and key frame 0 has"),
    (["a red circle", "--then", "4", "blue square grows"], "--then 4: a change must start below --key-frames 4"),
    (["a red circle", "--key-frames", "60", "--then", "12", "blue square grows", "--then", "12", "red square grows"],
     "--then 12 comes after --then 12: the key frames of --then must increase"),
    (["a red circle", "--key-frames", "60", "--then", "30", "blue square grows", "--then", "12", "red square grows"],
     "--then 12 comes after --then 30"),
    (["a red circle", "--then", "two", "blue square grows"], "--then takes a key frame (a whole number) and a prompt"),
    (["a red circle", "--key-frames", "60", "--then", "12", "blue square grows", "--then", "30", "a pink square"],
     "--then 30: prompt: unknown words ['pink']"),
    (["a red circle", "--then", "2", "  "], "--then 2: prompt is empty"),
    (["a red circle", "--guidance-scale", "3", "--negative-prompt", "a pink circle"],
     "--negative-prompt: prompt: unknown words ['pink']"),
    (["a red circle", "--resume-state", "missing.state"], "--resume-state missing.state: no such file"),
    (["a red circle", "--resume-state", "/dev/zero"], "--resume-state /dev/zero is a folder, a pipe or a device"),
    (["a red circle", "--interp-frames", "-1"], "--interp-frames must be a whole number in 0..4"),
    (["a red circle", "--inherit-ratio", "nan"], "--inherit-ratio must be a number in [0, 1], got nan"),
    (["a red circle", "--seed", "-1"], "--seed must be a whole number in 0..9223372036854775807, got -1"),
    (["a red circle", "--temperature", "1e-300"], "--temperature must be 0 (greedy) or a number in [0.01, 10]"),
    (["a red circle", "--temperature", "inf"], "--temperature must be 0 (greedy)"),
    (["a red circle", "--top-k", "17"], "--top-k must be a whole number in 0..16 (0 = off), got 17"),
    (["a red circle", "--top-k", "-1"], "--top-k must be a whole number in 0..16 (0 = off), got -1"),
    (["a red circle", "--top-p", "0"], "top_p must be None (off) or a number in (0, 1]"),
    (["a red circle", "--draft-len", "-1"], "--draft-len must be a whole number in 0..31, got -1"),
    (["a red circle", "--draft-len", "99"], "--draft-len must be a whole number in 0..31, got 99"),
    (["a red circle", "--fps", "0"], "--fps must be a whole number in 1..60, got 0"),
    (["a red circle", "--fps", "-5"], "--fps must be a whole number in 1..60, got -5"),
    (["a red circle", "--scale", "0"], "--scale must be a whole number in 1..16, got 0"),
    (["a red circle", "--scale", "1000"], "--scale must be a whole number in 1..16, got 1000"),
    (["a red circle", "--first-frame", "missing.png"], "--first-frame missing.png: first frame: no such file"),
])
def test_bad_input_exits_with_a_message(ckpt, tmp_path, no_generation, args, message):
    with pytest.raises(SystemExit) as e:
        main(["generate", *args, "--model", str(ckpt), "--out", str(tmp_path / "x.gif")])
    assert message in str(e.value) and str(e.value).startswith("error:"), str(e.value)
    assert list(tmp_path.iterdir()) == []                            # nothing written


def test_bad_outputs_are_refused_before_generating(ckpt, tmp_path, no_generation):
    (tmp_path / "a-file").write_text("x")
    cases = [
        ([str(tmp_path / "x.jpg")], "must end in .gif or .mp4, not .jpg"),
        ([str(tmp_path / "noext")], "must end in .gif or .mp4, not no extension"),
        ([""], "--out: an empty path"),
        ([str(tmp_path)], "is a folder"),
        ([str(tmp_path / "dir.gif")], "is a folder"),
        ([str(tmp_path / "missing" / "x.gif")], "does not exist"),
        ([str(tmp_path / "a-file" / "x.gif")], "does not exist"),
        (["/proc/x.gif"], "cannot write in /proc"),
        ([str(tmp_path / "ok.gif"), str(tmp_path / "x.webm")], "not .webm"),
        ([str(tmp_path / "ok.gif"), str(tmp_path / "ok.gif")], "--out " + str(tmp_path / "ok.gif") + " is given twice"),
    ]
    (tmp_path / "dir.gif").mkdir()
    before = sorted(tmp_path.iterdir())
    for outs, message in cases:
        with pytest.raises(SystemExit) as e:
            main(["generate", "a red circle", "--model", str(ckpt), "--out", *outs])
        assert message in str(e.value), (outs, str(e.value))
        assert sorted(tmp_path.iterdir()) == before                  # no 0-byte file left behind


def test_hostile_first_frames_are_refused_quickly(ckpt, tmp_path, no_generation):
    """A decompression bomb, a named pipe, /dev/zero, a folder, an over-size file and a non-image: each a
    one-line error, without decoding the bomb or blocking on the pipe."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + os.urandom(6 * 2**20))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cases = [(bomb(tmp_path / "bomb.png"), "first frame is too large; the largest allowed is 4096×4096 px"),
             (fifo, "a folder, a pipe or a device"), ("/dev/zero", "a folder, a pipe or a device"),
             (tmp_path, "a folder, a pipe or a device"), (big, "at most 5 MB"), (text, "not a readable image")]
    for path, message in cases:
        done = threading.Event()
        watchdog = threading.Timer(20, lambda: None if done.is_set() else os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        watchdog.start()
        try:
            with pytest.raises(SystemExit) as e:
                main(["generate", "a red circle", "--model", str(ckpt), "--out", str(tmp_path / "x.gif"),
                      "--first-frame", str(path)])
        finally:
            done.set()
            watchdog.cancel()
        assert message in str(e.value) and str(e.value).startswith("error: --first-frame"), (path, str(e.value))
    assert not (tmp_path / "x.gif").exists()


def test_first_frame_that_is_fine_is_used(ckpt, tmp_path):
    path = tmp_path / "first.png"
    Image.fromarray(np.full((30, 50, 3), 180, np.uint8)).save(path)
    main(["generate", "a red circle", "--model", str(ckpt), "--key-frames", "2", "--interp-frames", "0",
          "--scale", "1", "--first-frame", str(path), "--out", str(tmp_path / "v.gif")])
    assert iio.imread(tmp_path / "v.gif", index=None).shape[0] == 2


def test_errors_are_one_line_without_a_traceback(ckpt, tmp_path):
    """In a real process: a refused argument prints one line to stderr, no traceback, exit status 1."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for extra in (["--fps", "0"], ["--out", str(tmp_path / "x.jpg")], ["--first-frame", "/dev/zero"]):
        args = [sys.executable, "-m", "flashvideo", "generate", "a red circle", "--model", str(ckpt), *extra]
        if "--out" not in extra:
            args += ["--out", str(tmp_path / "x.gif")]
        out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:"), (extra, out.stderr)
        assert "Traceback" not in out.stderr and out.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---- prompt schedules and endless streams (issue 12) ------------------------------------------------

def generate(ckpt, out, *args):
    main(["generate", "a red circle moves right", "--model", str(ckpt), "--scale", "1", "--out", *map(str, out), *args])
    return [iio.imread(o, index=None) for o in out]


def test_a_schedule_is_the_endless_stream_with_the_same_switches(ckpt, tmp_path, capsys):
    """--then switches the prompt from a key frame on: the files hold the frames of an EndlessStream with the
    same seed and switches (GIFs of 16x16 frames are exact), past the model's trained key-frame count."""
    gif, mp4 = generate(ckpt, [tmp_path / "long.gif", tmp_path / "long.mp4"], "--key-frames", "7",
                        "--interp-frames", "2", "--seed", "5", "--then", "3", "blue square grows",
                        "--then", "5", "red circle moves left")
    n = Timeline(7, 2).n_frames
    assert gif.shape == (n, 16, 16, 3) and mp4.shape[0] == n
    pipe = FlashVideoPipeline.from_pretrained(ckpt)
    stream = EndlessStream(pipe, "a red circle moves right", interp_frames=2, seed=5)
    events = list(stream.frames(3))
    stream.prompt = "blue square grows"
    events += stream.frames(2)
    stream.prompt = "red circle moves left"
    events += stream.frames(2)
    assert [ev.index for ev in events] == list(range(n))
    assert np.array_equal(gif, np.stack([ev.image for ev in events]))
    out = capsys.readouterr().out
    assert f"{n} frames in" in out and "past the 5 the model was trained on" in out
    assert "key frames 0..2: 'a red circle moves right'; key frames 3..4: 'blue square grows'" in out


def test_more_key_frames_than_trained_stream_without_a_schedule(ckpt, tmp_path):
    (gif,) = generate(ckpt, [tmp_path / "v.gif"], "--key-frames", "9", "--interp-frames", "1")
    assert gif.shape[0] == Timeline(9, 1).n_frames


def test_a_saved_stream_resumed_is_the_whole_schedule(ckpt, tmp_path):
    """--save-state then --resume-state (with a new prompt) gives the frames of one run with that switch."""
    state = tmp_path / "a.state"
    (first,) = generate(ckpt, [tmp_path / "a.gif"], "--key-frames", "4", "--interp-frames", "1",
                        "--then", "2", "blue square grows", "--save-state", str(state))
    main(["generate", "red circle moves left", "--model", str(ckpt), "--scale", "1", "--key-frames", "3",
          "--resume-state", str(state), "--out", str(tmp_path / "b.gif")])
    (whole,) = generate(ckpt, [tmp_path / "whole.gif"], "--key-frames", "7", "--interp-frames", "1",
                        "--then", "2", "blue square grows", "--then", "4", "red circle moves left")
    resumed = iio.imread(tmp_path / "b.gif", index=None)
    assert len(first) == Timeline(4, 1).n_frames and len(resumed) == 3 * 2
    assert np.array_equal(np.concatenate([first, resumed]), whole)


def test_a_prompt_refused_mid_stream_keeps_the_frames_made_so_far(ckpt, tmp_path, monkeypatch):
    """If a prompt gets past the checks and the stream refuses it, the run stops with a message, and the
    files hold every frame up to that key frame (and the state, to continue from there)."""
    monkeypatch.setattr(demo, "check_prompt", lambda pipe, prompt: prompt)   # let the unknown word through
    gif, mp4, state = tmp_path / "v.gif", tmp_path / "v.mp4", tmp_path / "v.state"
    with pytest.raises(SystemExit) as e:
        generate(ckpt, [gif, mp4], "--key-frames", "8", "--interp-frames", "2", "--then", "3", "a pink circle",
                 "--save-state", str(state))
    message = str(e.value)
    assert message.startswith("error: --then 3: the prompt was refused mid-stream (unknown words ['pink']")
    assert "stopped there and kept the 7 frames made so far" in message and str(state) in message
    assert iio.imread(gif, index=None).shape[0] == iio.imread(mp4, index=None).shape[0] == Timeline(3, 2).n_frames
    assert EndlessStream.load(FlashVideoPipeline.from_pretrained(ckpt), state).key_frames == 3


@pytest.fixture
def other_state(tmp_path):
    """A stream state saved by another model (made before `no_generation` stops all generation)."""
    stream = EndlessStream(make_tiny_pipeline(seed=1, d_model=48), "red circle grows", interp_frames=0)
    list(stream.frames(1))
    return stream.save(tmp_path / "other.state")


def test_resume_refusals(ckpt, tmp_path, other_state, no_generation, monkeypatch):
    """A state is continued with its own settings, from the model that saved it, and is a real state."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.state").write_bytes(b"\x00" * 64)
    cases = [(["--resume-state", "junk.state"], "--resume-state junk.state: junk.state is not a FlashVideo stream"),
             (["--resume-state", "other.state"], "was saved by another model or config"),
             (["--resume-state", "other.state", "--seed", "3", "--top-k", "2"],
              "continues with the saved stream's own settings; leave out --seed, --top-k"),
             (["--resume-state", "other.state", "--first-frame", "x.png"], "give only one"),
             (["--save-state", "."], "--save-state . is a folder"),
             (["--save-state", ""], "--save-state: an empty path")]
    for args, message in cases:
        with pytest.raises(SystemExit) as e:
            main(["generate", "a red circle", "--model", str(ckpt), "--out", "x.gif", *args])
        assert message in str(e.value), (args, str(e.value))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.state", "other.state"]


def test_the_writer_puts_frames_on_disk_as_they_arrive(tmp_path):
    """Out-of-order frames wait for the ones before them; every written frame is on disk at once, and
    nothing is kept: the file grows with each frame while the writer's memory does not."""
    import gc
    import tracemalloc

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    path = tmp_path / "v.gif"
    w = VideoWriter(path, fps=8, scale=2)
    w.add(1, frames[1])
    assert not path.exists() and w.written == 0          # frame 0 is not there yet
    sizes = []
    tracemalloc.start()
    for i in [0, *range(2, 40)]:
        w.add(i, frames[i])
        sizes.append(path.stat().st_size)
        if i == 10:
            gc.collect()                                 # Pillow's GIF encoder leaves a reference cycle per frame
            base = tracemalloc.take_snapshot()
    gc.collect()
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    tracemalloc.stop()
    assert w.close() == 40 and not w.pending
    assert sizes == sorted(set(sizes)) and grown < 20_000, grown
    assert np.array_equal(iio.imread(path, index=None), frames.repeat(2, 1).repeat(2, 2))


def test_a_gif_frame_of_many_colours_is_quantised_closely(tmp_path):
    """Over 256 colours (here 4,096 spread over the whole colour cube: the hardest case): a fast palette of its own,
    close to the frame;
    at most 256: exactly its colours."""
    y, x = np.mgrid[0:64, 0:64]
    smooth = np.stack([x * 4, y * 4, (x + y) * 2], -1).astype(np.uint8)
    few = smooth // 64 * 64                                      # 4 levels a channel: 64 colours
    with VideoWriter(tmp_path / "v.gif") as w:
        w.add(0, smooth)
        w.add(1, few)
    back = iio.imread(tmp_path / "v.gif", index=None)[..., :3].astype(float)
    psnr = 10 * np.log10(255 ** 2 / np.mean((back[0] - smooth) ** 2))
    assert len(np.unique(smooth.reshape(-1, 3), axis=0)) > 256 and 28 < psnr < 99, psnr   # median cut: 35 dB
    assert np.array_equal(back[1], few)


def test_background_writer_matches_the_foreground_one_and_reports_its_errors(tmp_path):
    import gc
    import threading

    frames = np.random.default_rng(1).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    for suffix in (".gif", ".mp4"):
        paths = [tmp_path / f"{kind}{suffix}" for kind in ("fore", "back")]
        for path, background in zip(paths, (False, True)):
            with VideoWriter(path, fps=8, scale=2, background=background) as w:
                for i in [1, 0, *range(2, 9)]:
                    w.add(i, frames[i])
        if suffix == ".gif":
            assert paths[0].read_bytes() == paths[1].read_bytes()
        assert iio.imread(paths[1], index=None).shape[0] == 9
    # a frame the encoder cannot take: the error comes out of close, in the caller's thread
    w = VideoWriter(tmp_path / "bad.gif", background=True)
    w.add(0, np.zeros((4, 4, 7), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        w.close()
    # a writer dropped unclosed finishes its file and ends its thread
    before = threading.active_count()
    w = VideoWriter(tmp_path / "dropped.gif", background=True)
    for i in range(3):
        w.add(i, frames[i])
    thread, path = w._thread, w.path
    del w
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive() and threading.active_count() == before
    assert iio.imread(path, index=None).shape[0] == 3


# ---- training options (issue 11) ----------------------------------------------------------------

def test_train_folder_options_reach_the_config(monkeypatch):
    import flashvideo.train as train

    seen = []
    monkeypatch.setattr(train, "train", seen.append)
    main(["train", "--data", "clips/", "--folder-frames", "8", "--folder-t-max", "3.5"])
    main(["train"])
    assert (seen[0].folder_frames, seen[0].folder_t_max, seen[0].data) == (8, 3.5, "clips/")
    assert (seen[1].folder_frames, seen[1].folder_t_max) == (train.TrainConfig.folder_frames, 0.0)


def test_train_tokenizer_backend_goes_to_the_registry(tmp_path):
    assert build_parser().parse_args(["train-tokenizer"]).backend == "vq"
    for backend, message in [("nope", "unknown tokenizer backend 'nope'; choose one of ['vq', 'icetk'"),
                             ("icetk", "the 'icetk' tokenizer cannot be trained here")]:
        with pytest.raises(SystemExit) as e:
            main(["train-tokenizer", "--backend", backend, "--out", str(tmp_path / "tok")])
        assert message in str(e.value), str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_export_writes_a_model_folder_with_its_default_sampling(ckpt, tmp_path):
    main(["export", str(ckpt), "--tokenizer", str(ckpt), "--out", str(tmp_path / "m"),
          "--sampling", '{"temperature": 0.5, "guidance_scale": 2}'])
    pipe = FlashVideoPipeline.from_pretrained(tmp_path / "m")
    assert pipe.default_sampling.temperature == 0.5 and pipe.default_sampling.guidance_scale == 2
    original = FlashVideoPipeline.from_pretrained(ckpt)
    assert all((a == b).all() for a, b in zip(pipe.model.state_dict().values(), original.model.state_dict().values()))
    main(["export", str(ckpt), "--tokenizer", str(ckpt), "--out", str(tmp_path / "half"), "--dtype", "float16"])
    half = FlashVideoPipeline.from_pretrained(tmp_path / "half").model.state_dict()
    assert all(torch.equal(half[k], v.half().float()) for k, v in original.model.state_dict().items() if v.is_floating_point())
    for bad, message in (('{"temperature": -2}', "sampling: temperature"), ("x", "--sampling must be a JSON object")):
        with pytest.raises(SystemExit) as e:
            main(["export", str(ckpt), "--tokenizer", str(ckpt), "--out", str(tmp_path / "bad"), "--sampling", bad])
        assert message in str(e.value) and not (tmp_path / "bad").exists()
