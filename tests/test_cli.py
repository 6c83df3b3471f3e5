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
from PIL import Image

from flashvideo.cli import main
from flashvideo.pipeline import FlashVideoPipeline
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


@pytest.fixture
def no_generation(monkeypatch):
    """Fail the test if anything is generated: every refusal must come first."""
    def stream(*args, **kwargs):
        raise AssertionError("generation started before the arguments were checked")
    monkeypatch.setattr(FlashVideoPipeline, "stream", stream)


def bomb(path: Path) -> Path:
    path.write_bytes(bomb_png())                     # 12,000 x 12,000 px in 0.14 MB
    return path


@pytest.mark.parametrize("args, message", [
    (["a pink circle"], "unknown words ['pink']"),
    (["a red circle", "--key-frames", "9"], "--key-frames must be a whole number in 2..5, got 9"),
    (["a red circle", "--interp-frames", "-1"], "--interp-frames must be a whole number in 0..4"),
    (["a red circle", "--inherit-ratio", "nan"], "--inherit-ratio must be a number in [0, 1], got nan"),
    (["a red circle", "--seed", "-1"], "--seed must be a whole number in 0..9223372036854775807, got -1"),
    (["a red circle", "--temperature", "1e-300"], "--temperature must be 0 (greedy) or a number in [0.01, 10]"),
    (["a red circle", "--temperature", "inf"], "--temperature must be 0 (greedy)"),
    (["a red circle", "--top-k", "17"], "--top-k must be a whole number in 0..16 (0 = off), got 17"),
    (["a red circle", "--top-k", "-1"], "--top-k must be a whole number in 0..16 (0 = off), got -1"),
    (["a red circle", "--top-p", "0"], "top_p must be None (off) or a number in (0, 1]"),
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
