"""Autoregressive decoder-only transformer baseline (CogVideo / TATS style), for benchmarks only.

Built from a `FlashVideoConfig` so that it matches the FlashVideo RetNet it is compared with:
the same width (d_model), depth (n_layers), heads, GLU feed-forward width (ffn_mult), vocabulary
(config.vocab_size in, config.n_codes out) and token sequences (`flashvideo.layout`). The only
difference is the token mixer: causal multi-head softmax attention with rotary positions instead
of retention.

Two ways to decode the same model:

* with a KV cache   -- each new token attends to the cached keys/values of the whole prefix:
                       O(L) work per token (the attention read grows with the prefix), O(L) memory;
* without a cache   -- every sampled token re-runs the whole prefix through the model:
                       O(L^2) work per token (attention over L x L), O(L^3) for a sequence.

`ARTransformer.step` is the cached one-token step (the module path); `compile_step()` swaps in the same
step written as plain tensor ops and compiled with torch.compile over the growing cache length (the bench's
"both compiled" treatment, beside `RetNet.compile_step`).

Both sample with the pipeline's `flashvideo.sampler.Sampler` (temperature, top-k, top-p, seeded
generator), so for the same seed they give the same tokens (tests/test_baselines.py checks tokens and
logits).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from ..config import FlashVideoConfig
from ..layout import KEY, Layout
from ..retnet import GLU, RMSNorm, init_weights, rotate, rotation
from ..sampler import Sampler, SamplingSettings


class LayerCache:
    """Preallocated keys/values of one layer, (B, H, capacity, dh); grows by doubling."""

    def __init__(self, batch: int, heads: int, head_dim: int, capacity: int, device=None, dtype=torch.float32):
        self.k = torch.empty(batch, heads, capacity, head_dim, device=device, dtype=dtype)
        self.v = torch.empty_like(self.k)
        self.n = 0

    def reserve(self, need: int) -> None:
        """Room for `need` tokens (doubling the capacity when it grows)."""
        if need > self.k.shape[2]:
            cap = max(need, 2 * self.k.shape[2])
            for name in ("k", "v"):
                old = getattr(self, name)
                new = old.new_empty(old.shape[0], old.shape[1], cap, old.shape[3])
                new[:, :, :self.n] = old[:, :, :self.n]
                setattr(self, name, new)

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """Write k, v (B, H, L, dh) after the cached tokens; return views of all keys/values."""
        need = self.n + k.shape[2]
        self.reserve(need)
        self.k[:, :, self.n:need] = k
        self.v[:, :, self.n:need] = v
        self.n = need
        return self.k[:, :, :need], self.v[:, :, :need]

    def peek(self, k: torch.Tensor, v: torch.Tensor):
        """Cached keys/values followed by k, v, without storing k, v (masked decoding's refinement)."""
        return torch.cat([self.k[:, :, :self.n], k], 2), torch.cat([self.v[:, :, :self.n], v], 2)


class Attention(nn.Module):
    """Multi-head softmax attention with rotary positions (the same rotation as the RetNet's)."""

    def __init__(self, config: FlashVideoConfig):
        super().__init__()
        d = config.d_model
        self.n_heads, self.head_dim = config.n_heads, d // config.n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x, cache: LayerCache | None = None, offset: int = 0, causal: bool = True,
                commit: bool = True):
        """x (B, L, D) at positions offset..offset+L-1.

        causal=True: token i sees the cache and tokens <= i; causal=False: it sees the cache and
        all L tokens (bidirectional within the block, used by the masked decoder). commit=False
        attends to cache + block without storing the block in the cache."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        rot = rotation(offset, L, self.head_dim, x.device)
        q, k = rotate(q, rot), rotate(k, rot)
        past = 0 if cache is None else cache.n
        if cache is not None:
            k, v = cache.append(k, v) if commit else cache.peek(k, v)
        if not causal or L == 1:
            o = F.scaled_dot_product_attention(q, k, v)
        elif past == 0:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # a block after cached tokens: query i sees keys 0 .. past + i
            i = torch.arange(L, device=x.device)[:, None]
            j = torch.arange(past + L, device=x.device)[None]
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=j <= past + i)
        return self.out(o.transpose(1, 2).reshape(B, L, D))


class TransformerBlock(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + GLU(norm(x)); RMSNorm and GLU as in the RetNet."""

    def __init__(self, config: FlashVideoConfig):
        super().__init__()
        self.norm1 = RMSNorm(config.d_model)
        self.attn = Attention(config)
        self.norm2 = RMSNorm(config.d_model)
        self.glu = GLU(config.d_model, int(config.ffn_mult * config.d_model))

    def forward(self, x, cache=None, offset=0, causal=True, commit=True):
        x = x + self.attn(self.norm1(x), cache, offset, causal, commit)
        return x + self.glu(self.norm2(x))


