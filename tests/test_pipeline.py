"""Generation with a tiny random model: streaming order, inheritance, batching, seeds, bad input."""
import numpy as np
import pytest
import torch

from flashvideo.sampler import Sampler
from flashvideo.regions import INHERITABLE

PROMPT = "a red circle moves right"


def test_stream_yields_every_frame_once_in_order(tiny_pipe):
    K, n = 4, 3
    events = list(tiny_pipe.stream(PROMPT, key_frames=K, interp_frames=n, inherit_ratio=0.2, seed=1))
    assert len(events) == K + (K - 1) * n
    # key frames first, at 0, n+1, 2(n+1), ...; then the in-between frames
    assert [e.index for e in events[:K]] == [0, 4, 8, 12]
    assert all(e.kind == "key" and e.regions is None for e in events[:K])
    assert all(e.kind == "interpolated" and e.regions.shape == (4, 4) for e in events[K:])
    assert sorted(e.index for e in events) == list(range(len(events)))
    assert all(e.image.shape == (16, 16, 3) and e.image.dtype == np.uint8 for e in events)
    assert set(np.unique(np.concatenate([e.regions.ravel() for e in events[K:]]))) <= {
        "different", "unstable", "stable", "inheritable"}


def test_video_call_and_save(tiny_pipe, tmp_path):
    video = tiny_pipe(PROMPT, key_frames=3, interp_frames=2, seed=0)
    assert video.frames.shape == (3 + 2 * 2, 16, 16, 3)
    assert video.kinds == ["key", "interpolated", "interpolated", "key", "interpolated", "interpolated", "key"]
    import imageio.v3 as iio

    for name in ("out.gif", "out.mp4"):
        path = video.save(tmp_path / name, scale=2)
        back = iio.imread(path, index=None)
        assert back.shape[0] == 7 and back.shape[1:3] == (32, 32)


def test_same_seed_same_video_and_different_seed_differs(tiny_pipe):
    a = tiny_pipe(PROMPT, key_frames=3, interp_frames=2, seed=7).frames
    b = tiny_pipe(PROMPT, key_frames=3, interp_frames=2, seed=7).frames
    c = tiny_pipe(PROMPT, key_frames=3, interp_frames=2, seed=8).frames
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_batched_pairs_equal_one_pair_at_a_time(tiny_pipe, ratio):
    kw = dict(key_frames=4, interp_frames=2, inherit_ratio=ratio, seed=3)
    batched = tiny_pipe(PROMPT, batch_pairs=True, **kw)
    single = tiny_pipe(PROMPT, batch_pairs=False, **kw)
    assert np.array_equal(batched.frames, single.frames)
    assert all((r1 is None and r2 is None) or np.array_equal(r1, r2) for r1, r2 in zip(batched.regions, single.regions))


def similar_keys(G=4):
    """Two pairs of key frames that differ in one token each, so most tokens are stable."""
    a = torch.arange(G * G).view(G, G) % 16
    b = a.clone()
    b[0, 0] = (a[0, 0] + 1) % 16
    c = b.clone()
    c[3, 3] = (b[3, 3] + 1) % 16
    return [a, b, c]


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.5, 1.0])
def test_inherited_tokens_are_copied_never_sampled(tiny_pipe, monkeypatch, ratio):
    drawn, real = [], Sampler.__call__

    def counting(self, *args, **kwargs):
        codes = real(self, *args, **kwargs)
        drawn.append(len(codes))
        return codes

    monkeypatch.setattr(Sampler, "__call__", counting)
    monkeypatch.setattr(tiny_pipe, "draft_len", 0)  # token by token: one recurrent step per position sampled
    keys, n = similar_keys(), 3
    text = tiny_pipe.encode_prompt(PROMPT)
    counts = {}
    out = list(tiny_pipe.interpolation_codes(text, keys, n, ratio, seed=0, counts=counts))
    assert len(out) == 2 * n
    inherited = 0
    for p, j, codes, regions in out:
        mask = regions == INHERITABLE
        assert torch.equal(codes[mask], keys[p][mask])  # copied from key frame A
        inherited += int(mask.sum())
    total = 2 * n * 16
    # one batched draw per step, one code per row that samples there: inherited tokens are never drawn
    assert len(drawn) == counts["steps"] and sum(drawn) == counts["sampled"] == total - inherited
    # a position is a recurrent step if either pair samples there
    union = sum(int(((out[0][3] != INHERITABLE) | (out[n][3] != INHERITABLE)).sum()) for _ in range(n))
    assert counts["steps"] == union
    if ratio == 1.0:
        assert inherited == 2 * n * (16 - 4)  # all stable tokens: 16 minus 1 different and 3 unstable (corner)


