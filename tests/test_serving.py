"""Batched serving (flashvideo.serving): concurrent requests decoded together each get exactly the frames they get
alone; a cancelled, failing or refused request leaves the others' frames alone; room is bounded; and four clients
of the app, served at once, each get their own video."""
import threading
import time

import numpy as np
import pytest
import torch
from gradio_client import Client

from flashvideo import demo as lib, serving
from flashvideo.layout import UNKNOWN
from flashvideo.retnet import step_rotation
from flashvideo.sampling import Decoder
from flashvideo.sampler import SamplingSettings
from test_app import PROMPT, VIEW, checkpoint, live, load_app, serve, shown  # noqa: F401 (checkpoint: a fixture)

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):Warning")  # gradio's pandas use
FIRST = np.full((16, 16, 3), 90, np.uint8)
REQUESTS = [  # different prompts, seeds, lengths, ρ and sampling settings; one guided, one greedy, one given frame
    ("a red circle moves right", dict(key_frames=4, interp_frames=3, inherit_ratio=0.2, seed=1)),
    ("a blue square grows", dict(key_frames=3, interp_frames=2, inherit_ratio=0.5, seed=2, temperature=0.7, top_k=5)),
    ("a red square moves left", dict(key_frames=5, interp_frames=1, inherit_ratio=0.0, seed=3, top_p=0.8,
                                     guidance_scale=2.0, negative_prompt="a blue circle")),
    ("a blue circle moves right", dict(key_frames=2, interp_frames=4, inherit_ratio=1.0, seed=4, temperature=0.0)),
    ("a red circle grows", dict(key_frames=3, interp_frames=2, inherit_ratio=0.5, seed=5, first_frame=FIRST)),
    ("a blue square moves left", dict(key_frames=3, interp_frames=1, seed=6,          # a reranked first key frame
                                      sampling=SamplingSettings(temperature=0.8, first_candidates=3))),
]


def assert_same(events, expected):
    assert [(e.index, e.kind) for e in events] == [(e.index, e.kind) for e in expected]
    for e, x in zip(events, expected):
        assert np.array_equal(e.image, x.image)
        assert (e.regions is None and x.regions is None) or np.array_equal(e.regions, x.regions)


@pytest.fixture(scope="module")
def solo(tiny_pipe):
    """Every request decoded alone by the pipeline."""
    return [list(tiny_pipe.stream(prompt, **kw)) for prompt, kw in REQUESTS]


def watched(server, batch_seconds=0.002):
    """Record the requests and rows of every batch (a frame or a known span of each waiting request), and make each
    batch a little slower, so that requests started together surely overlap."""
    batches, decode = [], server._decode_together

    def recorded(asks):
        batches.append((len(asks), sum(len(tokens) for _, tokens, _ in asks)))
        time.sleep(batch_seconds)
        return decode(asks)

    server._decode_together = recorded
    return batches


def together(server, requests, read=lambda i, events: list(events)):
    """Every request read by a thread of its own, all asking at once: {i: what read returned, or its exception}."""
    results, go = {}, threading.Barrier(len(requests))

    def user(i, prompt, kw):
        go.wait()
        try:
            results[i] = read(i, server.stream(prompt, **kw))
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=user, args=(i, p, kw)) for i, (p, kw) in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def assert_idle(server):
    for _ in range(200):  # a cancelled request's thread leaves at its next step
        if (server.rows, server.running, server.waiting, list(server.line)) == (0, 0, [], []):
            return
        time.sleep(0.01)
    raise AssertionError(f"server still busy: {server.rows} rows, {server.running} running")


def test_concurrent_requests_get_exactly_their_own_frames(tiny_pipe, solo):
    """The no-leak test: five requests with different prompts, seeds and settings share batches, and each gets the
    frames it gets alone."""
    server = serving.Server(tiny_pipe)
    batches = watched(server)
    results = together(server, REQUESTS)
    for i in range(len(REQUESTS)):
        assert_same(results[i], solo[i])
    assert max(n for n, _ in batches) >= 3           # requests really shared their steps
    assert_idle(server)