class ARTransformer(nn.Module):
    """Decoder-only transformer over the unified token ids of `FlashVideoConfig`; predicts image codes.

    `extra_tokens` adds input ids after config.vocab_size (the masked decoder's [MASK])."""
    step_backend = "eager"  # how `step` runs: "eager" (the module path), or "torch.compile" after `compile_step()`

    def __init__(self, config: FlashVideoConfig, extra_tokens: int = 0):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size + extra_tokens, config.d_model)
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.n_codes, bias=False)
        init_weights(self, ("attn.out.weight", "glu.down.weight"), config.n_layers)

    def new_cache(self, batch: int = 1, capacity: int = 1024) -> list[LayerCache]:
        c = self.config
        p = self.head.weight
        return [LayerCache(batch, c.n_heads, c.d_model // c.n_heads, capacity, p.device, p.dtype)
                for _ in self.blocks]

    def hidden(self, idx, cache=None, offset=0, causal=True, commit=True):
        x = self.embed(idx)
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[i], offset, causal, commit)
        return self.norm(x)

    def forward(self, idx, cache=None, offset: int = 0):
        """idx (B, L) -> logits (B, L, n_codes). With a cache, idx follows the cached tokens
        (offset must equal the cached length) and is appended to it."""
        return self.head(self.hidden(idx, cache, offset))

    @torch.no_grad()
    def step(self, idx, cache: list[LayerCache], offset: int):
        """One token per row, idx (B,), at position offset (== the cached length), appended to the cache:
        logits (B, n_codes). Eager: `forward`; after `compile_step()`: `_cached_step`, compiled."""
        if self.step_backend == "eager":
            return self(idx[:, None], cache, offset)[:, -1]
        for c in cache:  # a spare slot: the filled keys are never the whole buffer (a compiled step would
            c.reserve(offset + 2)  # specialise on that equality and recompile)
        rot = rotation(offset, 1, self.config.d_model // self.config.n_heads, idx.device).clone()
        logits = self._compiled_step(idx.clone(), [c.k for c in cache], [c.v for c in cache], offset, rot)
        for c in cache:
            c.n = offset + 1
        return logits

    def _cached_step(self, idx, ks, vs, n: int, rot):
        """The module path for one token as plain tensor ops (as `RetNet._recurrent`), for torch.compile.

        idx (B,); ks, vs: per layer the cache buffers (B, H, capacity, dh), n tokens filled; rot (1, dh/2, 2)
        for position n. Writes this token's keys/values at n and attends over positions 0..n."""
        c = self.config
        B, D, H = idx.shape[0], c.d_model, c.n_heads
        x = F.embedding(idx, self.embed.weight)  # (B, D)
        for block, K, V in zip(self.blocks, ks, vs):
            qkv = F.linear(F.rms_norm(x, (D,), block.norm1.weight, block.norm1.eps), block.attn.qkv.weight)
            q, k, v = qkv.view(B, 3, H, 1, D // H).unbind(1)  # 3 x (B, H, 1, dh)
            q, k = rotate(q, rot), rotate(k, rot)
            K[:, :, n:n + 1], V[:, :, n:n + 1] = k, v
            o = F.scaled_dot_product_attention(q, K[:, :, :n + 1], V[:, :, :n + 1])  # (B, H, 1, dh)
            x = x + F.linear(o.view(B, D), block.attn.out.weight)
            a, b = F.linear(F.rms_norm(x, (D,), block.norm2.weight, block.norm2.eps), block.glu.up.weight).chunk(2, -1)
            x = x + F.linear(F.silu(a) * b, block.glu.down.weight)
        return F.linear(F.rms_norm(x, (D,), self.norm.weight, self.norm.eps), self.head.weight)

    def compile_step(self) -> bool:
        """Compile `_cached_step` with torch.compile, dynamic in the cache length (one graph for every
        position: the attention reads exactly the filled keys), and warm it up. Measured against a preallocated
        cache read in full under a mask (static shapes): that costs the whole video's attention at every
        step, and was no faster at the end (see bench/headline.py). Returns whether `step` now runs the compiled
        step; a failure is logged with its reason (eager stays)."""
        import logging

        try:
            fn = torch.compile(type(self)._cached_step.__get__(self), dynamic=True)
            cache = self.new_cache(1, 37)  # sizes that match no other dimension (no shared symbol)
            with torch.no_grad():
                self(torch.zeros(1, 5, dtype=torch.long, device=self.head.weight.device), cache, 0)
                self._compiled_step = fn
                self.step_backend = "torch.compile"
                for n in (5, 6):
                    self.step(torch.zeros(1, dtype=torch.long, device=self.head.weight.device), cache, n)
        except Exception as e:  # no C++ compiler, no inductor backend, ...: stay eager, but say why
            self.step_backend = "eager"
            logging.getLogger(__name__).warning("torch.compile of the transformer step failed; the eager step "
                                                "stays in use (%s: %s)", type(e).__name__, e)
            return False
        return True


# ---------------------------------------------------------------------------------- generation

def key_frame_plan(layout: Layout, text: torch.Tensor, k: int) -> torch.Tensor:
    """Header of key frame k (task KEY, text, SN_k); its grid*grid codes follow and are sampled."""
    return layout.header(KEY, text, k)


@torch.no_grad()
def generate_frames(model: ARTransformer, text: torch.Tensor, n_frames: int, seed: int = 0,
                    temperature: float | None = None, top_k: int | None = None, use_cache: bool = True,
                    logits_out: list | None = None, counts: dict | None = None, *,
                    sampling: SamplingSettings | None = None):
    """Yield the (grid, grid) codes of key frames 1..n_frames in turn, in the FlashVideo key-frame layout
    `T SN_1 F_1  T SN_2 F_2 ...`, one token at a time.

    use_cache=True: the known header of each frame goes through the model in one pass appended to
    the KV cache, then each code takes one cached step (`model.step`: compiled after `compile_step()`).
    use_cache=False: each code re-runs the whole prefix (the O(L^2)-per-token form). Same generator seed ->
    same tokens either way.
    Sampling: `sampling=SamplingSettings(...)` or the temperature / top_k keywords (no guidance here).
    logits_out, if given, receives the (n_codes,) logits each code was sampled from.
    counts, if given, accumulates "forwards" (model calls) and "tokens_processed" (tokens through the model)."""
    layout, G = Layout(model.config), model.config.grid
    sampler = Sampler([torch.Generator().manual_seed(seed)],
                      SamplingSettings.resolve(sampling, temperature=temperature, top_k=top_k))
    device = model.head.weight.device
    counts = counts if counts is not None else {}
    counts.setdefault("forwards", 0)
    counts.setdefault("tokens_processed", 0)
    seq = torch.empty(n_frames * layout.frame_len, dtype=torch.long)
    n = 0
    cache = model.new_cache(1, n_frames * layout.frame_len) if use_cache else None
    pending = 0  # tokens in seq not yet in the cache
    for k in layout.key_sns(n_frames):
        head = key_frame_plan(layout, text, k)
        seq[n:n + len(head)] = head
        n += len(head)
        pending += len(head)
        for _ in range(G * G):
            if use_cache:  # the header in one pass, then each code one step
                logits = (model.step(seq[n - 1:n].to(device), cache, n - 1)[0] if pending == 1 else
                          model(seq[None, n - pending:n].to(device), cache, n - pending)[0, -1])
                counts["tokens_processed"] += pending
            else:
                logits = model(seq[None, :n].to(device))[0, -1]
                counts["tokens_processed"] += n
            counts["forwards"] += 1
            if logits_out is not None:
                logits_out.append(logits.float().cpu())
            seq[n] = sampler(logits[None])[0]
            n += 1
            pending = 1
        yield seq[n - G * G:n].view(G, G).clone()


def generate(model: ARTransformer, text: torch.Tensor, n_frames: int, **kwargs) -> torch.Tensor:
    """(n_frames, grid, grid) codes; kwargs as for `generate_frames`."""
    return torch.stack(list(generate_frames(model, text, n_frames, **kwargs)))

