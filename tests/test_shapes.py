"""The synthetic shapes world: rendering, time model, splits, prompts, detector and training stream."""
import itertools

import numpy as np
import pytest

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


def test_length_rule_wraps_position_and_size_for_any_length():
    times = np.arange(0, 200, 1.0)
    for (shape, motion), seed in itertools.product(itertools.product(S.SHAPES, S.MOTIONS), range(3)):
        m = S.measure(S.render("white", shape, motion, seed, times))
        assert (m["area"] >= 20).all(), (shape, motion, seed)           # never leaves, never vanishes
        st = S.steps(m, 64)
        if motion.startswith("moves"):
            ux, uy = S._VELOCITY[motion]
            assert np.allclose(st["dx"], ux * S.SPEED, atol=1) and np.allclose(st["dy"], uy * S.SPEED, atol=1)
            assert np.ptp(m["area"]) <= 0.1 * m["area"].mean()           # a wrapped object keeps its area
        else:
            sign = 1 if motion == "grows" else -1
            assert np.allclose(st["ds"], sign * S.GROWTH, atol=1.2), (shape, motion, seed)
            lo, hi = np.nanmin(m["size"]), np.nanmax(m["size"])
            assert S.SIZE_RANGE[0] - 2 <= lo and hi <= S.SIZE_RANGE[1] + 2


@pytest.mark.parametrize("size", [64, 128])
def test_motion_runs_at_a_fixed_rate(size):
    k = size / 64
    for seed in range(4):
        for motion in S.MOTIONS:
            cx, cy, s = S.state_at(motion, 10.0, 20.0, 12.0 * k, [0, 1, 2], size)
            ux, uy = S._VELOCITY.get(motion, (0, 0))
            assert np.allclose(S.wrapped(np.diff(cx), size), ux * S.SPEED * k)
            assert np.allclose(S.wrapped(np.diff(cy), size), uy * S.SPEED * k)
            rate = {"grows": 1, "shrinks": -1}.get(motion, 0)
            assert np.allclose(np.diff(s), rate * S.GROWTH * k)
            m = S.measure(S.render("red", "square", motion, seed, [0, 1], size))
            assert abs(S.motion_effects(m, size)[motion] - (S.SPEED if rate == 0 else S.SIZE_WEIGHT * S.GROWTH)) <= 1.5


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
    assert clip.prompt == S.make_prompt(clip.colour, clip.shape, clip.motion)
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


@pytest.mark.parametrize("corruption", ["clean", "noise", "blur+noise"])
def test_describe_recovers_every_combination(corruption):
    rng = np.random.default_rng(0)
    wrong = []
    for i, combo in enumerate(S.ALL_COMBOS):
        frames = S.render(*combo, seed=i, times=np.arange(13) / 4)
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


def test_a_one_pixel_drift_is_not_motion():
    still = S.render("red", "square", "moves right", 3, [0] * 13)
    drift = np.stack([np.roll(f, i // 12, axis=1) for i, f in enumerate(still)])   # 1 px over the video
    assert S.describe(drift)["motion"] is None


def test_measure_reads_an_object_split_across_the_edge_as_one():
    frames = S.render("blue", "circle", "moves right", 0, [0])
    split = np.roll(frames, 32 - int(S.measure(frames)["cx"][0]), axis=2)            # centre on the left edge
    split = np.roll(split, -32, axis=2)
    m, whole = S.measure(split), S.measure(frames)
    assert m["shapes"] == ["circle"] and m["area"][0] == whole["area"][0]
