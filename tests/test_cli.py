"""python -m flashvideo generate: files written, bad input a one-line error."""
import imageio.v3 as iio
import pytest

from flashvideo.cli import main


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


@pytest.mark.parametrize("args, message", [
    (["a pink circle"], "unknown words ['pink']"),
    (["a red circle", "--key-frames", "9"], "key_frames"),
    (["a red circle", "--first-frame", "missing.png"], "missing.png"),
])
def test_bad_input_exits_with_a_message(ckpt, tmp_path, args, message):
    with pytest.raises(SystemExit) as e:
        main(["generate", *args, "--model", str(ckpt), "--out", str(tmp_path / "x.gif")])
    assert message in str(e.value) and str(e.value).startswith("error:")
