"""The three retention forms compute the same function (float32, 1e-4 relative)."""
import pytest
import torch

from flashvideo.config import FlashVideoConfig
from flashvideo.layout import Layout
from flashvideo.retnet import RetNet, head_decays, retention_chunkwise, retention_parallel, retention_recurrent

torch.manual_seed(0)


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def tiny_config(**kw):
    return FlashVideoConfig(**{**dict(grid=4, n_codes=16, n_text=8, text_len=3, d_model=32, n_heads=4,
                                      n_layers=2, chunk_size=7, max_key_frames=4, max_interp_frames=3), **kw})


@pytest.mark.parametrize("L", [1, 5, 13, 30])
def test_retention_kernels_agree(L):
    B, H, d = 2, 3, 8
    q, k, v = (torch.randn(B, H, L, d) for _ in range(3))
    gamma = torch.tensor([0.5, 0.9, 0.99])
    par, s_par = retention_parallel(q, k, v, gamma)
    chunk, s_chunk = retention_chunkwise(q, k, v, gamma, chunk_size=4)
    state, rec = None, []
    for t in range(L):
        o, state = retention_recurrent(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], gamma, state)
        rec.append(o)
    rec = torch.cat(rec, 2)
    assert rel_err(chunk, par) < 1e-4 and rel_err(rec, par) < 1e-4
    assert rel_err(s_chunk, s_par) < 1e-4 and rel_err(state, s_par) < 1e-4


@pytest.mark.parametrize("L", [9, 23, 40])
def test_model_forms_agree_with_prefill_then_steps(L):
    config = tiny_config()
    model = RetNet(config).eval()
    idx = torch.randint(0, config.vocab_size, (2, L))
    with torch.no_grad():
        full, _ = model(idx)  # parallel, (B, L, n_codes)
        # chunkwise over the whole sequence (L is not a multiple of chunk_size=7)
        h, _ = model.hidden(idx, mode="chunkwise")
        assert rel_err(model.head(h), full) < 1e-4
        # recurrent from the first token
        state, rec = None, []
        for t in range(L):
            logits, state = model.step(idx[:, t], state, t)
            rec.append(logits)
        assert rel_err(torch.stack(rec, 1), full) < 1e-4
        # prefill a prefix chunkwise, then recurrent steps, then another chunk
        p = L // 2
        logits, state = model.prefill(idx[:, :p], None, 0)
        assert rel_err(logits, full[:, p - 1]) < 1e-4
        for t in range(p, L - 3):
            logits, state = model.step(idx[:, t], state, t)
            assert rel_err(logits, full[:, t]) < 1e-4
        logits, state = model.prefill(idx[:, L - 3:], state, L - 3)
        assert rel_err(logits, full[:, -1]) < 1e-4


def test_verify_gives_each_tokens_logits_and_keep_the_state_after_any_first_n():
    config = tiny_config()
    model = RetNet(config).eval()
    idx = torch.randint(0, config.vocab_size, (3, 20))
    starts = [5, 7, 9]  # rows at positions of their own, as batched requests are
    with torch.no_grad():
        states = [model.prefill(idx[r:r + 1, :s], None, 0)[1] for r, s in enumerate(starts)]
        state = [torch.cat(layer) for layer in zip(*states)]
        chunk = torch.stack([idx[r, s:s + 6] for r, s in enumerate(starts)])
        logits, kv = model.verify(chunk, state, starts)
        keep = [0, 4, 6]
        kept = model.keep(state, kv, keep)
        for r, s in enumerate(starts):
            st = states[r]
            for t in range(6):
                step, st = model.step(idx[r:r + 1, s + t], st, s + t)
                assert rel_err(logits[r, t], step[0]) < 1e-4
                if t + 1 == keep[r]:
                    assert all(rel_err(a[r], b[0]) < 1e-4 for a, b in zip(kept, st))
            if keep[r] == 0:
                assert all(torch.equal(a[r], b[0]) for a, b in zip(kept, states[r]))


def test_longest_head_spans_two_frames():
    config = FlashVideoConfig()
    frame_len = Layout(config).frame_len
    gammas = head_decays(config, frame_len)
    assert 1 / (1 - gammas.max()) >= 2 * frame_len
    assert torch.all(gammas[1:] > gammas[:-1])  # multi-scale: each head a different horizon


def test_training_loss_decreases():
    config = tiny_config()
    model = RetNet(config)
    idx = torch.randint(0, config.vocab_size, (4, 20))
    targets = torch.randint(0, config.n_codes, (4, 20))
    targets[:, :5] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_compiled_step_matches_eager():
    config = tiny_config()
    model = RetNet(config).eval()
    idx = torch.randint(0, config.vocab_size, (3, 12))
    with torch.no_grad():
        _, state = model.prefill(idx[:, :10])
        eager, _ = model.step(idx[:, 10], state, 10)
        if not model.compile_step(warmup_batches=(3,)):
            pytest.skip("torch.compile has no working backend on this machine")
        compiled, _ = model.step(idx[:, 10], state, 10)
    assert rel_err(compiled, eager) < 1e-4


def test_step_takes_strided_ids_and_matches_the_module_path():
    """The eager step (`_recurrent`) computes what the module path computes, for a column view of a plan."""
    from flashvideo.retnet import rotation

    config = tiny_config()
    model = RetNet(config).eval()
    plan = torch.randint(0, config.vocab_size, (3, 12))
    with torch.no_grad():
        _, state = model.prefill(plan[:, :10])
        fast, fast_state = model.step(plan[:, 10], state, 10)  # plan[:, i] is a strided view
        rot = rotation(10, 1, config.d_model // config.n_heads)
        x = model.embed(plan[:, 10:11])
        slow_state = []
        for block, s in zip(model.blocks, state):
            x, s = block(x, rot, s, "recurrent")
            slow_state.append(s)
        slow = model.head(model.norm(x)[:, -1])
    assert rel_err(fast, slow) < 1e-5
    assert all(rel_err(a, b) < 1e-5 for a, b in zip(fast_state, slow_state))


def test_a_failed_compile_is_logged_and_the_eager_step_stays(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = RetNet(tiny_config()).eval()
    with caplog.at_level("WARNING"):
        assert model.compile_step() is False
    assert "no C++ compiler here" in caplog.text and model.step_backend == "eager"
    with torch.no_grad():
        logits, _ = model.step(torch.tensor([1]), None, 0)
    assert logits.shape == (1, model.config.n_codes)
