"""RetNet decoder (Sun et al., 2023) with the FlashVideo changes: RMSNorm, GLU feed-forward, residuals.

Retention has three forms that compute the same function (tests/test_retnet.py holds them equal):

* parallel   -- the whole sequence at once, O(L^2): the reference form.
* chunkwise  -- blocks of `chunk_size` tokens, carrying a state between blocks, O(L * chunk_size):
                training and known spans (at 16 key frames it trains about 1.7x faster than parallel).
* recurrent  -- one token, O(1) work and memory per token: sampling.

For one head with decay gamma, rotated queries q_n and keys k_m:

    o_n = sum_{m<=n} gamma^(n-m) (q_n . k_m) v_m          (parallel)
    S_n = gamma S_{n-1} + k_n^T v_n,   o_n = q_n S_n       (recurrent)

We skip torchscale's extra normalisations of the decay mask (they exist for fp16 range at 7B scale
and make the forms agree only approximately); the per-head RMSNorm after retention keeps the scale.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import FlashVideoConfig

State = list  # one (B, H, dh, dh) tensor per layer, or None before the first token
SHORT_SPAN = 32  # `prefill` takes spans up to this many tokens a row through `verify`, longer ones the chunkwise form
# (or, where the pass is built ahead of time, through `verify` in pieces of at most this many tokens)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, *, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x):
        return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)


def head_decays(config: FlashVideoConfig, frame_len: int) -> torch.Tensor:
    """Per-head gamma, horizons 1/(1-gamma) log-spaced from `shortest_memory` tokens up to
    `memory_frames` whole frames (header + codes), so the longest head sees the previous frames."""
    longest = config.memory_frames * frame_len
    horizons = torch.logspace(math.log10(config.shortest_memory), math.log10(longest), config.n_heads,
                              dtype=torch.float64)
    return (1 - 1 / horizons).float()  # (H,)


TABLE_POSITIONS = 1 << 14  # rotations of positions below this (every fixed-length layout) come from one table


def _angles(start: int, n: int, d: int, device) -> torch.Tensor:
    """cos and sin of m theta_j, theta_j = 10000^(-2j/d), for m = start..start+n-1: (n, d/2, 2)."""
    inv_freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64, device=device) / d)
    angle = torch.arange(start, start + n, dtype=torch.float64, device=device)[:, None] * inv_freq
    return torch.stack((angle.cos(), angle.sin()), dim=-1).float()


@functools.lru_cache(maxsize=8)
def _rotation_table(d: int, device: torch.device) -> torch.Tensor:
    """The first `TABLE_POSITIONS` rotations, built once per head size (16,384 x d/2 x 2 floats: 3 MB at d=48)."""
    return _angles(0, TABLE_POSITIONS, d, device)


def rotation(offset: int, n: int, d: int, device=None) -> torch.Tensor:
    """The rotation for positions offset..offset+n-1: (n, d/2, 2) cos/sin. Positions past
    `TABLE_POSITIONS` (an endless stream) are computed directly, so memory never grows with length."""
    device = torch.device(device or "cpu")
    if offset + n > TABLE_POSITIONS:
        return _angles(offset, n, d, device)
    return _rotation_table(d, device)[offset:offset + n]


def rotate(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Relative position rotation of x (..., L, d) by rot (L, d/2, 2) from `rotation`: each interleaved
    pair (x_2j, x_2j+1) is turned by the angle m theta_j."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., L, d/2, 2)
    x1, x2, cos, sin = pairs[..., 0], pairs[..., 1], rot[..., 0], rot[..., 1]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


@functools.lru_cache(maxsize=8)
def _step_rotation_index(d_model: int, n_heads: int, device: torch.device):
    """Where `step_rotation` reads each entry of a cos/sin table row (c_0, s_0, c_1, s_1, ...), and its sign
    and scale: (2, 2 d_model) each, for q and k of every head side by side."""
    dh = d_model // n_heads
    p = torch.arange(2 * d_model) % dh        # position within the head
    pair = p // 2
    index = torch.stack((2 * pair, 2 * pair + 1))  # cos_j, then sin_j
    sign = torch.stack((torch.ones(2 * d_model), torch.where(p % 2 == 0, -1.0, 1.0)))
    scale = torch.cat((torch.ones(d_model), torch.full((d_model,), dh ** -0.5)))  # k is scaled by dh^-0.5
    return index.to(device), (sign * scale).to(device)


def _linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T in the weight's precision, x's precision out: a step built with bfloat16 weights (`flashvideo.aot`)
    reads half the bytes per token; with float32 weights this is F.linear."""
    return F.linear(x, w) if w.dtype == x.dtype else F.linear(x.to(w.dtype), w).to(x.dtype)


