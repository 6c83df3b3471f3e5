"""The synthetic shapes world: rendering, time model, splits, prompts, detector and training stream."""
import itertools

import numpy as np
import pytest
import torch

from flashvideo.data import shapes as S


def object_mask(frames):
    return np.any(frames != np.asarray(S.BACKGROUND, np.uint8), axis=-1)


def centroid(mask):
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean()


def blur(frames):
    """3x3 box blur, a stand-in for a VQ decoder's soft edges."""
    x = np.pad(frames.astype(np.float32), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = frames.shape[1:3]
    return sum(x[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9


def to_uint8(x):
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def test_render_is_deterministic_and_exact_at_any_time():
    times = [0, 0.25, 1, 2.5, 7]
    a = S.render("red", "circle", "moves right", 5, times)
    assert a.shape == (5, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, S.render("red", "circle", "moves right", 5, times))
    assert not np.array_equal(a, S.render("red", "circle", "moves right", 6, times))
    assert np.array_equal(a[3], S.render("red", "circle", "moves right", 5, [2.5])[0])
    # hard edges: only the background and the object colour occur
    colours = {tuple(c) for c in a.reshape(-1, 3)}
    assert colours == {S.BACKGROUND, S.COLOURS["red"]}


def test_frame_times_follow_the_time_model():
    assert S.frame_times(4) == [0.0, 1.0, 2.0, 3.0]
    assert S.frame_times(3, 1) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert S.frame_times(2, 3) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError):
        S.frame_times(0)


@pytest.mark.parametrize("size", [32, 64])
def test_object_stays_inside_the_frame_until_t_max(size):
    times = np.linspace(0, S.T_MAX, 15)
    for (shape, motion), seed in itertools.product(itertools.product(S.SHAPES, S.MOTIONS), range(6)):
        mask = object_mask(S.render("white", shape, motion, seed, times, size))
        areas = mask.sum(axis=(1, 2))
        assert areas.min() >= 20 * (size / 64) ** 2, (shape, motion, seed)
        border = mask[:, 0].any() or mask[:, -1].any() or mask[:, :, 0].any() or mask[:, :, -1].any()
        assert not border, (shape, motion, seed)


@pytest.mark.parametrize("size", [64, 128])
def test_motion_runs_at_a_fixed_rate(size):
    k = size / 64
    for seed in range(4):
        for motion, (ux, uy) in [("moves right", (1, 0)), ("moves left", (-1, 0)),
                                 ("moves up", (0, -1)), ("moves down", (0, 1))]:
            mask = object_mask(S.render("red", "square", motion, seed, [0, 1, S.T_MAX], size))
            (x0, y0), (x1, y1), (x7, y7) = (centroid(m) for m in mask)
            assert (x7 - x0, y7 - y0) == pytest.approx((ux * S.SPEED * k * S.T_MAX, uy * S.SPEED * k * S.T_MAX), abs=1)
            assert (x1 - x0, y1 - y0) == pytest.approx((ux * S.SPEED * k, uy * S.SPEED * k), abs=1)
        for motion, sign in [("grows", 1), ("shrinks", -1)]:
            mask = object_mask(S.render("red", "square", motion, seed, range(8), size))
            sides = np.sqrt(mask.sum(axis=(1, 2)))
            assert np.all(sign * np.diff(sides) > 0)
            assert sides[-1] - sides[0] == pytest.approx(sign * S.GROWTH * k * S.T_MAX, abs=1.5)
            cx, cy = zip(*(centroid(m) for m in mask))
            assert np.ptp(cx) <= 0.5 and np.ptp(cy) <= 0.5  # scaling keeps the centroid


def test_held_out_split():
    assert len(S.ALL_COMBOS) == 144
    assert len(S.HELD_OUT) == 15 and S.HELD_OUT <= set(S.ALL_COMBOS)
    assert len(S.TRAIN_COMBOS) + len(S.HELDOUT_COMBOS) == 144
    assert not set(S.TRAIN_COMBOS) & S.HELD_OUT
    for i, j in itertools.combinations(range(3), 2):  # every single word and every pair is still trained
        assert {(c[i], c[j]) for c in S.TRAIN_COMBOS} == {(c[i], c[j]) for c in S.ALL_COMBOS}
    for seed in range(200):
        train, heldout = S.make_clip(seed, [0], "train"), S.make_clip(seed, [0], "heldout")
        assert (train.colour, train.shape, train.motion) not in S.HELD_OUT
        assert (heldout.colour, heldout.shape, heldout.motion) in S.HELD_OUT


def test_make_clip():
    clip = S.make_clip(11, [0, 1, 2])
    again = S.make_clip(11, [0, 1, 2])
    assert clip.prompt == again.prompt and np.array_equal(clip.frames, again.frames)
    assert clip.times == (0.0, 1.0, 2.0) and clip.frames.shape == (3, 64, 64, 3)
    assert S.parse_prompt(clip.prompt) == (clip.colour, clip.shape, clip.motion)
    assert np.array_equal(clip.frames, S.render(clip.colour, clip.shape, clip.motion, clip.seed, [0, 1, 2]))
    assert len({S.make_clip(seed, [0]).prompt for seed in range(300)}) > 100
    with pytest.raises(ValueError, match="split"):
        S.make_clip(0, [0], "test")


def test_vocabulary():
    words = S.vocabulary()
    assert len(words) == len(set(words)) == 18
    assert "a" not in words and {"red", "triangle", "moves", "left", "grows"} <= set(words)
    for combo in S.ALL_COMBOS:
        assert set(S.make_prompt(*combo).split()[1:]) <= set(words)


@pytest.mark.parametrize("prompt, expected", [
    ("a red circle moves right", ("red", "circle", "moves right")),
    ("  A Red CIRCLE   moves   right. ", ("red", "circle", "moves right")),
    ("orange triangle grows", ("orange", "triangle", "grows")),
    ("An orange square, shrinks!", ("orange", "square", "shrinks")),
    ("a cyan square moves-up", ("cyan", "square", "moves up")),
])
def test_parse_prompt_accepts(prompt, expected):
    assert S.parse_prompt(prompt) == expected


@pytest.mark.parametrize("prompt, message", [
    ("a pink circle moves right", r"unknown word.*'pink'.*known words: red"),
    ("a red circle jumps", r"unknown word.*'jumps'"),
    ("a red circle", r"missing a motion"),
    ("a red moves right", r"missing a shape"),
    ("circle grows", r"missing a colour"),
    ("", r"missing a colour and a shape and a motion"),
    ("a red circle moves", r"'moves' but not where"),
    ("a red circle right", r"without 'moves'"),
    ("a red blue circle grows", r"more than one colour"),
])
def test_parse_prompt_rejects(prompt, message):
    with pytest.raises(ValueError, match=message):
        S.parse_prompt(prompt)


@pytest.mark.parametrize("corruption", ["clean", "noise", "blur+noise"])
def test_describe_recovers_every_combination(corruption):
    rng = np.random.default_rng(0)
    wrong = []
    for i, combo in enumerate(S.ALL_COMBOS):
        frames = S.render(*combo, seed=i, times=[0, 1, 2, 3])
        x = blur(frames) if "blur" in corruption else frames.astype(np.float32)
        if "noise" in corruption:
            x = x + rng.normal(0, 8, x.shape)
        found = S.describe(to_uint8(x))
        if (found["colour"], found["shape"], found["motion"]) != combo:
            wrong.append((combo, found))
    assert not wrong


def test_describe_without_an_object_or_motion():
    blank = np.empty((3, 64, 64, 3), np.uint8)
    blank[:] = S.BACKGROUND
    assert S.describe(blank) == {"colour": None, "shape": None, "motion": None}
    still = S.render("green", "triangle", "grows", 0, [2, 2])
    assert S.describe(still) == {"colour": "green", "shape": "triangle", "motion": None}
    assert S.describe(still[0]) == {"colour": "green", "shape": "triangle", "motion": None}


def take(stream, n):
    return list(itertools.islice(iter(stream), n))


def test_stream_ranks_see_different_clips_deterministically():
    ranks = [take(S.ShapesStream(4, seed=3, rank=r, world_size=2), 20) for r in range(2)]
    seeds = [{c.seed for c in clips} for clips in ranks]
    assert len(seeds[0]) == len(seeds[1]) == 20 and not seeds[0] & seeds[1]
    again = take(S.ShapesStream(4, seed=3, rank=0, world_size=2), 20)
    assert [c.prompt for c in again] == [c.prompt for c in ranks[0]]
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(again, ranks[0]))
    other = take(S.ShapesStream(4, seed=4, rank=0, world_size=2), 20)
    assert not {c.seed for c in other} & seeds[0]
    assert all((c.colour, c.shape, c.motion) not in S.HELD_OUT for clips in ranks for c in clips)
    with pytest.raises(ValueError):
        S.ShapesStream(4, rank=2, world_size=2)


def test_stream_times_and_workers():
    def sample(rng):
        return S.frame_times(2, int(rng.integers(0, 4)))
    clips = take(S.ShapesStream(sample, seed=1, size=32), 12)
    assert len({len(c.times) for c in clips}) > 1
    assert all(c.frames.shape == (len(c.times), 32, 32, 3) for c in clips)
    assert [c.times for c in clips] == [c.times for c in take(S.ShapesStream(sample, seed=1, size=32), 12)]
    fixed = take(S.ShapesStream([0, 0.5, 1], split="heldout"), 3)
    assert all(c.times == (0.0, 0.5, 1.0) and (c.colour, c.shape, c.motion) in S.HELD_OUT for c in fixed)

    loader = torch.utils.data.DataLoader(S.ShapesStream(2, size=16), batch_size=None, num_workers=2)
    seeds = [clip.seed for clip in itertools.islice(loader, 12)]
    assert len(set(seeds)) == 12
