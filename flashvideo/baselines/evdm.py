"""EVDM baseline: an efficiency-optimised video diffusion model (Deng, He, Peng, MM '23;
`papers/evdm.md`), for speed comparisons only (random weights; timing does not depend on them).

What is built, and where it follows the paper:

* **Pixel space, 2D U-Net, frames folded into channels** (paper sec. 3.2, "the frame dimension of the
  video is integrated into the channel dimension"): the network denoises `block_frames` (k) current
  frames, conditioned on `past_frames` (p) earlier frames concatenated into the input channels
  (MCVD "concat"), input (B, 3(k+p), H, W) -> predicted noise (B, 3k, H, W). Longer videos are
  generated block by block, each block conditioned on the last p frames (the first on none: the
  paper's past-frame mask m_p = 0). Defaults p = 1, k = 5: the paper's BAIR setting (Table 3).
* **Four levels** with channel multipliers M_n = [1, 2, 3, 4] and self-attention in levels 2-4
  (sec. 4.3). Level n works at resolution H / 2^(n-1).
* **Bottleneck residual pathway** (BRP, sec. 3.2, eqs. 8-10): GroupNorm + temporal enhancement
  Y = GN(X)(1 + e1) + e2 with e from G_emb(past frames, timestep) (we add the prompt's words to it);
  a bottleneck pointwise conv down to c_out / delta channels (delta = 4: EVDM; 8: EVDM-L), enhanced
  again (eq. 9); then two pathways, a 3x3 and a 1x1 conv, concatenated (eq. 10). The procedure is
  repeated twice, with a residual connection around the second.
* **Three-path channel split + channel shuffle** (sec. 3.4, Fig. 2): for C_in < C_out all input
  channels feed the bottleneck and are also passed straight to the output, the conv pathways make
  the other C_out - C_in channels; for C_in >= C_out, C_out/2 input channels feed the bottleneck and
  the other C_in - C_out/2 go through the direct link (a grouped 1x1 conv -- the paper's shortcut
  optimisation -- when their count differs from C_out/2). The output is channel-shuffled
  (ShuffleNet) so the next split does not always pick the same channels.
* **Mixed self-attention** (sec. 3.3, eq. 14): per layer, with L = HW tokens and head size d,
  FAVOR+ linear attention (positive orthogonal random features, Choromanski et al.) when L > lambda*d,
  plain softmax attention otherwise; lambda = 2 (sec. 4.3).
* **Sampling**: DDIM (eta = 0) over a linear-beta schedule of 1000 training steps, with
  `steps` network evaluations per block; default 100, the step count of the paper's results
  (Table 4: "EVDM 100 steps").

Width budget: built from a FlashVideoConfig, the U-Net's widest level has d_model channels
(C0 = d_model / 4, levels C0 x [1, 2, 3, 4]) and its attention heads have the RetNet's head size
d_model / n_heads; frames are config.image_size pixels square (the FlashVideo grid's pixels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import FlashVideoConfig

PAPER_STEPS = 100


@dataclass
class EVDMConfig:
    image_size: int = 64
    past_frames: int = 1          # p: conditioning frames, concatenated into the input channels
    block_frames: int = 5         # k: frames denoised jointly (folded into channels)
    base_channels: int = 48       # C0
    mults: tuple = (1, 2, 3, 4)   # M_n
    attn_levels: tuple = (2, 3, 4)
    head_dim: int = 48            # d in eq. 14
    lam: float = 2.0              # lambda: FAVOR+ when L > lambda * d
    delta: int = 4                # bottleneck channel reduction (4: EVDM, 8: EVDM-L)
    shuffle_groups: int = 2
    shortcut_groups: int = 4
    n_features: int | None = None  # FAVOR+ random features (default: head_dim)
    n_text: int = 32
    train_steps: int = 1000       # T of the noise schedule
    steps: int = PAPER_STEPS      # DDIM network evaluations per block
    block: str = "evdm"           # "evdm" (BRP) or "plain" (MCVD-style ResNet block, for FLOP comparison)
    attention: str = "mixed"      # "mixed" (eq. 14), "softmax" or "linear"

    @classmethod
    def from_flashvideo(cls, config: FlashVideoConfig, **overrides) -> "EVDMConfig":
        base = dict(image_size=config.image_size, base_channels=max(8, config.d_model // 4),
                    head_dim=config.d_model // config.n_heads, n_text=config.n_text)
        return cls(**{**base, **overrides})

    @property
    def channels(self) -> list[int]:
        return [self.base_channels * m for m in self.mults]


# ------------------------------------------------------------------------------------ building blocks

def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C, H, W): interleave the channels of `groups` groups (ShuffleNet)."""
    B, C, H, W = x.shape
    if groups <= 1 or C % groups:
        return x
    return x.view(B, groups, C // groups, H, W).transpose(1, 2).reshape(B, C, H, W)


def group_norm(c: int) -> nn.GroupNorm:
    for g in (32, 16, 8, 4, 2, 1):
        if c % g == 0 and c // g >= 2 or g == 1:
            return nn.GroupNorm(g, c)


class Enhance(nn.Module):
    """Temporal enhancement (eq. 8): GN(x) * (1 + e1) + e2, e = Linear(G_emb(p, t))."""

    def __init__(self, c: int, emb_dim: int):
        super().__init__()
        self.norm = group_norm(c)
        self.proj = nn.Linear(emb_dim, 2 * c)

    def forward(self, x, emb):
        e1, e2 = self.proj(emb)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + e1) + e2


