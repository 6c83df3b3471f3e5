"""Folder datasets: captions, frame shapes, padding, stride, bad-file warnings and empty-root errors."""
import re
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from flashvideo.data.folder import FrameFolder, VideoFolder, caption_from_name


def grey_video(n, h, w, step=10):
    """Frame i is a flat grey of level step * i, so frames can be told apart after compression."""
    return np.stack([np.full((h, w, 3), step * i, np.uint8) for i in range(n)])


@pytest.fixture
def video_root(tmp_path):
    root = tmp_path / "videos"
    for name in ("ApplyEyeMakeup", "jump_rope", "Biking"):
        (root / name).mkdir(parents=True)
    iio.imwrite(root / "ApplyEyeMakeup" / "v1.gif", grey_video(6, 40, 48), duration=100, loop=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iio.imwrite(root / "jump_rope" / "v2.mp4", grey_video(20, 48, 64), fps=8)
    iio.imwrite(root / "Biking" / "short.gif", grey_video(3, 32, 32, step=50), duration=100, loop=0)
    (root / "Biking" / "empty.avi").write_bytes(b"")
    (root / "Biking" / "corrupt.avi").write_bytes(b"not a video" * 50)
    (root / "Biking" / "notes.txt").write_text("ignored")
    return root


def test_caption_from_name():
    assert caption_from_name("ApplyEyeMakeup") == "apply eye makeup"
    assert caption_from_name("Biking") == "biking"
    assert caption_from_name("jump_rope") == "jump rope"
    assert caption_from_name("TVShow-2") == "tv show 2"


def test_video_folder(video_root):
    with pytest.warns(UserWarning) as record:
        data = VideoFolder(video_root, size=32, n_frames=8)
    messages = "\n".join(str(w.message) for w in record)
    assert "empty.avi" in messages and "corrupt.avi" in messages
    assert all(w.filename == __file__ for w in record if w.category is UserWarning)
    assert len(data) == 3
    assert sorted(clip.prompt for clip in data) == ["apply eye makeup", "biking", "jump rope"]
    assert data.vocabulary() == ["apply", "biking", "eye", "jump", "makeup", "rope"]
    for clip in data:
        assert clip.frames.shape == (8, 32, 32, 3) and clip.frames.dtype == np.uint8
        assert clip.times == tuple(float(t) for t in range(8)) and clip.colour is None
    short = next(clip for clip in data if clip.prompt == "biking")
    levels = short.frames.mean(axis=(1, 2, 3))
    assert levels[:3] == pytest.approx([0, 50, 100], abs=2)
    assert np.array_equal(short.frames[2:], np.repeat(short.frames[2:3], 6, axis=0))  # padded with the last frame


def test_video_folder_stride(video_root):
    with pytest.warns(UserWarning):
        data = VideoFolder(video_root, size=16, n_frames=5, stride=3)
    clip = next(clip for clip in data if clip.prompt == "jump rope")
    assert clip.frames.mean(axis=(1, 2, 3)) == pytest.approx([0, 30, 60, 90, 120], abs=4)
    assert data[-1].prompt == data[len(data) - 1].prompt
    with pytest.raises(IndexError):
        data[len(data)]


def save_png(path, h, w, level):
    Image.fromarray(np.full((h, w, 3), level, np.uint8)).save(path)


def test_frame_folder(tmp_path):
    named = tmp_path / "push_objects"
    named.mkdir()
    # mixed sizes, and natural order: frame2 before frame10
    save_png(named / "frame1.png", 32, 32, 10)
    save_png(named / "frame10.png", 48, 64, 30)
    save_png(named / "frame2.png", 40, 30, 20)
    (named / "frame3.png").write_bytes(b"")
    captioned = tmp_path / "00017"
    captioned.mkdir()
    (captioned / "caption.txt").write_text("A robot arm pushes things.\n")
    for i in range(6):
        save_png(captioned / f"{i}.png", 24, 24, 40 * i)
    numbered = tmp_path / "00018"
    numbered.mkdir()
    save_png(numbered / "0.png", 16, 16, 200)

    with pytest.warns(UserWarning) as record:
        data = FrameFolder(tmp_path, size=16, n_frames=4)
    messages = "\n".join(str(w.message) for w in record)
    assert "frame3.png" in messages and "00018" in messages
    assert len(data) == 2
    first, second = data[0], data[1]
    assert first.prompt == "a robot arm pushes things"
    assert first.frames.shape == (4, 16, 16, 3)
    assert first.frames.mean(axis=(1, 2, 3)) == pytest.approx([0, 40, 80, 120], abs=1)
    assert second.prompt == "push objects"
    assert second.frames.mean(axis=(1, 2, 3)) == pytest.approx([10, 20, 30, 30], abs=1)
    assert data.vocabulary() == ["a", "arm", "objects", "push", "pushes", "robot", "things"]

    with warnings.catch_warnings():  # two frames are found before the bad frame3.png: no warning
        warnings.simplefilter("error")
        data = FrameFolder(tmp_path, size=8, n_frames=2, caption="Robot pushing")
    assert len(data) == 3 and data[1].prompt == "robot pushing" and data[1].frames.shape == (2, 8, 8, 3)


@pytest.mark.parametrize("cls, bad, nothing, told", [
    (VideoFolder, "Empty/broken.mp4", r"no usable videos under .*root/<class_name>/<video>", ["empty video file"]),
    (FrameFolder, "clip/0.png", r"no usable frame folders under .*root/<video_name>/<frame>",
     ["empty frame file", "none of its frames"]),
])
def test_folder_errors(tmp_path, cls, bad, nothing, told):
    with pytest.raises(ValueError, match="not a directory"):
        cls(tmp_path / "missing")
    (tmp_path / bad).parent.mkdir()
    with pytest.raises(ValueError, match=nothing):
        cls(tmp_path)
    (tmp_path / bad).write_bytes(b"")
    with pytest.warns(UserWarning) as record, pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        cls(tmp_path)
    messages = [str(w.message) for w in record]
    assert all(any(t in m for m in messages) for t in told) and any(bad.split("/")[1] in m for m in messages)
    assert all(w.filename == __file__ for w in record if w.category is UserWarning)  # point at the caller