def test_region_map_drawn_from_pair_seed(tiny_pipe):
    keys = similar_keys()
    text = tiny_pipe.encode_prompt(PROMPT)
    r1 = [r for *_, r in tiny_pipe.interpolation_codes(text, keys, 1, 0.5, seed=0)]
    r2 = [r for *_, r in tiny_pipe.interpolation_codes(text, keys, 1, 0.5, seed=0)]
    assert all(torch.equal(a, b) for a, b in zip(r1, r2))


def test_first_frame_is_kept(tiny_pipe):
    image = np.zeros((40, 30), np.uint8)  # grey and the wrong size: converted and resized
    given = tiny_pipe.encode_image(image)
    text = tiny_pipe.encode_prompt(PROMPT)
    counts = {}
    keys = list(tiny_pipe.key_frame_codes(text, 3, seed=0, given=given, counts=counts))
    assert torch.equal(keys[0], given)
    assert counts["sampled"] == 2 * 16
    events = list(tiny_pipe.stream(PROMPT, key_frames=2, interp_frames=0, first_frame=image))
    assert events[0].stats["tokens_sampled"] == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompt=""), "empty prompt"),
    (dict(prompt="   "), "empty prompt"),
    (dict(prompt="a green circle moves right"), "green"),
    (dict(prompt="red red red red red"), "at most"),
    (dict(key_frames=1), "key_frames"),
    (dict(key_frames=6), "key_frames"),
    (dict(key_frames=2.5), "key_frames"),
    (dict(interp_frames=5), "interp_frames"),
    (dict(interp_frames=-1), "interp_frames"),
    (dict(inherit_ratio=1.5), "inherit_ratio"),
    (dict(inherit_ratio="0.2"), "inherit_ratio"),
    (dict(temperature=-1), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(seed=-3), "seed"),
    (dict(first_frame=np.zeros((3,))), "image"),
])
def test_bad_input_is_a_clear_value_error(tiny_pipe, kwargs, match):
    kw = {"prompt": PROMPT, **kwargs}
    with pytest.raises(ValueError, match=match):
        next(iter(tiny_pipe.stream(kw.pop("prompt"), **kw)))


# ------------------------------------------------------------------------------ sampling settings and guidance

def test_sampling_settings_object_equals_the_keywords(tiny_pipe):
    from flashvideo.sampler import SamplingSettings

    kw = dict(key_frames=3, interp_frames=1, seed=4)
    a = tiny_pipe(PROMPT, temperature=0.8, top_k=5, top_p=0.9, **kw).frames
    b = tiny_pipe(PROMPT, sampling=SamplingSettings(temperature=0.8, top_k=5, top_p=0.9), **kw).frames
    assert np.array_equal(a, b)


def test_tiny_temperature_is_greedy_not_nan(tiny_pipe):
    kw = dict(key_frames=3, interp_frames=2, seed=2)
    assert np.array_equal(tiny_pipe(PROMPT, temperature=1e-300, **kw).frames, tiny_pipe(PROMPT, temperature=0, **kw).frames)


@pytest.mark.parametrize("negative", [None, "a blue square moves left"])
def test_guided_batched_pairs_equal_one_pair_at_a_time(tiny_pipe, negative, monkeypatch):
    kw = dict(key_frames=4, interp_frames=2, inherit_ratio=0.3, seed=5, guidance_scale=3.0, negative_prompt=negative)
    for drafts in (8, 0):  # drafted (the default) and token by token
        monkeypatch.setattr(tiny_pipe, "draft_len", drafts)
        batched = tiny_pipe(PROMPT, batch_pairs=True, **kw)
        single = tiny_pipe(PROMPT, batch_pairs=False, **kw)
        assert np.array_equal(batched.frames, single.frames)
    # token by token, where any change of the logits shows in the codes: guidance changes the video
    unguided = tiny_pipe(PROMPT, **{**kw, "guidance_scale": 1.0, "negative_prompt": None})
    assert not np.array_equal(batched.frames, unguided.frames)


def test_guidance_zero_follows_the_negative_prompt_alone(tiny_pipe):
    """s = 0 samples from the unconditional twin's logits, and the twin is fed what it sampled: the video
    is the unguided video of the negative prompt (the same generators, the same tokens)."""
    other = "a blue square moves left"
    kw = dict(key_frames=3, interp_frames=2, inherit_ratio=0.2, seed=9)
    guided = tiny_pipe(PROMPT, guidance_scale=0.0, negative_prompt=other, **kw).frames
    assert np.array_equal(guided, tiny_pipe(other, **kw).frames)