class BottleneckPath(nn.Module):
    """One BRP procedure (eqs. 8-10): enhance, ReLU, 1x1 down to c_b, enhance, [3x3 | 1x1] -> c_out."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, delta: int):
        super().__init__()
        c_b = max(4, c_out // delta)
        self.enhance_in = Enhance(c_in, emb_dim)
        self.bottleneck = nn.Conv2d(c_in, c_b, 1)
        self.enhance_b = Enhance(c_b, emb_dim)
        half = c_out // 2
        self.conv3 = nn.Conv2d(c_b, c_out - half, 3, padding=1)
        self.conv1 = nn.Conv2d(c_b, half, 1)

    def forward(self, x, emb):
        y = self.enhance_in(x, emb)
        yb = self.enhance_b(self.bottleneck(F.relu(y)), emb)
        return torch.cat([self.conv3(yb), self.conv1(yb)], dim=1)


class BRPBlock(nn.Module):
    """Bottleneck residual pathway with the three-path channel split and channel shuffle."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, delta: int = 4, shuffle_groups: int = 2,
                 shortcut_groups: int = 4):
        super().__init__()
        self.c_in, self.c_out, self.shuffle_groups = c_in, c_out, shuffle_groups
        if c_in < c_out:       # all channels to the bottleneck, and all straight to the output
            self.conv_in, direct_in = c_in, c_in
            conv_out = c_out - c_in
            self.split = False
        else:                  # C_out/2 to the bottleneck, the rest to the direct link
            self.conv_in, direct_in = c_out // 2, c_in - c_out // 2
            conv_out = c_out - c_out // 2
            self.split = True
        direct_out = c_out - conv_out
        self.path1 = BottleneckPath(self.conv_in, conv_out, emb_dim, delta)
        self.path2 = BottleneckPath(conv_out, conv_out, emb_dim, delta)
        if direct_in == direct_out:
            self.direct = nn.Identity()
        else:                  # shortcut optimisation: grouped pointwise conv
            g = math.gcd(math.gcd(direct_in, direct_out), shortcut_groups)
            self.direct = nn.Conv2d(direct_in, direct_out, 1, groups=g)

    def forward(self, x, emb):
        if self.split:
            xc, xd = x[:, :self.conv_in], x[:, self.conv_in:]
        else:
            xc, xd = x, x
        h = self.path1(xc, emb)
        h = h + self.path2(h, emb)
        return channel_shuffle(torch.cat([h, self.direct(xd)], dim=1), self.shuffle_groups)