def test_a_cancelled_request_leaves_the_others_alone(tiny_pipe, solo):
    server = serving.Server(tiny_pipe)
    watched(server)

    def read(i, events):
        if i != 0:
            return list(events)
        got = [next(events), next(events)]
        events.close()                                # what Gradio's Stop does to the app's generator
        return got

    results = together(server, REQUESTS, read)
    assert_same(results[0], solo[0][:2])
    for i in range(1, len(REQUESTS)):
        assert_same(results[i], solo[i])
    assert_idle(server)
    alone = serving.Server(tiny_pipe)                  # the cancelled request stopped decoding: fewer rows stepped
    together(alone, REQUESTS)
    assert server.rows_stepped < alone.rows_stepped


def test_a_failing_request_leaves_the_others_alone(tiny_pipe, solo):
    """A consumer that raises mid-video, and a request the pipeline refuses, fail alone."""
    server = serving.Server(tiny_pipe)
    watched(server)

    def read(i, events):
        got = []
        for ev in events:
            got.append(ev)
            if i == 1 and len(got) == 3:
                raise RuntimeError("the consumer broke")
        return got

    requests = REQUESTS + [("a dog moves right", dict(seed=9))]
    results = together(server, requests, read)
    assert isinstance(results[1], RuntimeError)
    refused = results[len(REQUESTS)]
    assert isinstance(refused, ValueError) and "dog" in str(refused)
    for i in [0, *range(2, len(REQUESTS))]:
        assert_same(results[i], solo[i])
    assert_idle(server)


def test_a_slow_consumer_gets_the_frames_decoded_meanwhile_together(tiny_pipe, solo):
    prompt, kw = REQUESTS[0]
    server = serving.Server(tiny_pipe)
    groups = []
    for ready in server.stream_ready(prompt, **kw):
        groups.append(ready)
        time.sleep(0.3)                                   # a page update slower than decoding
    assert_same([ev for g in groups for ev in g], solo[0])   # every frame, in the pipeline's order
    assert 1 <= len(groups) < len(solo[0]) and all(groups)
    assert_idle(server)


def test_a_request_goes_on_to_its_next_frames_while_its_images_are_drawn(tiny_pipe, solo, monkeypatch):
    """Images are drawn on the server's own thread: with drawing held up, the request still decodes its whole video
    (the batches do not wait for its images); once drawing goes on, the consumer gets every frame as alone."""
    prompt, kw = REQUESTS[0]
    server, gate, draw = serving.Server(tiny_pipe), threading.Event(), tiny_pipe.decode_frame
    monkeypatch.setattr(tiny_pipe, "decode_frame", lambda codes: gate.wait(30) and draw(codes))
    got = []
    reader = threading.Thread(target=lambda: got.extend(server.stream(prompt, **kw)))
    reader.start()
    deadline = time.time() + 30
    while server.rows and time.time() < deadline:         # the request leaves once its video is decoded
        time.sleep(0.01)
    assert server.rows == 0 and not got                    # decoded to the end, and no image drawn yet
    gate.set()
    reader.join(30)
    assert_same(got, solo[0])
    assert_idle(server)


def test_paced_lists_come_at_most_that_often_and_hold_every_frame(tiny_pipe, solo):
    prompt, kw = REQUESTS[0]
    server = serving.Server(tiny_pipe)
    times, groups = [], []
    for ready in server.stream_ready(prompt, pace=0.25, **kw):
        times.append(time.perf_counter())
        groups.append(ready)
    assert_same([ev for g in groups for ev in g], solo[0])
    assert 1 <= len(groups) < len(solo[0])
    assert all(b - a >= 0.24 for a, b in zip(times, times[1:-1]))   # the last frame does not wait
    assert_idle(server)


