"""The validation seam: the empty-prompt message lives in flashvideo.validation and every entry point
that refuses an empty prompt says exactly that (swap the message: they all follow)."""
import pytest

from flashvideo import validation
from flashvideo.endless import EndlessStream


@pytest.mark.parametrize("prompt", ["", "   ", None])
def test_every_entry_point_uses_the_one_message(tiny_pipe, monkeypatch, prompt):
    monkeypatch.setattr(validation, "EMPTY_PROMPT", "say what the video shows")
    calls = [lambda: tiny_pipe.encode_prompt(prompt),
             lambda: next(tiny_pipe.stream(prompt, key_frames=2, interp_frames=0)),
             lambda: tiny_pipe(prompt, key_frames=2, interp_frames=0),
             lambda: tiny_pipe.layout.text_block([]),
             lambda: EndlessStream(tiny_pipe, prompt, interp_frames=0)]
    for call in calls:
        with pytest.raises(ValueError, match="^say what the video shows$"):
            call()


def test_the_message_names_an_example():
    assert validation.EMPTY_PROMPT.startswith("empty prompt") and validation.EXAMPLE_PROMPT in validation.EMPTY_PROMPT
    assert validation.check_prompt(" a red circle ") == " a red circle "