class PlainResBlock(nn.Module):
    """The MCVD / DDPM ResNet block the BRP replaces: GN-SiLU-conv3x3, + emb, GN-SiLU-conv3x3, + shortcut."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, **_):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


def orthogonal_features(m: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """(m, d) orthogonal random projection rows with chi-distributed norms (FAVOR+)."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator))
        blocks.append(q.T)
    w = torch.cat(blocks)[:m]
    norms = torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)
    return w * norms


def favor_attention(q, k, v, proj):
    """FAVOR+ (positive random features): softmax(q k^T / sqrt(d)) v approximated in O(L m d).
    q, k, v (B, H, L, d); proj (m, d)."""
    d, m = q.shape[-1], proj.shape[0]
    q, k = q * d ** -0.25, k * d ** -0.25
    qw, kw = q @ proj.T, k @ proj.T                       # (B, H, L, m)
    qn, kn = q.pow(2).sum(-1, keepdim=True) / 2, k.pow(2).sum(-1, keepdim=True) / 2
    phi_q = torch.exp(qw - qn - qw.amax(-1, keepdim=True)) / math.sqrt(m)
    phi_k = torch.exp(kw - kn - kw.amax((-1, -2), keepdim=True)) / math.sqrt(m)
    kv = phi_k.transpose(-1, -2) @ v                      # (B, H, m, d)
    z = phi_q @ phi_k.sum(-2, keepdim=True).transpose(-1, -2)  # (B, H, L, 1)
    return (phi_q @ kv) / z.clamp_min(1e-6)


class MixedSelfAttention(nn.Module):
    """Self-attention over the H*W positions of a feature map; the gate (eq. 14) picks FAVOR+ when
    L > lambda * d (d = head size), plain softmax attention otherwise."""

    def __init__(self, c: int, head_dim: int, lam: float = 2.0, n_features: int | None = None,
                 mode: str = "mixed", seed: int = 0):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.head_dim = c // self.heads
        self.lam, self.mode = lam, mode
        self.norm = group_norm(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.out = nn.Conv2d(c, c, 1)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", orthogonal_features(n_features or self.head_dim, self.head_dim, g),
                             persistent=False)
        self.last_choice, self.last_L = None, None  # what the gate chose in the last forward, and for which L

    def uses_linear(self, L: int) -> bool:
        if self.mode != "mixed":
            return self.mode == "linear"
        return L > self.lam * self.head_dim

    def forward(self, x, emb=None):
        B, C, H, W = x.shape
        L = H * W
        q, k, v = self.qkv(self.norm(x)).view(B, 3, self.heads, self.head_dim, L).transpose(-1, -2).unbind(1)
        linear = self.uses_linear(L)
        self.last_choice, self.last_L = ("linear" if linear else "softmax"), L
        o = favor_attention(q, k, v, self.proj) if linear else F.scaled_dot_product_attention(q, k, v)
        return x + self.out(o.transpose(-1, -2).reshape(B, C, H, W))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], dim=1)


# ------------------------------------------------------------------------------------ the network

