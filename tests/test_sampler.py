"""The batched sampler: settings are checked, rows are independent, and the draws follow the distribution."""
import math

import pytest
import torch

from flashvideo.sampler import Sampler, SamplingSettings, guide


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=11), "temperature"),
    (dict(temperature="1"), "temperature"),
    (dict(top_k=0), "use None to turn top-k off"),
    (dict(top_k=2.5), "top_k"),
    (dict(top_k=True), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(guidance_scale=-1), "guidance_scale"),
    (dict(guidance_scale=float("inf")), "guidance_scale"),
])
def test_bad_settings_are_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingSettings(**kwargs)


def test_resolve_takes_keywords_or_settings_but_not_conflicting_ones():
    assert SamplingSettings.resolve(temperature=0.5, top_k=None) == SamplingSettings(temperature=0.5)
    s = SamplingSettings(top_k=3, guidance_scale=2)
    assert SamplingSettings.resolve(s) is s and SamplingSettings.resolve(s, top_k=3) is s
    with pytest.raises(ValueError, match="top_k given both"):
        SamplingSettings.resolve(s, top_k=4)
    with pytest.raises(ValueError, match="top_k must be None or an integer in 1..16"):
        SamplingSettings(top_k=17).check_codes(16)


MIXED = [SamplingSettings(), SamplingSettings(temperature=0), SamplingSettings(temperature=0.7, top_k=3),
         SamplingSettings(top_p=0.6), SamplingSettings(temperature=1.3, top_k=5, top_p=0.9)]


@pytest.mark.parametrize("settings", [SamplingSettings(), SamplingSettings(top_k=4, top_p=0.8), MIXED])
def test_batched_draws_equal_one_row_at_a_time(settings):
    B, V = 5, 32
    logits = torch.randn(40, B, V, generator=torch.Generator().manual_seed(1))
    batched = Sampler(gens(*range(B)), settings)
    together = torch.stack([batched(step) for step in logits])  # (40, B)
    per_row = settings if isinstance(settings, list) else [settings] * B
    for r in range(B):
        alone = Sampler(gens(r), per_row[r])
        assert torch.equal(together[:, r], torch.stack([alone(step[r:r + 1])[0] for step in logits]))
    # a subset of rows (the rows that sample at a position) draws only from those rows' generators
    subset = Sampler(gens(*range(B)), settings)
    rows = [1, 3]
    got = torch.stack([subset(step[rows], rows) for step in logits])
    for i, r in enumerate(rows):
        alone = Sampler(gens(r), per_row[r])
        assert torch.equal(got[:, i], torch.stack([alone(step[r:r + 1])[0] for step in logits]))


def frequencies(sampler, logits, n):
    codes = torch.stack([sampler(logits[None])[0] for _ in range(n)])
    return torch.bincount(codes, minlength=logits.numel()).double() / n


def test_draws_follow_the_tempered_filtered_distribution():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    n = 6000
    for settings, keep in [(SamplingSettings(), 6), (SamplingSettings(temperature=0.5), 6),
                           (SamplingSettings(top_k=3), 3), (SamplingSettings(top_p=0.7), None)]:
        z = logits.double() / settings.temperature
        p = torch.softmax(z, -1)
        if settings.top_p:  # the most likely codes until their mass reaches p
            before = torch.cumsum(p, 0) - p
            keep = int((before < settings.top_p).sum())
        p = torch.where(torch.arange(6) < keep, p, torch.zeros_like(p))
        p = p / p.sum()
        f = frequencies(Sampler(gens(0), settings), logits, n)
        assert torch.all(f[keep:] == 0)
        assert float((f - p).abs().max()) < 4 * math.sqrt(0.25 / n)  # 4 sigma


def test_greedy_and_tiny_temperatures():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    g = gens(0, 1, 2)
    before = [x.get_state() for x in g]
    assert torch.equal(Sampler(g, SamplingSettings(temperature=0))(logits), logits.argmax(-1))
    assert all(torch.equal(b, x.get_state()) for b, x in zip(before, g))  # greedy draws no random numbers
    for t in (1e-300, 5e-324, 1e-30):
        assert torch.equal(Sampler(gens(0, 1, 2), SamplingSettings(temperature=t))(logits), logits.argmax(-1))
    tied = torch.tensor([[1.0, 3.0, 3.0, -2.0]])  # a tiny temperature samples among the tied maxima only
    codes = {int(Sampler(gens(s), SamplingSettings(temperature=1e-300))(tied)) for s in range(40)}
    assert codes == {1, 2}


