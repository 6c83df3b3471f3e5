"""The video timeline is one module: its numbers, and the pipeline, the CLI and bench asking it."""
import pytest

import flashvideo.pipeline as pipeline_module
from flashvideo.timeline import Timeline


def test_numbers():
    tl = Timeline(4, 3)
    assert (tl.n_frames, tl.n_pairs, tl.n_interpolated, tl.stride) == (13, 3, 9, 4)
    assert [tl.key_index(k) for k in range(4)] == [0, 4, 8, 12]
    assert tl.interp_index(1, 2) == 6 and tl.kind(6) == "interpolated" and tl.kind(8) == "key"
    assert tl.key_number(7) == 2
    assert tl.times[:5] == [0, 0.25, 0.5, 0.75, 1.0] and tl.times[-1] == 3
    assert tl.event_order[:4] == [0, 4, 8, 12] and tl.event_order[4:7] == [1, 5, 9]
    assert sorted(tl.event_order) == list(range(13))
    assert Timeline(3, 0).n_frames == 3 and Timeline(3, 0).event_order == [0, 1, 2]
    with pytest.raises(ValueError, match="key_frames >= 1"):
        Timeline(0, 1)


class Recording(Timeline):
    """The real timeline, remembering that it was asked."""
    made = []

    def __post_init__(self):
        super().__post_init__()
        Recording.made.append(self)


def test_pipeline_places_frames_where_the_timeline_says(tiny_pipe, monkeypatch):
    """Swap the pipeline's timeline for a recording one: every event index and the video length come
    from it, so a change of timeline needs no change of the pipeline."""
    monkeypatch.setattr(pipeline_module, "Timeline", Recording)
    Recording.made.clear()
    events = list(tiny_pipe.stream("red circle moves right", key_frames=3, interp_frames=2, seed=0))
    assert Recording.made, "the pipeline did not ask the timeline"
    tl = Recording.made[0]
    assert [ev.index for ev in events] == tl.event_order
    assert [ev.kind for ev in events] == [tl.kind(i) for i in tl.event_order]
    Recording.made.clear()
    video = tiny_pipe("red circle moves right", key_frames=3, interp_frames=2, seed=0)
    assert len(video.frames) == Recording.made[-1].n_frames == 7
    assert video.kinds == [Recording.made[-1].kind(i) for i in range(7)]
