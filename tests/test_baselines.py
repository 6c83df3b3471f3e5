"""Benchmark baselines: the transformer (cached == uncached), the masked decoder, EVDM's parts."""
import math

import pytest
import torch

from flashvideo.config import FlashVideoConfig
from flashvideo.layout import Layout
from flashvideo.baselines import evdm as E
from flashvideo.baselines import masked as M
from flashvideo.baselines import transformer as T


def tiny_config(**kw):
    return FlashVideoConfig(**{**dict(image_size=16, grid=4, n_codes=32, n_text=8, text_len=3, d_model=32, n_heads=4,
                                      n_layers=2, max_key_frames=4, max_interp_frames=2, chunk_size=8), **kw})


@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture(scope="module")
def text(config):
    return Layout(config).text_block([1, 2, 3])


# ------------------------------------------------------------------------------ transformer

def test_transformer_matches_the_retnet_sizes(config):
    from flashvideo.retnet import RetNet

    tf, rn = T.ARTransformer(config), RetNet(config)
    assert tf.embed.num_embeddings == rn.embed.num_embeddings == config.vocab_size
    assert tf.head.out_features == config.n_codes and len(tf.blocks) == config.n_layers
    assert tf.blocks[0].glu.up.weight.shape == rn.blocks[0].glu.up.weight.shape
    assert tf.blocks[0].attn.n_heads == config.n_heads


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.7, 5), (0.0, None)])
def test_cached_and_uncached_give_identical_tokens_and_logits(config, text, temperature, top_k):
    torch.manual_seed(0)
    model = T.ARTransformer(config).eval()
    la, lb = [], []
    a = T.generate(model, text, 3, seed=11, temperature=temperature, top_k=top_k, use_cache=True, logits_out=la)
    b = T.generate(model, text, 3, seed=11, temperature=temperature, top_k=top_k, use_cache=False, logits_out=lb)
    assert a.shape == (3, config.grid, config.grid)
    assert torch.equal(a, b)
    assert len(la) == len(lb) == 3 * config.frame_tokens
    for x, y in zip(la, lb):
        assert torch.allclose(x, y, atol=1e-4, rtol=1e-4)
    assert a.min() >= 0 and a.max() < config.n_codes


def test_cached_generation_counts_one_token_per_step(config, text):
    model = T.ARTransformer(config).eval()
    fast, slow = {}, {}
    T.generate(model, text, 2, use_cache=True, counts=fast)
    T.generate(model, text, 2, use_cache=False, counts=slow)
    L = Layout(config)
    assert fast["forwards"] == slow["forwards"] == 2 * config.frame_tokens
    assert fast["tokens_processed"] == 2 * L.frame_len - 1       # every token once (the last is never fed)
    assert slow["tokens_processed"] > 10 * fast["tokens_processed"]  # the whole prefix every time


def test_cache_grows_past_its_capacity(config):
    model = T.ARTransformer(config).eval()
    idx = torch.randint(0, config.vocab_size, (1, 13))
    cache = model.new_cache(1, capacity=2)
    with torch.no_grad():
        step = torch.cat([model(idx[:, i:i + 1], cache, i) for i in range(13)], 1)
        full = model(idx)
    assert torch.allclose(step, full, atol=1e-5)