def test_the_largest_uniform_never_picks_a_filtered_code(monkeypatch):
    logits = torch.tensor([[0.0, 5.0, 4.0, 3.0]])  # top_k=2 keeps codes 1 and 2; code 3 has weight 0
    s = Sampler(gens(0), SamplingSettings(top_k=2))
    monkeypatch.setattr(s, "_uniforms", lambda rows, greedy: [1 - 2 ** -53])
    assert int(s(logits)) == 2
    monkeypatch.setattr(s, "_uniforms", lambda rows, greedy: [0.0])
    assert int(s(logits)) == 1


def test_probabilities_of_the_drawn_codes():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    codes, probs = Sampler(gens(0, 1), [SamplingSettings(), SamplingSettings(temperature=0)]).sample(logits, with_probs=True)
    expected = torch.tensor([0.5, 0.3, 0.2])[codes[0]]
    assert torch.allclose(probs, torch.stack([expected, torch.tensor(0.8)]).double())


def test_nan_logits_and_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        Sampler(gens(0))(torch.full((1, 4), float("nan")))
    with pytest.raises(ValueError, match="expected"):
        Sampler(gens(0, 1))(torch.zeros(3, 4))


def test_rows_sharing_a_generator_draw_in_row_order():
    g = torch.Generator().manual_seed(3)
    codes = Sampler([g] * 4)(torch.zeros(4, 1000))
    g2 = torch.Generator().manual_seed(3)
    one_by_one = [int(Sampler([g2])(torch.zeros(1, 1000))) for _ in range(4)]
    assert codes.tolist() == one_by_one


def test_guide_is_uncond_plus_scale_times_difference():
    cond, uncond = torch.randn(2, 8), torch.randn(2, 8)
    assert torch.allclose(guide(cond, uncond, 3.0), uncond + 3 * (cond - uncond), atol=1e-6)
    assert torch.equal(guide(cond, uncond, 0.0), uncond) and torch.equal(guide(cond, uncond, 1.0), cond)


def test_a_model_carries_its_sampling_defaults_and_callers_override_them(tmp_path):
    from conftest import make_tiny_pipeline
    from flashvideo.config import FlashVideoConfig
    from flashvideo.pipeline import FlashVideoPipeline

    pipe = make_tiny_pipeline(sampling={"temperature": 0.0, "guidance_scale": 2.0})
    assert pipe.default_sampling == SamplingSettings(temperature=0.0, guidance_scale=2.0)
    loaded = FlashVideoPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "m"))
    assert loaded.config.sampling == {"temperature": 0.0, "guidance_scale": 2.0}
    codes = lambda p, **kw: [e.image for e in p.stream("red circle grows", key_frames=2, interp_frames=1, **kw)]  # noqa: E731
    same = codes(loaded, temperature=0.0, guidance_scale=2.0)
    assert all((a == b).all() for a, b in zip(codes(loaded), same))               # the model's defaults apply
    plain = make_tiny_pipeline()                                                  # same weights, neutral defaults
    assert plain.default_sampling == SamplingSettings()
    assert all((a == b).all() for a, b in zip(codes(plain, temperature=0.0, guidance_scale=2.0), same))
    assert loaded.check_settings(2, 1, 0.2, temperature=0.5).temperature == 0.5   # a caller's value wins
    for bad in ({"temperature": -1}, {"top_k": 0}, {"colour": 1}, [0.8]):
        with pytest.raises(ValueError, match="sampling"):
            FlashVideoConfig(sampling=bad)


