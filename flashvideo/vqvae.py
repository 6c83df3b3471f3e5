"""The patch-local VQ-VAE: the image half of the "vq" tokenizer (`flashvideo.tokenizer.VQTokenizer`);
trained by `flashvideo.train_tokenizer`, read back (with every setting and tensor checked) by
`flashvideo.tokenizer._build_vq`."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _PixelNorm(nn.Module):
    """RMS norm over the channels of each position on its own (no statistics across positions)."""

    def __init__(self, ch: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ch, 1, 1))

    def forward(self, x):                                                # (B,C,H,W)
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-6) * self.weight


class _ResBlock(nn.Module):
    """x + conv(silu(conv(silu(pixelnorm(x))))). ``k=1`` keeps each position on its own (encoder);
    ``k=3`` lets the decoder look at neighbouring codes, padded as `_padding` says.
    `VQVAE._init_weights` zeroes the last conv so that every block starts as the identity."""

    def __init__(self, ch: int, k: int, padding: dict | None = None):
        super().__init__()
        conv = padding or {}
        self.body = nn.Sequential(_PixelNorm(ch), nn.SiLU(), nn.Conv2d(ch, ch, k, **conv),
                                  nn.SiLU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        return x + self.body(x)


def _padding(wrap: bool) -> dict:
    """The decoder's 3x3 conv padding: around the frame when its world wraps (a torus, so an object split
    by an edge is drawn as one), else the border code repeated (no border effects on plain backgrounds)."""
    return dict(padding=1, padding_mode="circular" if wrap else "replicate")


class CosineQuantizer(nn.Module):
    """Nearest code by cosine similarity; codes and encodings live on the unit sphere.
    Straight-through gradients; `usage` counts how often each code was picked since the last restart."""

    def __init__(self, n_codes: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.n_codes, self.dim, self.beta = n_codes, dim, beta
        self.codebook = nn.Parameter(F.normalize(torch.randn(n_codes, dim), dim=1))   # (K,D)
        self.register_buffer("usage", torch.zeros(n_codes), persistent=False)         # (K,)

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """z (N,D) unit vectors -> code ids (N,)."""
        return (z @ F.normalize(self.codebook, dim=1).t()).argmax(dim=1)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B,h,w) -> unit vectors (B,D,h,w)."""
        return F.normalize(self.codebook, dim=1)[codes].permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor):
        """z (B,D,h,w) -> (quantised (B,D,h,w), loss, codes (B,h,w))."""
        b, d, h, w = z.shape
        zf = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, d), dim=1)                 # (N,D)
        idx = self.lookup(zf)                                                         # (N,)
        zq = F.normalize(self.codebook, dim=1)[idx]                                   # (N,D)
        loss = ((zq - zf.detach()) ** 2).sum(1).mean() + self.beta * ((zf - zq.detach()) ** 2).sum(1).mean()
        if self.training:
            self.usage += torch.bincount(idx, minlength=self.n_codes).to(self.usage)
        zq = zf + (zq - zf).detach()                                                  # straight-through
        return zq.view(b, h, w, d).permute(0, 3, 1, 2), loss, idx.view(b, h, w)

    @torch.no_grad()
    def restart_dead_codes(self, z: torch.Tensor, min_usage: float = 1.0) -> torch.Tensor:
        """Move codes used fewer than `min_usage` times onto random encodings z (B,D,h,w) of a batch,
        reset the usage counts, and return the restarted code ids."""
        zf = F.normalize(z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]), dim=1)  # (N,D)
        dead = torch.nonzero(self.usage < min_usage).flatten()
        if len(dead):
            pick = torch.randint(len(zf), (len(dead),), device=zf.device)
            new = zf[pick] + 0.01 * torch.randn(len(dead), zf.shape[1], device=zf.device)
            self.codebook.data[dead] = F.normalize(new, dim=1).to(self.codebook.dtype)
        self.usage.zero_()
        return dead