def test_the_twin_reads_the_null_text_and_is_fed_the_rows_codes(tiny_pipe):
    from flashvideo.sampler import SamplingSettings
    from flashvideo.sampling import Decoder

    seen = []

    class Recorder(torch.nn.Module):
        def prefill(self, idx, state=None, offset=0):
            seen.append(idx.clone())
            return tiny_pipe.model.prefill(idx, state, offset)

        def step(self, idx, state, offset):
            seen.append(idx[:, None].clone())
            return tiny_pipe.model.step(idx, state, offset)

    L, c = tiny_pipe.layout, tiny_pipe.config
    text = tiny_pipe.encode_prompt(PROMPT)
    dec = Decoder(Recorder(), [torch.Generator().manual_seed(0)], SamplingSettings(guidance_scale=2.0))
    frame = torch.full((c.frame_tokens,), -1)
    out = dec.run(torch.cat([L.header(0, text, 1), frame])[None],
                  torch.cat([L.header(0, L.null_text(), 1), frame])[None])
    fed = torch.cat(seen, 1)  # (2, tokens fed): the row, then its twin
    assert fed.shape[0] == 2
    assert torch.equal(fed[0, 1:1 + c.text_len], text)
    assert torch.equal(fed[1, 1:1 + c.text_len], torch.full((c.text_len,), c.text_offset))  # all padding
    assert torch.equal(fed[0, L.header_len:], fed[1, L.header_len:])  # the same sampled codes
    assert torch.equal(out[0, L.header_len:L.header_len + fed.shape[1] - L.header_len], fed[0, L.header_len:])
    assert dec.counts["sampled"] == c.frame_tokens


