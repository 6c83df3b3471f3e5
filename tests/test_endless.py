"""Endless streams: the same frames as a video, save and resume, prompt switches, bounded memory."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import make_tiny_pipeline
from flashvideo.endless import EndlessStream
from flashvideo.layout import Layout


def collect(events):
    return {ev.index: (ev.kind, ev.image) for ev in events}


@pytest.mark.parametrize("lead_in, candidates", [(0, 1), (1, 1), (1, 3)])
def test_the_first_key_frames_are_the_video_of_the_same_seed(tiny_pipe, lead_in, candidates):
    sampling = replace(tiny_pipe.default_sampling, lead_in=lead_in, first_candidates=candidates)
    video = tiny_pipe("red circle moves right", key_frames=5, interp_frames=2, seed=3, sampling=sampling)
    stream = EndlessStream(tiny_pipe, "red circle moves right", interp_frames=2, seed=3, batch_pairs=2, sampling=sampling)
    got = collect(stream.frames(5))
    assert sorted(got) == list(range(len(video.frames)))
    assert all(np.array_equal(got[i][1], video.frames[i]) and got[i][0] == video.kinds[i] for i in got)


def test_frames_come_in_time_order_past_the_trained_length(tiny_pipe):
    stream = EndlessStream(tiny_pipe, "blue square grows", interp_frames=1, seed=0, batch_pairs=3)
    indices = [ev.index for ev in stream.frames(3 * tiny_pipe.config.n_sn)]   # serial numbers go round
    assert indices == list(range(len(indices)))
    assert stream.key_frames == 3 * tiny_pipe.config.n_sn


@pytest.mark.parametrize("lead_in", [0, 2])
def test_extending_a_saved_stream_gives_the_frames_of_one_stream(tiny_pipe, tmp_path, lead_in):
    def schedule(stream, save_at=None):
        frames = collect(stream.frames(3))
        stream.prompt = "blue circle moves left"
        if save_at:
            stream.save(save_at)
            stream = EndlessStream.load(tiny_pipe, save_at)
        frames |= collect(stream.frames(4))
        return frames

    kw = dict(interp_frames=2, seed=7, batch_pairs=2, sampling=replace(tiny_pipe.default_sampling, lead_in=lead_in))
    whole = schedule(EndlessStream(tiny_pipe, "red square grows", **kw))
    resumed = schedule(EndlessStream(tiny_pipe, "red square grows", **kw), tmp_path / "video.state")
    assert sorted(whole) == sorted(resumed) == list(range(7 + 6 * 2))
    assert all(np.array_equal(whole[i][1], resumed[i][1]) for i in whole)


def test_a_prompt_switch_reaches_the_next_key_frames_header(tiny_pipe):
    stream = EndlessStream(tiny_pipe, "red square grows", interp_frames=0, seed=1, batch_pairs=1)
    plans, run = [], stream._dec.run
    stream._dec.run = lambda plan, twin=None, draft=None: plans.append(plan.clone()) or run(plan, twin, draft)
    list(stream.frames(2))
    stream.prompt = "blue circle moves left"
    list(stream.frames(2))
    texts = [p[0, 1:1 + tiny_pipe.config.text_len] for p in plans]
    old, new = tiny_pipe.encode_prompt("red square grows"), tiny_pipe.encode_prompt("blue circle moves left")
    assert [torch.equal(t, old) for t in texts] == [True, True, False, False]
    assert all(torch.equal(t, new) for t in texts[2:])


def test_a_prompt_schedule_puts_each_prompt_in_its_frames_header():
    pipe = make_tiny_pipeline()
    L = Layout(pipe.config)
    texts = torch.stack([pipe.encode_prompt("red circle grows")] * 2 + [pipe.encode_prompt("blue square grows")])
    seq = L.key_sequence(texts, torch.full((3, 4, 4), -1), first=4)
    headers = seq.view(3, L.frame_len)[:, :L.header_len]
    assert torch.equal(headers[2, 1:-1], texts[2]) and torch.equal(headers[0, 1:-1], texts[0])
    assert [int(h[-1]) - pipe.config.sn_offset + 1 for h in headers] == [L.key_sn(k) for k in (4, 5, 6)]


def test_bad_prompts_and_foreign_states_are_refused(tiny_pipe, tmp_path):
    stream = EndlessStream(tiny_pipe, "red circle grows", interp_frames=1, seed=0)
    made = collect(stream.frames(2))
    with pytest.raises(ValueError, match="unknown words"):
        stream.prompt = "a pink circle grows"
    with pytest.raises(ValueError, match="empty prompt"):
        stream.prompt = "   "
    more = collect(stream.frames(1))                      # the stream goes on under its last prompt
    assert set(made) | set(more) == set(range(5))
    stream.save(tmp_path / "s.state")
    for other in (make_tiny_pipeline(seed=1, d_model=48), make_tiny_pipeline(seed=1)):  # another config; other weights
        with pytest.raises(ValueError, match="another model or config"):
            EndlessStream.load(other, tmp_path / "s.state")
    with safe_open(str(tmp_path / "s.state"), "pt") as f:
        meta = f.metadata()
    for name, bad in (("before", lambda t: t + tiny_pipe.config.n_codes), ("before", lambda t: t[..., :1].contiguous()),
                      ("last_key", lambda t: t.float())):  # codes out of range, not a grid, not codes
        tensors = load_file(str(tmp_path / "s.state"))
        tensors[name] = bad(tensors[name])
        save_file(tensors, str(tmp_path / "bad.state"), metadata=meta)
        with pytest.raises(ValueError, match="not this model's code grids"):
            EndlessStream.load(tiny_pipe, tmp_path / "bad.state")
    (tmp_path / "junk.state").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a FlashVideo stream state"):
        EndlessStream.load(tiny_pipe, tmp_path / "junk.state")
    with pytest.raises(ValueError, match="1..64 frames"):
        stream.feed_frames([])


def test_continuing_a_clip_feeds_it_as_key_frames(tiny_pipe):
    clip = tiny_pipe("red circle moves right", key_frames=3, interp_frames=0, seed=2).frames
    stream = EndlessStream(tiny_pipe, "red circle moves right", interp_frames=1, seed=2)
    given = stream.feed_frames(clip)
    assert [ev.kind for ev in given] == ["given"] * 3 and [ev.index for ev in given] == [0, 2, 4]
    after = [ev.index for ev in stream.frames(2)]
    assert after == [5, 6, 7, 8] and stream.key_frames == 5


def test_memory_and_state_stay_flat(tiny_pipe):
    import tracemalloc

    stream = EndlessStream(tiny_pipe, "red circle moves right", interp_frames=1, seed=0, batch_pairs=4)
    it = stream.frames()
    for _ in range(40):
        next(it)
    shapes = [tuple(s.shape) for s in stream._dec.state]
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    for _ in range(400):
        next(it)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    tracemalloc.stop()
    assert [tuple(s.shape) for s in stream._dec.state] == shapes
    assert grown < 200_000, grown