def test_guide_interp_off_guides_key_frames_only():
    from conftest import make_tiny_pipeline

    pipe = make_tiny_pipeline()
    pipe.draft_len = 0  # token by token, where any change of the logits shows in the codes
    key_only = SamplingSettings(guidance_scale=3.0, guide_interp=False)
    run = lambda **kw: list(pipe.stream("red circle grows", key_frames=3, interp_frames=2, seed=4, **kw))  # noqa: E731
    guided, mixed = run(guidance_scale=3.0), run(sampling=key_only)
    assert all((g.image == m.image).all() for g, m in zip(guided, mixed) if g.kind == "key")
    assert any((g.image != m.image).any() for g, m in zip(guided, mixed) if g.kind != "key")
    text = pipe.encode_prompt("red circle grows")
    keys = list(pipe.key_frame_codes(text, 3, seed=4, guidance_scale=3.0))

    def mids(**kw):
        return [codes for *_, codes, _ in pipe.interpolation_codes(text, keys, 2, 0.2, 4, **kw)]

    assert all(torch.equal(a, b) for a, b in zip(mids(sampling=key_only), mids(guidance_scale=1.0)))
    assert key_only.for_interp() == SamplingSettings(guide_interp=False)
    assert SamplingSettings().for_interp() == SamplingSettings()
    with pytest.raises(ValueError, match="guide_interp"):
        SamplingSettings(guide_interp="no")


def test_lead_in_frames_are_drawn_first_and_not_shown():
    from conftest import make_tiny_pipeline

    pipe = make_tiny_pipeline()
    text = pipe.encode_prompt("red circle grows")

    def keys(lead_in, **kw):
        counts = {"steps": 0, "chunks": 0, "sampled": 0, "fed": 0}
        return torch.stack(list(pipe.key_frame_codes(text, 3, seed=4, lead_in=lead_in, counts=counts, **kw))), counts

    plain, plain_counts = keys(0)
    led, led_counts = keys(2)
    assert led.shape == plain.shape                                  # still 3 frames
    per_frame = plain_counts["sampled"] // 3
    assert led_counts["sampled"] == plain_counts["sampled"] + 2 * per_frame   # two more frames drawn
    assert not torch.equal(led, plain)
    # the lead-in frames take serial numbers 1 and 2, the video's key frames those after them
    assert pipe.layout.key_sns(3, 2) == [1, 2, 3, 4, 5] and pipe.layout.key_sns(3) == [1, 2, 3]
    with pytest.raises(ValueError, match="key_frames"):
        pipe.layout.key_sns(pipe.config.max_key_frames + 1, 1)
    given = plain[0]
    assert torch.equal(torch.stack(list(pipe.key_frame_codes(text, 3, seed=4, given=given, lead_in=2))),
                       torch.stack(list(pipe.key_frame_codes(text, 3, seed=4, given=given, lead_in=0))))  # given: none
    for bad in (-1, 5, 1.5, "1", True):
        with pytest.raises(ValueError, match="lead_in"):
            SamplingSettings(lead_in=bad)


def test_the_first_key_frame_is_the_likeliest_of_its_candidates():
    """Self-reranking (`flashvideo.rerank`): the first key frame is one of `first_candidates` frames drawn each from
    a generator of its own, the one of highest score (`rerank.score`); the video goes on from it as from a given
    first frame."""
    from dataclasses import replace

    from conftest import make_tiny_pipeline
    from flashvideo import rerank
    from flashvideo.layout import KEY, UNKNOWN
    from flashvideo.pipeline import _generator, child_seed

    pipe = make_tiny_pipeline()
    L, h, G = pipe.layout, pipe.layout.header_len, pipe.config.grid
    text = pipe.encode_prompt("red circle grows")
    for guidance in (1.0, 2.0):
        s = replace(pipe.default_sampling, lead_in=0, first_candidates=4, guidance_scale=guidance)
        counts = {"steps": 0, "chunks": 0, "sampled": 0, "fed": 0}
        keys = torch.stack(list(pipe.key_frame_codes(text, 3, seed=4, sampling=s, counts=counts)))
        unknown = torch.full((pipe.config.frame_tokens,), UNKNOWN)
        plan = torch.cat([L.header(KEY, text, 1), unknown])[None]
        twin = torch.cat([L.header(KEY, L.null_text(), 1), unknown])[None] if guidance != 1 else None
        drawn = torch.cat([pipe._decoder([_generator(child_seed(4, 2, c))], s, None).run(plan, twin)  # one at a time
                           for c in range(4)])
        scores = rerank.score(rerank.read(pipe.model, drawn)[0], drawn, h)
        assert len({tuple(r.tolist()) for r in drawn}) > 1                     # the candidates differ
        assert torch.equal(keys[0].flatten(), drawn[int(scores.argmax()), h:])
        given = torch.stack(list(pipe.key_frame_codes(text, 3, seed=4, given=keys[0], sampling=s)))
        assert torch.equal(keys, given)                                        # and the video goes on from it
        single = replace(s, first_candidates=1)
        alone = torch.stack(list(pipe.key_frame_codes(text, 3, seed=4, given=keys[0], sampling=single)))
        assert torch.equal(given, alone)                                       # a given first frame: no candidates
        assert counts["sampled"] == (4 + 2) * G * G                            # 4 candidates, then 2 key frames
    once = replace(pipe.default_sampling, lead_in=0)
    assert not torch.equal(torch.stack(list(pipe.key_frame_codes(text, 3, seed=4, sampling=once))), keys)
    for bad in (0, 9, 1.5, "2", True):
        with pytest.raises(ValueError, match="first_candidates"):
            SamplingSettings(first_candidates=bad)


