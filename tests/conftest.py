import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("FLASHVIDEO_COMPILE", "0")  # tests exercise the eager step; compiling costs minutes of CPU

import pytest
import torch

torch.set_num_threads(1)  # tiny models: thread hand-offs cost more than they save, and CI has 2 cores

from flashvideo.config import FlashVideoConfig
from flashvideo.pipeline import FlashVideoPipeline
from flashvideo.retnet import RetNet
from flashvideo.tokenizer import VQTokenizer, VQVAE, WordTokenizer

WORDS = ["red", "blue", "circle", "square", "moves", "left", "right", "grows"]


def make_tiny_pipeline(seed=0, wrap=False, **overrides) -> FlashVideoPipeline:
    """A random, tiny model: 16x16 frames, 4x4 codes. Fast enough for exhaustive behaviour tests. `wrap`: its
    frames wrap around (a torus), as the shapes world's do."""
    torch.manual_seed(seed)
    config = FlashVideoConfig(**{**dict(image_size=16, grid=4, n_codes=16, n_text=len(WORDS) + 1, text_len=4,
                                        max_key_frames=5, max_interp_frames=4, d_model=32, n_heads=4,
                                        n_layers=2, chunk_size=16, tokenizer_args={}), **overrides})
    vq = VQVAE(image_size=16, downsample=4, n_codes=config.n_codes, code_dim=8, channels=16, n_res=1, wrap=wrap)
    return FlashVideoPipeline(RetNet(config), VQTokenizer(WordTokenizer(WORDS), vq))


@pytest.fixture(scope="session")
def tiny_pipe():
    return make_tiny_pipeline()