class EVDMUNet(nn.Module):
    """eps_theta(x_t | t, past frames, prompt): (B, 3k, H, W) noisy current frames -> (B, 3k, H, W) noise."""

    def __init__(self, cfg: EVDMConfig):
        super().__init__()
        self.cfg = cfg
        c0, chans = cfg.base_channels, cfg.channels
        emb = 4 * c0
        Block = BRPBlock if cfg.block == "evdm" else PlainResBlock
        kw = dict(delta=cfg.delta, shuffle_groups=cfg.shuffle_groups, shortcut_groups=cfg.shortcut_groups)
        self.t_mlp = nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.text = nn.EmbeddingBag(cfg.n_text, emb, mode="mean", padding_idx=0)
        self.past_pool = 4
        self.past = nn.Linear(3 * cfg.past_frames * self.past_pool ** 2, emb) if cfg.past_frames else None
        self.inp = nn.Conv2d(3 * (cfg.block_frames + cfg.past_frames), c0, 3, padding=1)

        def attn(c, level):
            if level not in cfg.attn_levels:
                return None
            return MixedSelfAttention(c, cfg.head_dim, cfg.lam, cfg.n_features, cfg.attention, seed=level)

        self.down, self.down_attn, skips, c = nn.ModuleList(), nn.ModuleList(), [], c0
        for n, ch in enumerate(chans, start=1):
            self.down.append(Block(c, ch, emb, **kw))
            self.down_attn.append(attn(ch, n) or nn.Identity())
            skips.append(ch)
            c = ch
        self.mid1, self.mid_attn, self.mid2 = Block(c, c, emb, **kw), attn(c, len(chans)) or nn.Identity(), Block(c, c, emb, **kw)
        self.up, self.up_attn = nn.ModuleList(), nn.ModuleList()
        for n in range(len(chans), 0, -1):
            ch = chans[n - 1]
            self.up.append(Block(c + skips[n - 1], ch, emb, **kw))
            self.up_attn.append(attn(ch, n) or nn.Identity())
            c = ch
        self.out_norm = group_norm(c)
        self.out = nn.Conv2d(c, 3 * cfg.block_frames, 3, padding=1)

    def embedding(self, t, past, text_ids):
        e = self.t_mlp(timestep_embedding(t, self.cfg.base_channels))
        if text_ids is not None:
            e = e + self.text(text_ids)
        if self.past is not None and past is not None:
            e = e + self.past(F.adaptive_avg_pool2d(past, self.past_pool).flatten(1))
        return F.silu(e)

    @staticmethod
    def _run(m, x, emb):
        return x if isinstance(m, nn.Identity) else m(x, emb)

    def forward(self, x, t, past=None, text_ids=None):
        """x (B, 3k, H, W); t (B,) timesteps; past (B, 3p, H, W) or None (masked: zeros);
        text_ids (B, n) word ids, 0 = pad."""
        B, _, H, W = x.shape
        if past is None:
            past = x.new_zeros(B, 3 * self.cfg.past_frames, H, W)
        emb = self.embedding(t, past, text_ids)
        h = self.inp(torch.cat([x, past], dim=1))
        skips = []
        for n, (blk, att) in enumerate(zip(self.down, self.down_attn)):
            h = self._run(att, blk(h, emb), emb)
            skips.append(h)
            if n < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid2(self._run(self.mid_attn, self.mid1(h, emb), emb), emb)
        for i, (blk, att) in enumerate(zip(self.up, self.up_attn)):
            skip = skips[len(skips) - 1 - i]
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = self._run(att, blk(torch.cat([h, skip], dim=1), emb), emb)
        return self.out(F.silu(self.out_norm(h)))

    def attention_layers(self) -> list[MixedSelfAttention]:
        return [m for m in self.modules() if isinstance(m, MixedSelfAttention)]


# ------------------------------------------------------------------------------------ sampling

class EVDM(nn.Module):
    """The U-Net plus its noise schedule and DDIM sampler."""

    def __init__(self, cfg: EVDMConfig):
        super().__init__()
        self.cfg = cfg
        self.net = EVDMUNet(cfg)
        betas = torch.linspace(1e-4, 0.02, cfg.train_steps, dtype=torch.float64)
        self.register_buffer("abar", torch.cumprod(1 - betas, 0).float(), persistent=False)

    @classmethod
    def from_flashvideo(cls, config: FlashVideoConfig, **overrides) -> "EVDM":
        return cls(EVDMConfig.from_flashvideo(config, **overrides))

    def ddim_timesteps(self, steps: int) -> list[int]:
        ts = np.linspace(self.cfg.train_steps - 1, 0, steps).round().astype(int)
        return list(dict.fromkeys(ts.tolist()))

    @torch.no_grad()
    def sample_block(self, past, text_ids, generator: torch.Generator, steps: int | None = None,
                     counts: dict | None = None) -> torch.Tensor:
        """DDIM (eta = 0): one block of k frames, (B, 3k, H, W) in [-1, 1]."""
        cfg, dev = self.cfg, self.abar.device
        B = text_ids.shape[0] if text_ids is not None else (past.shape[0] if past is not None else 1)
        x = torch.randn(B, 3 * cfg.block_frames, cfg.image_size, cfg.image_size, generator=generator).to(dev)
        ts = self.ddim_timesteps(steps or cfg.steps)
        for i, t in enumerate(ts):
            eps = self.net(x, torch.full((B,), t, device=dev), past, text_ids)
            a = self.abar[t]
            a_prev = self.abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, device=dev)
            x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            if counts is not None:
                counts["forwards"] = counts.get("forwards", 0) + 1
        return x