def test_the_score_is_the_mean_log_probability_of_the_content_codes_token_by_token():
    """`rerank.score`: the mean log-probability, read token by token, of the codes other than the frame's most
    common one; a frame that is all one code scores -inf, so a candidate with content is kept over it."""
    from conftest import make_tiny_pipeline
    from flashvideo import rerank

    pipe = make_tiny_pipeline()
    model, h, n = pipe.model, pipe.layout.header_len, pipe.config.frame_tokens
    torch.manual_seed(1)
    rows = torch.randint(0, pipe.config.n_codes, (3, h + n))
    rows[0, h:] = 5
    rows[0, h + 3:h + 6] = torch.tensor([7, 8, 7])          # background 5; content at frame tokens 3, 4, 5
    rows[2, h:] = 9                                          # all one code: no content
    got = rerank.score(rerank.read(model, rows)[0], rows, h)
    for b in range(2):
        state, logp = None, []
        for t in range(rows.shape[1] - 1):
            logits, state = model.step(rows[b, t:t + 1], state, t)
            if t + 1 >= h:
                logp.append(float(torch.log_softmax(logits[0].double(), -1)[rows[b, t + 1]]))
        codes = rows[b, h:]
        content = [lp for lp, c in zip(logp, codes) if c != torch.mode(codes).values]
        assert len(content) == (3 if b == 0 else n - int((codes == torch.mode(codes).values).sum()))
        assert abs(float(got[b]) - sum(content) / len(content)) < 1e-4, (b, float(got[b]))
    assert got[2] == float("-inf") and int(got.argmax()) in (0, 1)


@pytest.mark.parametrize("settings", [SamplingSettings(temperature=1.0), SamplingSettings(temperature=0.7, top_k=3),
                                      SamplingSettings(temperature=1.2, top_p=0.8)])
def test_a_kept_or_replaced_draft_is_drawn_from_the_distribution(settings):
    """Speculative sampling is exact: keeping the draft with its probability, else drawing without it, gives each
    code the probability a plain draw gives it, whatever the draft (or none)."""
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]])
    sampler = Sampler([torch.Generator().manual_seed(0)], settings)
    w, _, _ = sampler._weights(logits, [0])
    p = (w / w.sum())[0].float()
    for draft in (0, 3, -1):  # the likeliest code, one that top-k / top-p may leave out, no draft
        n, seen = 20000, torch.zeros(5)
        for _ in range(n):
            seen[sampler.speculate(logits, [draft], [0])[0]] += 1
        assert (seen / n - p).abs().max() < 0.015, (draft, seen / n, p)


def test_speculation_stops_a_row_at_its_first_replaced_draft_and_draws_the_same_in_any_batch():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    greedy = Sampler([torch.Generator(), torch.Generator()], SamplingSettings(temperature=0))
    # row 0: keeps 0, replaces 0 by 1 (the likeliest) and stops; row 1: keeps its one draft
    assert greedy.speculate(logits, [0, 0, 2, 0], [0, 0, 0, 1]) == [0, 1, None, 0]

    def sampler(*seeds):
        return Sampler([torch.Generator().manual_seed(s) for s in seeds], SamplingSettings(temperature=1.0))
    both = sampler(1, 2)
    both.speculate(logits[:2], [0, 1], [0, 0])
    together = both.speculate(logits[2:], [2, 0], [0, 1])
    assert together[1] == sampler(2).speculate(logits[3:], [0], [0])[0]  # row 1 draws as it does alone