def test_room_is_bounded_and_later_requests_wait(tiny_pipe, solo):
    """At most max_rows rows per step (a request counts its most rows: pairs, twice when guided); a request larger
    than the room runs alone; every request completes with its own frames."""
    server = serving.Server(tiny_pipe, max_rows=4)
    batches = watched(server)
    results = together(server, REQUESTS)
    for i in range(len(REQUESTS)):
        assert_same(results[i], solo[i])
    guided = 2 * (REQUESTS[2][1]["key_frames"] - 1)     # 8 rows: more than the room, so alone
    assert all(rows <= 4 or (n, rows) == (1, guided) for n, rows in batches)
    assert max(rows for _, rows in batches) == guided
    assert [server._rows(p, **kw) for p, kw in REQUESTS] == [3, 2, 8, 1, 2, 3]
    key_guided = SamplingSettings(guidance_scale=2.0, guide_interp=False)   # in-between frames without twins
    assert [server._rows(PROMPT, key_frames=k, interp_frames=1, sampling=key_guided) for k in (5, 2)] == [4, 2]
    assert_idle(server)


def test_a_step_over_rows_at_different_positions_equals_each_rows_own_step(tiny_pipe):
    model, c = tiny_pipe.model, tiny_pipe.config
    for positions in ([3, 40, 40, 1000, 0], [3, 40, 40, 1000, 70000]):   # 70000: past the cached rotation table
        rot = step_rotation(positions, c.d_model, c.n_heads)
        assert rot.shape == (5, 2, 2 * c.d_model)
        for b, p in enumerate(positions):
            assert torch.equal(rot[b], step_rotation(p, c.d_model, c.n_heads))
    torch.manual_seed(0)
    _, state = model.prefill(torch.randint(0, c.n_codes, (5, 7)))
    idx = torch.randint(0, c.n_codes, (5,))
    logits, new_state = model.step(idx, state, positions)
    for b, p in enumerate(positions):
        own, own_state = model.step(idx[b:b + 1], [s[b:b + 1] for s in state], p)
        torch.testing.assert_close(logits[b:b + 1], own, rtol=1e-5, atol=1e-6)  # a GEMM over 5 rows vs a GEMV
        for s, o in zip(new_state, own_state):
            torch.testing.assert_close(s[b:b + 1], o, rtol=1e-5, atol=1e-6)


def test_decoders_run_together_give_each_its_own_tokens(tiny_pipe):
    """`Decoder.together`: three decoders at different positions (one with nothing fed yet), with different sampling
    (guided with its twins; two alike, whose rows one Sampler call draws) and different unknown positions, decoded
    as one batch, each get the tokens, state and position they get alone."""
    model, c = tiny_pipe.model, tiny_pipe.config
    settings = [SamplingSettings(temperature=0.9, guidance_scale=2.0), SamplingSettings(top_k=5),
                SamplingSettings(top_k=5)]
    torch.manual_seed(0)
    history = [torch.randint(0, c.n_codes, (2, 9)), torch.randint(0, c.n_codes, (2, 30)), None]
    plans = torch.randint(0, c.n_codes, (5, 12))
    plans[:, 4:] = UNKNOWN
    plans[3:, 2] = UNKNOWN                     # some rows also sample at 2
    plans[2, 7] = 3                            # a known code between sampled ones
    plans[4, 1:] = torch.randint(0, c.n_codes, (11,))
    plans[4, 6] = UNKNOWN
    blocks = [plans[0:2], plans[2:4], plans[4:5]]  # the guided decoder: row 0 and its twin, row 1

    def decoders():
        out = []
        for k, (s, h) in enumerate(zip(settings, history)):
            gens = [torch.Generator().manual_seed(10 + k + r) for r in range(1 if s.guided or k == 2 else 2)]
            dec = Decoder(model, gens, s)
            if h is not None:
                dec._feed(h[:dec.rows])
            out.append(dec)
        return out

    alone = decoders()
    expected = [dec._run(b.clone()) for dec, b in zip(alone, blocks)]
    merged_from = decoders()
    merged = Decoder.together(merged_from)
    got = merged._run(torch.cat(blocks).clone()).split([dec.rows for dec in merged_from])
    merged.scatter(merged_from)
    for dec, solo, e, g in zip(merged_from, alone, expected, got):
        assert torch.equal(g, e)
        assert dec.pos == solo.pos
        for a, b in zip(dec.state, solo.state):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert torch.equal(got[0][0, 4:], got[0][1, 4:])   # a twin is fed the code its row drew
    assert len(merged.draws) == 2              # one Sampler call per distinct settings


