"""Centring (`flashvideo.centring`): in a world that wraps, the first key frame drawn from the prompt is rolled so that
its content sits away from the frame's edges, and the video goes on from the rolled frame."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import make_tiny_pipeline
from flashvideo import centring, serving
from flashvideo.layout import KEY, UNKNOWN
from flashvideo.pipeline import _generator
from flashvideo.sampler import SamplingSettings


@pytest.fixture(scope="module")
def wrapping():
    return make_tiny_pipeline(wrap=True)


def test_the_shift_moves_content_split_by_the_edges_to_the_middle():
    codes = torch.full((8, 8), 5)
    codes[[7, 7, 0, 0], [7, 0, 7, 0]] = 9                     # one object split over all four corners
    dy, dx = centring.shift(codes)
    rolled = torch.roll(codes, (dy, dx), (0, 1))
    assert rolled[3:5, 3:5].eq(9).all() and rolled.eq(9).sum() == 4
    assert centring.shift(rolled) == (0, 0)                    # content already in the middle stays
    assert centring.shift(torch.full((8, 8), 3)) == (0, 0)     # a plain frame is not moved
    wide = torch.full((8, 8), 5)
    wide[2, :] = 1                                             # content along a whole row: only rows move
    assert centring.shift(wide) == (1, 0)


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_the_first_key_frame_is_rolled_and_the_decoder_rebuilt_on_it(wrapping, guidance):
    pipe = wrapping
    L, h, G = pipe.layout, pipe.layout.header_len, pipe.config.grid
    text = pipe.encode_prompt("red circle grows")
    s = replace(pipe.default_sampling, lead_in=0, guidance_scale=guidance, temperature=1.0)
    plain = replace(s, centre_first=False)
    moved = 0
    for seed in range(6):
        centred = torch.stack(list(pipe.key_frame_codes(text, 3, seed=seed, sampling=replace(s, centre_first=True))))
        as_drawn = torch.stack(list(pipe.key_frame_codes(text, 3, seed=seed, sampling=plain)))
        by = centring.shift(as_drawn[0])
        assert torch.equal(centred[0], torch.roll(as_drawn[0], by, (0, 1)))
        assert centring.shift(centred[0]) == (0, 0)
        moved += by != (0, 0)
    assert moved >= 2                                          # the check is not vacuous

    unknown = torch.full((G * G,), UNKNOWN)
    plan = torch.cat([L.header(KEY, text, 1), unknown])[None]
    twin = torch.cat([L.header(KEY, L.null_text(), 1), unknown])[None] if guidance != 1 else None
    for seed in range(6):
        dec = pipe._decoder([_generator(seed)], s, None)
        done = dec.run(plan, twin)
        if centring.shift(done[0, h:].view(G, G)) != (0, 0):
            break
    rolled = centring.recentre(dec, done, plan, twin, h, G)
    assert not torch.equal(rolled, done)
    fresh = pipe._decoder([_generator(seed)], s, None)          # a decoder that read the rolled frame alone
    fresh.feed(rolled, None if twin is None else torch.cat([twin[:, :h], rolled[:, h:]], 1))
    assert dec.pos == fresh.pos and torch.allclose(dec.logits, fresh.logits, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(dec.state, fresh.state))


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_candidates_are_centred_before_they_are_scored(wrapping, guidance):
    """With first-frame candidates, each is rolled first; the kept one is the best-scored of the rolled candidates,
    and the video goes on from it as from that frame given."""
    from flashvideo import rerank
    from flashvideo.pipeline import child_seed

    pipe = wrapping
    L, h, G = pipe.layout, pipe.layout.header_len, pipe.config.grid
    text = pipe.encode_prompt("red circle grows")
    s = replace(pipe.default_sampling, lead_in=0, first_candidates=3, centre_first=True, guidance_scale=guidance,
                temperature=1.0)
    unknown = torch.full((G * G,), UNKNOWN)
    plan = torch.cat([L.header(KEY, text, 1), unknown])[None]
    twin = torch.cat([L.header(KEY, L.null_text(), 1), unknown])[None] if guidance != 1 else None
    moved = 0
    for seed in range(3):
        keys = torch.stack(list(pipe.key_frame_codes(text, 3, seed=seed, sampling=s)))
        drawn = [pipe._decoder([_generator(child_seed(seed, 2, c))], s, None).run(plan, twin)[0, h:].view(G, G)
                 for c in range(3)]
        rolled = torch.stack([torch.cat([plan[0, :h], centring.centred(c).flatten()]) for c in drawn])
        best = int(rerank.score(rerank.read(pipe.model, rolled)[0], rolled, h).argmax())
        assert torch.equal(keys[0].flatten(), rolled[best, h:])
        moved += any(centring.shift(c) != (0, 0) for c in drawn)
        given = torch.stack(list(pipe.key_frame_codes(text, 3, seed=seed, given=keys[0], sampling=s)))
        assert torch.equal(keys, given)
    assert moved >= 1                                          # the check is not vacuous


def test_centre_first_needs_a_wrapping_tokenizer_and_leaves_given_frames_alone(tiny_pipe, wrapping):
    s = replace(tiny_pipe.default_sampling, centre_first=True)
    with pytest.raises(ValueError, match="centre_first.*wrap"):
        tiny_pipe("red circle grows", key_frames=3, interp_frames=1, sampling=s)
    first = np.zeros((16, 16, 3), np.uint8)
    first[:3, :3] = 200                                        # an object in the corner, given: kept where it is
    video = wrapping("red circle grows", key_frames=3, interp_frames=1, sampling=s, first_frame=first)
    given = wrapping("red circle grows", key_frames=3, interp_frames=1, sampling=replace(s, centre_first=False),
                     first_frame=first)
    assert all(np.array_equal(a, b) for a, b in zip(video.frames, given.frames))
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="centre_first"):
            SamplingSettings(centre_first=bad)


def test_served_together_a_centred_video_is_the_one_decoded_alone(wrapping):
    s = replace(wrapping.default_sampling, centre_first=True, temperature=1.0)
    requests = [("red circle moves right", dict(key_frames=3, interp_frames=2, seed=i,   # guided and not
                                                sampling=replace(s, guidance_scale=1.0 + i % 2,
                                                                 first_candidates=1 + i // 2))) for i in range(4)]
    from test_serving import assert_same, together

    alone = [list(wrapping.stream(p, **kw)) for p, kw in requests]
    results = together(serving.Server(wrapping), requests)
    for i in range(len(requests)):
        assert_same(results[i], alone[i])


def test_an_endless_stream_starts_with_the_centred_video(wrapping):
    from flashvideo.endless import EndlessStream

    s = replace(wrapping.default_sampling, centre_first=True, lead_in=1, first_candidates=2, temperature=1.0)
    video = wrapping("red circle moves right", key_frames=4, interp_frames=2, seed=3, sampling=s)
    stream = EndlessStream(wrapping, "red circle moves right", interp_frames=2, seed=3, batch_pairs=2, sampling=s)
    got = {ev.index: ev.image for ev in stream.frames(4)}
    assert sorted(got) == list(range(len(video.frames)))
    assert all(np.array_equal(got[i], video.frames[i]) for i in got)
