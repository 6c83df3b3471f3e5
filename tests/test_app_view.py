"""The app's frame captions name the right key frames (time-order indices from the Timeline)."""
from flashvideo.app_view import caption


def test_caption_names_the_pair_around_an_in_between_frame():
    assert "between the key frames at 4 and 8" in caption(6, "interpolated", 2, 3)
    assert "between the key frames at 0 and 2" in caption(1, "interpolated", 1, 1)
    key = caption(8, "key", 3, 3, total=13, prompt="a red circle moves right")
    assert "**key frame** 3" in key and "of 0–12" in key and "a red circle moves right" in key