def test_cached_step_as_tensor_ops_matches_the_module_path(config):
    """`_cached_step` (what `compile_step` compiles) computes the module path's step, writing the cache alike."""
    from flashvideo.retnet import rotation

    model = T.ARTransformer(config).eval()
    idx = torch.randint(0, config.vocab_size, (2, 9))
    a, b = model.new_cache(2, 16), model.new_cache(2, 16)
    with torch.no_grad():
        model(idx[:, :6], a, 0)
        model(idx[:, :6], b, 0)
        for n in range(6, 9):
            slow = model.step(idx[:, n], a, n)
            fast = model._cached_step(idx[:, n], [c.k for c in b], [c.v for c in b], n,
                                      rotation(n, 1, config.d_model // config.n_heads))
            for c in b:
                c.n = n + 1
            assert torch.allclose(fast, slow, atol=1e-5)
    assert all(torch.allclose(x.k[:, :, :9], y.k[:, :, :9], atol=1e-6) for x, y in zip(a, b))


def test_compiled_step_gives_the_eager_tokens_without_recompiling(config, text):
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = T.ARTransformer(config).eval()
    la, lb = [], []
    eager = T.generate(model, text, 3, seed=5, logits_out=la)
    if not model.compile_step():
        pytest.skip("torch.compile has no working backend on this machine")
    graphs = counters["stats"]["unique_graphs"]
    compiled = T.generate(model, text, 3, seed=5, logits_out=lb)
    assert model.step_backend == "torch.compile"
    assert counters["stats"]["unique_graphs"] == graphs  # one graph for every cache length, built in compile_step
    assert torch.equal(eager, compiled)
    assert all(torch.allclose(x, y, atol=1e-4, rtol=1e-4) for x, y in zip(la, lb))


def test_a_failed_transformer_compile_is_logged_and_the_eager_step_stays(config, text, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = T.ARTransformer(config).eval()
    with caplog.at_level("WARNING"):
        assert model.compile_step() is False
    assert "no C++ compiler here" in caplog.text and model.step_backend == "eager"
    assert T.generate(model, text, 1).shape == (1, config.grid, config.grid)


# ------------------------------------------------------------------------------ masked decoder

@pytest.mark.parametrize("N,steps", [(16, 4), (64, 8), (400, 12), (3, 8)])
def test_cosine_schedule(N, steps):
    s = M.cosine_schedule(N, steps)
    assert len(s) == steps and s[-1] == 0
    assert all(b <= a for a, b in zip([N] + s, s)) and s[0] < N
    assert s[0] >= round(N * math.cos(math.pi / 2 / steps)) - 1


def test_masked_decoder_generates_and_is_seeded(config, text):
    torch.manual_seed(0)
    model = M.MaskedDecoder(config, steps=4).eval()
    counts = {}
    a = M.generate(model, text, 3, seed=5, counts=counts)
    b = M.generate(model, text, 3, seed=5)
    assert a.shape == (3, config.grid, config.grid) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() < config.n_codes
    assert counts["forwards"] == 3 * (4 + 1)  # steps + one commit pass per frame


def test_masked_decoder_is_bidirectional_within_a_slot_and_causal_across(config, text):
    torch.manual_seed(0)
    model = M.MaskedDecoder(config).eval()
    L = Layout(config)
    H, N = L.header_len, config.frame_tokens
    slot = torch.cat([L.header(0, text, 1), torch.randint(0, config.n_codes, (N,))])[None]
    other = slot.clone()
    other[0, -1] = (other[0, -1] + 1) % config.n_codes
    with torch.no_grad():
        c1, c2 = model.new_cache(), model.new_cache()
        x, y = model.slot_logits(slot, c1, 0), model.slot_logits(other, c2, 0)
    assert not torch.allclose(x[0, H], y[0, H])  # the first code sees the last one
    assert c1[0].n == 0                          # refinement passes do not touch the cache
    with torch.no_grad():
        model.slot_logits(slot, c1, 0, commit=True)
        model.slot_logits(other, c2, 0, commit=True)
        nxt = torch.cat([L.header(0, text, 2), torch.full((N,), model.mask_id)])[None]
        full = model.slot_logits(nxt, c1, L.frame_len)
    assert c1[0].n == L.frame_len and full.shape == (1, L.frame_len, config.n_codes)


# ------------------------------------------------------------------------------ EVDM

def test_gate_chooses_linear_attention_only_when_L_exceeds_lambda_d():
    att = E.MixedSelfAttention(64, head_dim=16, lam=2.0)
    assert att.heads == 4 and att.head_dim == 16
    assert not att.uses_linear(32) and att.uses_linear(33)
    with torch.no_grad():
        att(torch.randn(1, 64, 4, 8))   # L = 32 = lambda d
        assert att.last_choice == "softmax"
        att(torch.randn(1, 64, 6, 6))   # L = 36 > 32
        assert att.last_choice == "linear"
    assert E.MixedSelfAttention(64, 16, mode="linear").uses_linear(4)
    assert not E.MixedSelfAttention(64, 16, mode="softmax").uses_linear(10 ** 6)


def test_favor_approximates_softmax_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (0.3 * torch.randn(1, 2, 200, 16, generator=g) for _ in range(3))
    proj = E.orthogonal_features(2048, 16, g)
    approx = E.favor_attention(q, k, v, proj)
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert float((approx - exact).norm() / exact.norm()) < 0.15


def test_channel_shuffle_and_split_shapes():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert E.channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    emb = torch.randn(2, 16)
    for c_in, c_out in [(8, 16), (16, 16), (32, 16), (24, 16)]:
        blk = E.BRPBlock(c_in, c_out, 16)
        assert blk(torch.randn(2, c_in, 8, 8), emb).shape == (2, c_out, 8, 8)
        assert blk.split == (c_in >= c_out)


def test_unet_and_sampler_shapes():
    cfg = E.EVDMConfig.from_flashvideo(tiny_config(), steps=3)
    assert cfg.base_channels * cfg.mults[-1] == 32        # widest level = d_model
    assert E.EVDMConfig().steps == E.PAPER_STEPS == 100   # the paper's step count by default
    model = E.EVDM(cfg).eval()
    k, p = cfg.block_frames, cfg.past_frames
    x = torch.randn(2, 3 * k, 16, 16)
    with torch.no_grad():
        eps = model.net(x, torch.tensor([10, 500]), torch.randn(2, 3 * p, 16, 16), torch.tensor([[1, 2], [3, 0]]))
    assert eps.shape == x.shape
    assert model.ddim_timesteps(3) == [999, 500, 0]
    counts = {}
    frames = list(E.generate_frames(model, [1, 2], 7, seed=0, counts=counts))
    assert len(frames) == 7 and frames[0].shape == (16, 16, 3) and frames[0].dtype.name == "uint8"
    assert counts["forwards"] == 2 * 3  # ceil(7 / 5) blocks x 3 DDIM steps


def test_evdm_block_costs_fewer_flops_than_a_plain_conv_block():
    for c_in, c_out in [(64, 64), (32, 64), (128, 64)]:
        r = E.block_flops(c_in, c_out, 8)
        assert r["evdm_flops"] < r["plain_flops"] and r["ratio"] > 3
    n = E.network_flops(E.EVDMConfig.from_flashvideo(tiny_config()))
    assert n["evdm_flops"] < n["plain_flops"]