@pytest.mark.parametrize("kwargs, match", [
    (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(top_p=0.0), "top_p"),
    (dict(negative_prompt="a blue square"), "guidance_scale"),
    (dict(guidance_scale=2.0, negative_prompt="a green square"), "green"),
    (dict(top_k=3, sampling="greedy"), "SamplingSettings"),
])
def test_bad_sampling_input_is_a_clear_value_error(tiny_pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        next(iter(tiny_pipe.stream(PROMPT, **kwargs)))


def test_settings_given_twice_must_agree(tiny_pipe):
    from flashvideo.sampler import SamplingSettings

    with pytest.raises(ValueError, match="both"):
        next(iter(tiny_pipe.stream(PROMPT, top_k=4, sampling=SamplingSettings(top_k=3))))


def test_code_generators_take_sampling_keywords_too(tiny_pipe):
    from flashvideo.sampler import SamplingSettings

    text = tiny_pipe.encode_prompt(PROMPT)
    a = list(tiny_pipe.key_frame_codes(text, 2, seed=1, temperature=0.5, top_k=4))
    b = list(tiny_pipe.key_frame_codes(text, 2, seed=1, sampling=SamplingSettings(temperature=0.5, top_k=4)))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = [codes for *_, codes, _ in tiny_pipe.interpolation_codes(text, a, 1, 0.2, 1, guidance_scale=2.0)]
    d = [codes for *_, codes, _ in tiny_pipe.interpolation_codes(text, a, 1, 0.2, 1, sampling=SamplingSettings(guidance_scale=2.0))]
    assert all(torch.equal(x, y) for x, y in zip(c, d))
    with pytest.raises(TypeError, match="unknown sampling keywords"):
        next(tiny_pipe.key_frame_codes(text, 2, seed=1, temprature=0.5))


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_drafted_decoding_draws_what_token_by_token_decoding_draws(tiny_pipe, monkeypatch, guidance):
    """Greedy, speculative decoding must give exactly the token-by-token video, for any number of drafted codes per
    pass; and it takes fewer passes than codes it samples (drafts from the frame before are often right)."""
    run = dict(key_frames=4, interp_frames=2, seed=0, temperature=0, guidance_scale=guidance)
    monkeypatch.setattr(tiny_pipe, "draft_len", 0)
    plain = tiny_pipe(PROMPT, **run)
    for n in (1, 3, 8):
        monkeypatch.setattr(tiny_pipe, "draft_len", n)
        drafted = tiny_pipe(PROMPT, **run)
        assert all(np.array_equal(a, b) for a, b in zip(plain.frames, drafted.frames)), n
    counts = {}
    text = tiny_pipe.encode_prompt(PROMPT)
    keys = list(tiny_pipe.key_frame_codes(text, 4, 0, temperature=0, guidance_scale=guidance, lead_in=0,
                                          counts=counts))
    assert len(keys) == 4 and counts["steps"] == 0  # every code through drafted passes
    assert 4 <= counts["passes"] < 4 * tiny_pipe.config.frame_tokens  # a pass checks up to 8 drafted codes


def test_drafted_decoding_draws_each_code_from_the_models_distribution(tiny_pipe):
    """Temperature 1, drafts that are often wrong (a given one, then the code before again): every code is decided
    (none left unknown), and the first two codes' frequencies over many seeds match the model's own probabilities,
    computed exactly in one forward pass (the second code's: summed over the first)."""
    from flashvideo.layout import KEY, UNKNOWN
    from flashvideo.sampler import SamplingSettings
    from flashvideo.sampling import Decoder

    L = tiny_pipe.layout
    header = L.header(KEY, tiny_pipe.encode_prompt(PROMPT), 1)
    plan = torch.cat([header, torch.full((5,), UNKNOWN)])[None]
    draft = torch.cat([torch.full((len(header),), UNKNOWN), torch.tensor([3, UNKNOWN, UNKNOWN, 7, UNKNOWN])])[None]
    n, seen = 2000, torch.zeros(2, tiny_pipe.config.n_codes)
    for seed in range(n):
        dec = Decoder(tiny_pipe.model, [torch.Generator().manual_seed(seed)], SamplingSettings(temperature=1.0),
                      draft_len=3)
        codes = dec.run(plan, draft=draft)[0, len(header):]
        assert (codes != UNKNOWN).all()
        seen[0, codes[0]] += 1
        seen[1, codes[1]] += 1
    V = tiny_pipe.config.n_codes
    with torch.no_grad():
        first = tiny_pipe.model(header[None])[0][0, -1].softmax(-1)                      # p(x1)
        pairs = torch.cat([header[None].repeat(V, 1), torch.arange(V)[:, None]], 1)
        second = (first[:, None] * tiny_pipe.model(pairs)[0][:, -1].softmax(-1)).sum(0)  # sum over x1 of p(x1) p(x2 | x1)
    assert (seen[0] / n - first).abs().max() < 0.04 and (seen[1] / n - second).abs().max() < 0.04


def test_drafted_codes_do_not_depend_on_how_many_a_pass_checks(tiny_pipe, monkeypatch):
    """Each code is decided by its own draft and uniform numbers, so passes of 9, 3 or 2 tokens, and recurrent
    steps (a batch too big for passes), draw the same video: a request draws the same frames in any batch."""
    from flashvideo.sampling import Decoder

    run = dict(key_frames=4, interp_frames=2, seed=3, guidance_scale=2.0, temperature=1.0)
    videos = []
    for tokens in (9, 3, 2, 1):
        monkeypatch.setattr(Decoder, "pass_len", lambda self, rows, t=tokens: t)
        videos.append(tiny_pipe(PROMPT, **run).frames)
    assert all(np.array_equal(videos[0], v) for v in videos[1:])
    monkeypatch.setattr(tiny_pipe, "draft_len", 0)
    assert not np.array_equal(videos[0], tiny_pipe(PROMPT, **run).frames)  # token by token draws other codes


def test_a_key_frames_draft_follows_an_object_that_crosses_a_patch_every_two_frames():
    """`frame_draft`: with fewer than three frames, the last; an object one patch on every two frames (the shapes
    world's 4 px a key frame on 8 px patches) is drafted where it will be; a still or unpredictable one, the last."""
    from flashvideo.sampling import frame_draft

    def frame(x, code):  # background 0, an object at column x
        f = torch.zeros(8, 8, dtype=torch.long)
        f[3:5, x % 8] = code
        return f

    moving = [frame(2, 5), frame(2, 6), frame(3, 5), frame(3, 6)]  # half a patch a frame: codes alternate
    assert frame_draft([]) is None and torch.equal(frame_draft(moving[:2]), moving[1])
    assert torch.equal(frame_draft(moving[:3]), frame(3, 6)) and torch.equal(frame_draft(moving), frame(4, 5))
    still = [frame(2, 5)] * 3
    assert torch.equal(frame_draft(still), still[-1])
    jumpy = [frame(1, 5), frame(6, 6), frame(3, 7)]
    assert torch.equal(frame_draft(jumpy), jumpy[-1])