# ------------------------------------------------------------------------ through the app

@pytest.fixture(scope="module")
def app(checkpoint):  # noqa: F811
    """The app as `python app.py` builds it, on the tiny checkpoint, and its pipeline's server (batches slowed a
    little and recorded, so that clients asking together surely overlap)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(lib.MODEL_ENV, str(checkpoint))
        demo = load_app().build_demo()
        url, _ = serve(demo)
        server = serving.shared(lib.load_pipeline(checkpoint))
        yield url, server, watched(server, batch_seconds=0.005)
        demo.close()


APP_REQUESTS = [(PROMPT, 5, 4, 0.2, 11, 1.0, 0), ("a blue square grows", 4, 3, 0.5, 12, 0.8, 5),
                ("a red square moves left", 3, 4, 0.0, 13, 0.0, 0), ("a blue circle grows", 5, 2, 1.0, 14, 1.2, 3)]


def as_stream(request):
    """An app request (prompt, K, n, ρ, seed, temperature, top-k) as the pipeline's (prompt, keywords)."""
    prompt, K, n, rho, seed, temperature, top_k = request
    return prompt, dict(key_frames=K, interp_frames=n, inherit_ratio=rho, seed=seed, temperature=temperature,
                        top_k=top_k or None)


def assert_own_frames(updates, tiny_pipe, request):
    """The frames a client was shown (the last update is the finished video) are those of its request alone."""
    prompt, kw = as_stream(request)
    for update, ev, _ in live(updates, list(tiny_pipe.stream(prompt, **kw))):
        assert np.array_equal(shown(update[VIEW])[0], ev.image)


def submit(url, request):
    prompt, K, n, rho, seed, temperature, top_k = request
    client = Client(url, analytics_enabled=False, verbose=False, download_files=False)  # a session of its own
    return client.submit(prompt, None, K, n, rho, seed, False, temperature, top_k, api_name="/generate")


def test_four_clients_at_once_each_get_their_own_frames(app, tiny_pipe):
    url, server, batches = app
    batches.clear()
    jobs = [submit(url, r) for r in APP_REQUESTS]
    updates = [list(job) for job in jobs]
    for job, ups, request in zip(jobs, updates, APP_REQUESTS):
        job.result()
        assert_own_frames(ups, tiny_pipe, request)
    assert max(n for n, _ in batches) >= 2              # the clients were decoded together
    assert_idle(server)


def test_stop_cancels_one_client_not_the_others(app, tiny_pipe):
    url, server, batches = app
    alone = serving.Server(tiny_pipe)                    # the rows the three requests step when all run to the end
    together(alone, [as_stream(r) for r in APP_REQUESTS[:3]])
    before = server.rows_stepped
    jobs = [submit(url, r) for r in APP_REQUESTS[:3]]
    while len(jobs[0].outputs()) < 2:
        time.sleep(0.01)
    jobs[0].cancel()                                     # what the Stop button does, for this client only
    for job, request in zip(jobs[1:], APP_REQUESTS[1:3]):
        updates = list(job)
        job.result()
        assert_own_frames(updates, tiny_pipe, request)
    assert_idle(server)
    assert server.rows_stepped - before < alone.rows_stepped   # the stopped request stopped decoding
