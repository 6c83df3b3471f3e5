"""Baselines for the speed benchmark (`flashvideo.bench`), each built from a FlashVideoConfig at the
same width, depth, heads, vocabulary and token grid as the FlashVideo RetNet:

* `transformer` -- autoregressive decoder-only transformer, decoded with and without a KV cache;
* `masked`      -- masked parallel decoder (MaskGIT / MAGVIT style), cosine schedule per frame;
* `evdm`        -- EVDM video diffusion U-Net (papers/evdm.md) with a DDIM sampler.

Benchmarks only: they are never trained here, and timing does not depend on the weights.
"""