def _add_linear(x: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x + h @ w.T (a residual branch), as `_linear`."""
    return torch.addmm(x, h, w.t()) if w.dtype == x.dtype else x + _linear(h, w)


def step_rotation(offset, d_model: int, n_heads: int, device=None) -> torch.Tensor:
    """(2, 2 d_model): cos and signed sin for rotating [q | k] of one token at `offset` in place of `rotate`:
    rotated = qk * cos + pair_swap(qk) * sin, with k's dh^-0.5 scale folded in.

    offset a list of B positions (one per row: batched serving): (B, 2, 2 d_model), row b equal to the
    rotation of offset[b] alone."""
    device = torch.device(device or "cpu")
    index, sign_scale = _step_rotation_index(d_model, n_heads, device)
    dh = d_model // n_heads
    if isinstance(offset, int):
        return rotation(offset, 1, dh, device).reshape(-1)[index] * sign_scale
    top = max(offset) + 1
    angles = (rotation(0, top, dh, device)[torch.as_tensor(offset, device=device)] if top <= TABLE_POSITIONS
              else torch.cat([rotation(p, 1, dh, device) for p in offset]))  # (B, dh/2, 2)
    rows = angles.flatten(1).index_select(1, index.flatten()).view(len(offset), *index.shape)  # (B, 2, 2D)
    return rows * sign_scale  # (B, 2, 2D)


@functools.lru_cache(maxsize=16)
def _decays(L: int, gamma: tuple, device: torch.device):
    """For a block of L tokens: the causal decay mask gamma^(n-m) (H, L, L), gamma^(L-1-m) (H, L, 1)
    for the state update, gamma^(n+1) (H, L, 1) for reading the incoming state, and gamma^L (H, 1, 1)."""
    log_g = torch.tensor(gamma, dtype=torch.float64, device=device).log()[:, None, None]
    n = torch.arange(L, device=device, dtype=torch.float64)
    diff = n[:, None] - n[None, :]
    mask = torch.exp(diff.clamp(min=0) * log_g).masked_fill(diff < 0, 0)
    to_state = torch.exp((L - 1 - n)[:, None] * log_g)
    from_state = torch.exp((n + 1)[:, None] * log_g)
    return tuple(t.float() for t in (mask, to_state, from_state, torch.exp(L * log_g)))


def retention_parallel(q, k, v, gamma, state=None):
    """Parallel form over a block; with an incoming state it is one step of the chunkwise form.

    q, k, v (B, H, L, d); gamma (H,); state (B, H, d, d) or None.
    Returns o (B, H, L, d) and the state after the block's last token."""
    mask, to_state, from_state, block = _decays(q.shape[2], tuple(gamma.tolist()), q.device)
    o = (q @ k.transpose(-1, -2) * mask) @ v  # (B, H, L, d): sum_m gamma^(n-m) (q_n . k_m) v_m
    new_state = (k * to_state).transpose(-1, -2) @ v  # (B, H, d, d): sum_m gamma^(L-1-m) k_m^T v_m
    if state is not None:
        o = o + (q * from_state) @ state  # gamma^(n+1) q_n S_prev
        new_state = new_state + block * state
    return o, new_state


def retention_chunkwise(q, k, v, gamma, state=None, chunk_size=64):
    outs = []
    for s in range(0, q.shape[2], chunk_size):
        o, state = retention_parallel(q[:, :, s:s + chunk_size], k[:, :, s:s + chunk_size],
                                      v[:, :, s:s + chunk_size], gamma, state)
        outs.append(o)
    return torch.cat(outs, dim=2), state


def retention_recurrent(q, k, v, gamma, state=None):
    """One token: q, k, v (B, H, 1, d)."""
    kv = k.transpose(-1, -2) * v  # (B, H, d, d): outer product k^T v
    state = kv if state is None else torch.addcmul(kv, gamma[:, None, None], state)  # gamma S + k^T v
    return q @ state, state


class MultiScaleRetention(nn.Module):
    def __init__(self, config: FlashVideoConfig, gammas: torch.Tensor):
        super().__init__()
        d = config.d_model
        self.n_heads = config.n_heads
        self.chunk_size = config.chunk_size
        self.qkvg = nn.Linear(d, 4 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.head_norm = RMSNorm(d // config.n_heads, affine=False)
        self.register_buffer("gamma", gammas, persistent=False)

    def forward(self, x, rot, state=None, mode="parallel"):
        B, L, D = x.shape
        qkvg = self.qkvg(x)
        g = qkvg[..., 3 * D:]
        q, k, v = qkvg[..., :3 * D].view(B, L, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, dh)
        q, k = rotate(q, rot), rotate(k, rot) * k.shape[-1] ** -0.5
        if mode == "parallel":
            o, state = retention_parallel(q, k, v, self.gamma, state)
        elif mode == "chunkwise":
            o, state = retention_chunkwise(q, k, v, self.gamma, state, self.chunk_size)
        elif mode == "recurrent":
            assert L == 1, "the recurrent form takes one token"
            o, state = retention_recurrent(q, k, v, self.gamma, state)
        else:
            raise ValueError(f"unknown retention mode {mode!r}")
        o = self.head_norm(o).transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return self.out(F.silu(g) * o), state


class GLU(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        a, b = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(a) * b)


class Block(nn.Module):
    def __init__(self, config: FlashVideoConfig, gammas: torch.Tensor):
        super().__init__()
        self.norm1 = RMSNorm(config.d_model)
        self.retention = MultiScaleRetention(config, gammas)
        self.norm2 = RMSNorm(config.d_model)
        self.glu = GLU(config.d_model, int(config.ffn_mult * config.d_model))

    def forward(self, x, rot, state=None, mode="parallel"):
        y, state = self.retention(self.norm1(x), rot, state, mode)
        x = x + y
        return x + self.glu(self.norm2(x)), state


def init_weights(model: nn.Module, residual_outputs: tuple, n_layers: int) -> None:
    """GPT-2 initialisation: N(0, 0.02) for linear and embedding weights, scaled down by sqrt(2 n_layers)
    for the projections that write into the residual stream (names ending in residual_outputs)."""
    def normal(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    model.apply(normal)  # the same order of draws as before: children first
    for name, p in model.named_parameters():
        if name.endswith(residual_outputs):
            nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layers))


class RetNet(nn.Module):
    """Decoder over the unified token ids of `FlashVideoConfig`; predicts image codes only."""
    step_backend = "eager"  # how `step` runs: "eager", or "torch.compile" after `compile_step()`

    def __init__(self, config: FlashVideoConfig):
        super().__init__()
        from .layout import Layout  # the frame length sets the decays

        self.config = config
        gammas = head_decays(config, Layout(config).frame_len)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config, gammas) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.n_codes, bias=False)
        init_weights(self, ("retention.out.weight", "glu.down.weight"), config.n_layers)

    def hidden(self, idx, state: State | None = None, offset: int | list = 0, mode: str = "parallel"):
        """idx (B, L) -> final hidden states (B, L, D) and the new per-layer state. offset: the position of idx[:, 0],
        an int, or a list of B positions, one per row."""
        x = self.embed(idx)
        L, dh = idx.shape[1], self.config.d_model // self.config.n_heads
        if isinstance(offset, int):
            rot = rotation(offset, L, dh, idx.device)
        else:  # one offset per row (rows of different videos, `flashvideo.serving`): (B, 1, L, dh/2, 2), per head
            rot = torch.stack([rotation(o, L, dh, idx.device) for o in offset])[:, None]
        state = state or [None] * len(self.blocks)
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block(x, rot, s, mode)
            new_state.append(s)
        return self.norm(x), new_state

    def forward(self, idx, targets=None):
        """Training (chunkwise form). idx (B, L); targets (B, L), -100 where there is no loss.
        Returns (logits, loss); with targets, logits only at the positions that carry a loss."""
        h, _ = self.hidden(idx, mode="chunkwise")
        if targets is None:
            return self.head(h), None
        keep = targets != -100
        logits = self.head(h[keep])  # (N, n_codes)
        return logits, F.cross_entropy(logits, targets[keep])

    @torch.no_grad()
    def prefill(self, idx, state: State | None = None, offset: int | list = 0):
        """Known tokens idx (B, L) at positions offset.. (an int, or one per row) in one chunkwise pass.
        Returns the logits for the next position (B, n_codes) and the new state. A short span (a frame's header)
        goes through `verify`, whose pass is built ahead of time where the step is (`flashvideo.aot`); where it is
        built, a longer span goes through it too, in even pieces of at most SHORT_SPAN tokens (the interpolation
        contexts of 48 rows took 0.5x the chunkwise form's time with a bfloat16 build; eager pieces are slower)."""
        if idx.shape[1] > SHORT_SPAN and not self.step_backend.startswith("aoti"):
            h, state = self.hidden(idx.to(self.head.weight.device), state, offset, "chunkwise")
            return self.head(h[:, -1]), state
        for logits, state in self.read(idx, state, offset):
            pass
        return logits[:, -1], state

    @torch.no_grad()
    def read(self, idx, state: State | None = None, offset: int | list = 0):
        """Known tokens idx (B, L) at positions offset.. through `verify`, in even pieces of at most SHORT_SPAN
        tokens: yields each piece's logits (B, n, n_codes) and the state after it."""
        B, L = idx.shape
        if state is None or any(s is None for s in state):
            c = self.config
            dh = c.d_model // c.n_heads
            state = [self.head.weight.new_zeros(B, c.n_heads, dh, dh) for _ in self.blocks]
        pieces = -(-L // SHORT_SPAN)
        start = 0
        for n in [L // pieces + (k < L % pieces) for k in range(pieces)]:
            at = offset + start if isinstance(offset, int) else [o + start for o in offset]
            logits, kv = self.verify(idx[:, start:start + n], state, at)
            state, start = self.keep(state, kv, [n] * B), start + n
            yield logits, state

    @torch.no_grad()
    def step(self, idx, state: State | None, offset):
        """One token per row, idx (B,), at position offset (recurrent form): an int, or a list of B positions,
        one per row (rows of different videos, `flashvideo.serving`). Per-row positions take the eager step unless
        the step in use is the built one (`flashvideo.aot`); torch.compile's is specialised to one shared rotation."""
        device = self.head.weight.device
        rot = step_rotation(offset, self.config.d_model, self.config.n_heads, device)
        rows = rot.dim() == 3 and not self.step_backend.startswith("aoti")  # the built step takes per-row rotations too
        recurrent = type(self)._recurrent.__get__(self) if rows else self._recurrent
        return recurrent(idx.to(device).clone(), state, rot)  # a fresh copy: a view at any offset meets the compiled guards

    def _recurrent(self, idx, state, rot):
        """The recurrent form of `hidden` + head, written for eager speed: every op a tensor op on (B, ...)
        rows, no module calls, no per-head reshapes beyond views (about half the ops of the module path).

        idx (B,); state: per layer (B, H, dh, dh) or None; rot (2, 2D) or per row (B, 2, 2D), from `step_rotation`."""
        c = self.config
        B, D, H = idx.shape[0], c.d_model, c.n_heads
        dh = D // H
        cos, sin = rot.unbind(-2)
        x = F.embedding(idx, self.embed.weight)  # (B, D)
        new_state = []
        for block, S in zip(self.blocks, state or [None] * len(self.blocks)):
            ret = block.retention
            qkvg = _linear(F.rms_norm(x, (D,), block.norm1.weight, block.norm1.eps), ret.qkvg.weight)  # (B, 4D)
            qk = qkvg[:, :2 * D]
            qk = torch.addcmul(qk * cos, qk.unflatten(1, (D, 2)).flip(-1).flatten(1), sin)  # rotated q, k (k scaled)
            q, k = qk.view(B, 2, H, dh).unbind(1)  # (B, H, dh)
            kv = k.unsqueeze(-1) * qkvg[:, 2 * D:3 * D].view(B, H, 1, dh)  # k^T v: (B, H, dh, dh)
            S = kv if S is None else torch.addcmul(kv, ret.gamma.view(H, 1, 1), S)  # gamma S + k^T v
            o = torch.bmm(q.reshape(B * H, 1, dh), S.view(B * H, dh, dh)).view(B, H, dh)  # q S
            o = F.rms_norm(o, (dh,), None, ret.head_norm.eps).view(B, D)
            x = _add_linear(x, F.silu(qkvg[:, 3 * D:]) * o, ret.out.weight)  # x + out(swish gate * o)
            a, b = _linear(F.rms_norm(x, (D,), block.norm2.weight, block.norm2.eps), block.glu.up.weight).chunk(2, -1)
            x = _add_linear(x, F.silu(a) * b, block.glu.down.weight)  # x + GLU
            new_state.append(S)
        return _linear(F.rms_norm(x, (D,), self.norm.weight, self.norm.eps), self.head.weight), new_state

    @torch.no_grad()
    def verify(self, idx, state: State, offset):
        """T tokens per row in one pass from `state` (speculative decoding, `flashvideo.sampling`): idx (B, T) at
        positions offset.. (an int, or one per row). Returns the logits after each token (B, T, n_codes) and the
        chunk's keys and values, from which `keep` advances the state by any first n tokens of each row."""
        (B, T), device = idx.shape, self.head.weight.device
        starts = [offset] * B if isinstance(offset, int) else list(offset)
        rot = step_rotation([p + t for p in starts for t in range(T)], self.config.d_model, self.config.n_heads, device)
        return self._chunk(idx.to(device).contiguous(), list(state), rot.view(B, T, *rot.shape[1:]))

    def _chunk(self, idx, state, rot):
        """The retention's parallel form over T tokens per row after a state, written like `_recurrent` (and built
        ahead of time alike, `flashvideo.aot`). idx (B, T); state per layer (B, H, dh, dh); rot (B, T, 2, 2D).
        Returns logits (B, T, n_codes) and per layer k, v (B, H, T, dh), flat: [k_1, v_1, k_2, v_2, ...]."""
        c = self.config
        (B, T), D, H = idx.shape, c.d_model, c.n_heads
        dh = D // H
        cos, sin = rot.unbind(-2)  # (B, T, 2D)
        t = torch.arange(T, device=idx.device, dtype=torch.float32)
        log_g = self.blocks[0].retention.gamma.log().view(H, 1, 1)  # every layer has the same decays
        lag = t[:, None] - t[None, :]
        decay = torch.exp(lag.clamp(min=0) * log_g) * (lag >= 0)  # gamma^(i-j) for j <= i: (H, T, T)
        from_state = torch.exp((t + 1).view(T, 1) * log_g)  # gamma^(i+1): reading the incoming state, (H, T, 1)
        x = F.embedding(idx, self.embed.weight)  # (B, T, D)
        kv = []
        for block, S in zip(self.blocks, state):
            ret = block.retention
            qkvg = _linear(F.rms_norm(x, (D,), block.norm1.weight, block.norm1.eps), ret.qkvg.weight)  # (B, T, 4D)
            qk = qkvg[..., :2 * D]
            qk = torch.addcmul(qk * cos, qk.unflatten(-1, (D, 2)).flip(-1).flatten(-2), sin)  # rotated q, k (k scaled)
            q, k = qk.view(B, T, 2, H, dh).permute(2, 0, 3, 1, 4)  # (B, H, T, dh) each
            v = qkvg[..., 2 * D:3 * D].view(B, T, H, dh).transpose(1, 2)
            o = (q @ k.transpose(-1, -2) * decay) @ v + (q * from_state) @ S
            o = F.rms_norm(o, (dh,), None, ret.head_norm.eps).transpose(1, 2).reshape(B, T, D)
            x = x + _linear(F.silu(qkvg[..., 3 * D:]) * o, ret.out.weight)
            a, b = _linear(F.rms_norm(x, (D,), block.norm2.weight, block.norm2.eps), block.glu.up.weight).chunk(2, -1)
            x = x + _linear(F.silu(a) * b, block.glu.down.weight)
            kv += [k, v]
        return _linear(F.rms_norm(x, (D,), self.norm.weight, self.norm.eps), self.head.weight), kv

    def keep(self, state: State, kv: list, n) -> State:
        """The state after the first n[b] tokens of row b of a `verify` pass (0: unchanged):
        gamma^n S + sum_(j < n) gamma^(n-1-j) k_j^T v_j, every layer in one batched product."""
        S, k, v = torch.stack(state), torch.stack(kv[0::2]), torch.stack(kv[1::2])  # (layers, B, H, ...)
        layers, B, H, T, dh = k.shape
        n = torch.as_tensor(n, dtype=torch.float32, device=k.device)[:, None, None]  # (B, 1, 1)
        log_g = self.blocks[0].retention.gamma.log().view(-1, 1)  # (H, 1); every layer has the same decays
        lag = n - 1 - torch.arange(T, device=k.device)  # (B, 1, T)
        w = torch.exp(lag.clamp(min=0) * log_g) * (lag >= 0)  # gamma^(n-1-j) for j < n, else 0: (B, H, T)
        new = torch.baddbmm((S * torch.exp(n * log_g)[..., None]).view(-1, dh, dh),
                            (k * w[..., None]).view(-1, T, dh).transpose(1, 2), v.reshape(-1, T, dh))
        return list(new.view(layers, B, H, dh, dh).unbind(0))

    def compile_step(self, warmup_batches=(1, 2)) -> bool:
        """Opt-in: fuse the recurrent step with torch.compile (about 3x faster on CPU once built). Building
        takes tens of seconds of CPU per batch size, done here by warming up on inputs shaped like the
        Decoder's (contiguous ids, a prefilled state); nothing in the library calls this on a request path.
        Results match the eager step to float rounding, so a rare sampled token can differ.
        Returns whether the compiled step is in use; a failure is logged with its reason (eager stays)."""
        import logging

        try:
            fn = torch.compile(type(self)._recurrent.__get__(self), dynamic=True)
            with torch.no_grad():
                for b in warmup_batches:
                    _, state = self.prefill(torch.zeros(b, 2, dtype=torch.long))
                    idx = torch.zeros(b, dtype=torch.long, device=self.head.weight.device)
                    fn(idx, state, step_rotation(2, self.config.d_model, self.config.n_heads, idx.device))
        except Exception as e:  # no C++ compiler, no inductor backend, ...: stay eager, but say why
            logging.getLogger(__name__).warning("torch.compile of the recurrent step failed; the eager step stays "
                                                "in use (%s: %s)", type(e).__name__, e)
            return False
        self._recurrent = fn
        self.step_backend = "torch.compile"
        return True