@torch.no_grad()
def generate_frames(model: EVDM, text_ids, n_frames: int, seed: int = 0, steps: int | None = None,
                    counts: dict | None = None):
    """Yield n_frames uint8 (H, W, 3) frames, block by block (k frames per block, each block
    conditioned on the last p frames generated; the first block on none)."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    text = torch.as_tensor(list(text_ids), dtype=torch.long)[None]
    past, done = None, 0
    while done < n_frames:
        x = model.sample_block(past, text, gen, steps, counts)             # (1, 3k, H, W)
        frames = x.view(cfg.block_frames, 3, cfg.image_size, cfg.image_size)
        if cfg.past_frames:
            past = x[:, -3 * cfg.past_frames:]
        for f in frames[:n_frames - done]:
            yield ((f.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        done += cfg.block_frames


# ------------------------------------------------------------------------------------ FLOPs

def count_flops(module: nn.Module, *args, **kwargs) -> int:
    """FLOPs of one forward, by torch.utils.flop_counter (convolutions, matmuls, attention; not
    norms or pointwise ops)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    return counter.get_total_flops()


def block_flops(c_in: int, c_out: int, size: int, delta: int = 4, emb_dim: int = 64) -> dict:
    """FLOPs of a BRP block and of the plain ResNet block it replaces, at the same width and size."""
    x, emb = torch.randn(1, c_in, size, size), torch.randn(1, emb_dim)
    evdm = BRPBlock(c_in, c_out, emb_dim, delta=delta)
    plain = PlainResBlock(c_in, c_out, emb_dim)
    f_e, f_p = count_flops(evdm, x, emb), count_flops(plain, x, emb)
    return {"c_in": c_in, "c_out": c_out, "size": size, "delta": delta, "evdm_flops": f_e,
            "plain_flops": f_p, "ratio": f_p / f_e,
            "evdm_params": sum(p.numel() for p in evdm.parameters()),
            "plain_params": sum(p.numel() for p in plain.parameters())}


def network_flops(cfg: EVDMConfig) -> dict:
    """FLOPs of one denoiser call (batch 1) for EVDM and for the same U-Net with plain blocks and
    plain attention (the MCVD-style network EVDM slims down)."""
    out = {}
    for name, over in (("evdm", {}), ("plain", dict(block="plain", attention="softmax"))):
        net = EVDMUNet(replace(cfg, **over)).eval()
        x = torch.randn(1, 3 * cfg.block_frames, cfg.image_size, cfg.image_size)
        out[f"{name}_flops"] = count_flops(net, x, torch.tensor([500]), None, torch.tensor([[1, 2]]))
        out[f"{name}_params"] = sum(p.numel() for p in net.parameters())
    out["ratio"] = out["plain_flops"] / out["evdm_flops"]
    return out


# The paper's figures to print next to ours (Table 1, KTH, C0 = 96: convolution GFLOPs of the
# whole network; Table 2: whole-network GFLOPs).
PAPER_TABLE1 = {"conv_reduction_evdm": 5.21, "conv_reduction_evdm_l": 18.49, "attn_reduction": 2.11}
PAPER_TABLE2_KTH = {"mcvd_gflops": 1376.87, "evdm_gflops": 307.41, "evdm_l_gflops": 133.99}