class VQVAE(nn.Module):
    """Patch-local VQ-VAE: (B,3,H,W) in [-1,1] -> (B,h,w) codes with h = w = image_size // downsample.

    Encoder: a code sees only its own downsample x downsample patch. Two non-overlapping strided convs
    (sub-patches of downsample/2, then 2x2 of them) and position-wise (1x1) residual blocks; no padding
    and no statistics across positions, so identical patches get identical codes wherever they are and
    whatever else is in the frame, and a plain frame is a single code.
    Decoder: 3x3 convs over the code grid (it may look at neighbouring codes to draw smooth edges),
    nearest 2x upsampling steps, a 3x3 conv to RGB. ``wrap``: the frames are a torus (the shapes world),
    so the decoder pads around the frame instead of repeating the border (`_padding`).
    """

    def __init__(self, *, image_size: int = 64, downsample: int = 8, n_codes: int = 1024,
                 code_dim: int = 32, channels: int = 64, n_res: int = 2, wrap: bool = False):
        super().__init__()
        if downsample < 2 or downsample & (downsample - 1):
            raise ValueError(f"downsample must be a power of 2 >= 2, got {downsample}")
        if image_size % downsample:
            raise ValueError(f"image_size={image_size} is not a multiple of downsample={downsample}")
        self.kwargs = dict(image_size=image_size, downsample=downsample, n_codes=n_codes,
                           code_dim=code_dim, channels=channels, n_res=n_res)
        if wrap:                                   # absent from the settings of frames that do not wrap
            self.kwargs["wrap"] = True
        self.image_size, self.n_codes, self.grid = image_size, n_codes, image_size // downsample
        top = 2 * channels
        sub = downsample // 2
        enc = [nn.Conv2d(3, channels, sub, stride=sub), nn.SiLU(),     # (B,C,H/sub,W/sub): one per sub-patch
               nn.Conv2d(channels, top, 2, stride=2)]                   # (B,2C,h,w): one per patch
        enc += [_ResBlock(top, 1) for _ in range(n_res)]
        enc += [_PixelNorm(top), nn.SiLU(), nn.Conv2d(top, code_dim, 1)]                # (B,D,h,w)
        self.encoder = nn.Sequential(*enc)
        self.quantizer = CosineQuantizer(n_codes, code_dim)

        rep = _padding(wrap)
        dec = [nn.Conv2d(code_dim, top, 3, **rep)] + [_ResBlock(top, 3, rep) for _ in range(n_res)]
        c_in = top
        for i in range(int(math.log2(downsample))):                      # (B,c,2h,2w) ... (B,c,H,W)
            c = max(channels // 2, top >> (i + 1))
            dec += [nn.SiLU(), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c, 3, **rep)]
            c_in = c
        dec += [nn.SiLU(), nn.Conv2d(c_in, 3, 3, **rep)]                                # (B,3,H,W)
        self.decoder = nn.Sequential(*dec)
        self._init_weights()

    def _init_weights(self):
        """He-normal init (PyTorch's default shrinks the signal at every layer, which stalls early training)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, _ResBlock):
                nn.init.zeros_(m.body[-1].weight)

    def _check_images(self, x: torch.Tensor):
        want = (3, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images (B,{want[0]},{want[1]},{want[2]}), got {tuple(x.shape)}")

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,3,H,W) in [-1,1] -> continuous encodings (B,D,h,w), before quantisation."""
        self._check_images(x)
        return self.encoder(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,3,H,W) in [-1,1] -> codes LongTensor (B,h,w)."""
        z = self.encode_latents(x)
        b, d, h, w = z.shape
        zf = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, d), dim=1)
        return self.quantizer.lookup(zf).view(b, h, w)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B,h,w) -> images (B,3,H,W) clamped to [-1,1]."""
        if codes.ndim != 3 or tuple(codes.shape[1:]) != (self.grid, self.grid):
            raise ValueError(f"expected codes (B,{self.grid},{self.grid}), got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.n_codes):
            raise ValueError(f"codes must lie in [0, {self.n_codes}), got [{int(codes.min())}, {int(codes.max())}]")
        return self.decoder(self.quantizer.embed(codes.long())).clamp(-1, 1)

    def forward(self, x: torch.Tensor):
        """x (B,3,H,W) -> (recon (B,3,H,W) unclamped, vq_loss scalar, codes (B,h,w))."""
        zq, vq_loss, codes = self.quantizer(self.encode_latents(x))
        return self.decoder(zq), vq_loss, codes
