"""The tokenizer seam: a backend registered by name is saved, found by the name in tokenizer.json,
loaded by the pipeline and trained by `train-tokenizer`, without touching any other module."""
import json
from argparse import Namespace

import numpy as np
import pytest
import torch

from flashvideo import tokenizer as tk
from flashvideo.config import FlashVideoConfig
from flashvideo.pipeline import FlashVideoPipeline
from flashvideo.retnet import RetNet


class ColourTokenizer(tk.Tokenizer):
    """A toy backend: each 4x4 patch is one of 8 codes, the 3 bits of its mean colour (r, g, b > 127)."""
    image_size, grid, n_codes = 8, 2, 8

    def __init__(self, words: tk.WordTokenizer):
        self.words, self.n_text = words, words.n_text

    def encode_text(self, prompt):
        return self.words.encode(prompt)

    @property
    def vocabulary(self):
        return list(self.words.vocab)

    def _encode_images(self, x):                                   # (B,3,8,8) in [0,1] -> (B,2,2)
        bits = torch.nn.functional.avg_pool2d(x, 4) > 0.5          # (B,3,2,2)
        return (bits[:, 0] * 4 + bits[:, 1] * 2 + bits[:, 2]).long()

    def _decode_images(self, codes):                               # (B,2,2) -> (B,3,8,8)
        bits = torch.stack([(codes >> 2) & 1, (codes >> 1) & 1, codes & 1], 1).float()
        return bits.repeat_interleave(4, 2).repeat_interleave(4, 3)

    def save(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.json").write_text(json.dumps({"backend": self.backend, **self.words.to_dict()}))

    @classmethod
    def load(cls, folder, meta, **tokenizer_args):
        return cls(tk.WordTokenizer.from_dict(meta))

    @classmethod
    def train(cls, frames, words, **options):
        next(frames)                                               # nothing to learn; it reads the stream
        return cls(words), {"steps": 0}


@pytest.fixture
def colour_backend(monkeypatch):
    monkeypatch.setitem(tk.TOKENIZERS, "colour", ColourTokenizer)
    monkeypatch.setattr(ColourTokenizer, "backend", "colour", raising=False)
    return ColourTokenizer


def test_builtin_backends_are_registered():
    assert tk.TOKENIZERS["vq"] is tk.VQTokenizer and tk.TOKENIZERS["icetk"] is tk.IcetkTokenizer
    assert tk.tokenizer_class("vq") is tk.VQTokenizer
    with pytest.raises(ValueError, match=r"unknown tokenizer backend 'bpe'; choose one of \['vq', 'icetk'"):
        tk.tokenizer_class("bpe")


def test_a_registered_backend_loads_by_the_name_in_tokenizer_json(colour_backend, tmp_path):
    words = tk.WordTokenizer(["red", "dot", "blinks"])
    config = FlashVideoConfig(image_size=8, grid=2, n_codes=8, n_text=words.n_text, text_len=3, d_model=16,
                              n_heads=2, n_layers=1, max_key_frames=3, max_interp_frames=1)
    torch.manual_seed(0)
    FlashVideoPipeline(RetNet(config), colour_backend(words)).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer.json").read_text())["backend"] == "colour"
    pipe = FlashVideoPipeline.from_pretrained(tmp_path)
    assert isinstance(pipe.tokenizer, ColourTokenizer)
    video = pipe("red dot blinks", key_frames=2, interp_frames=1, seed=0)
    assert video.frames.shape == (3, 8, 8, 3)
    assert set(np.unique(video.frames)) <= {0, 255}                # the toy decoder's colours only


def test_unknown_backend_in_tokenizer_json_is_named(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"backend": "colour", "vocab": ["x"]}))
    with pytest.raises(ValueError, match=r"tokenizer.json: unknown tokenizer backend 'colour'; registered"):
        tk.load_tokenizer(tmp_path, FlashVideoConfig())


def test_config_and_file_must_agree(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"backend": "vq", "vocab": ["x"]}))
    with pytest.raises(ValueError, match="asked for tokenizer backend 'icetk' but .* holds backend 'vq'"):
        tk.read_tokenizer(tmp_path, "icetk")


def test_train_tokenizer_command_goes_through_the_registry(colour_backend, tmp_path, capsys):
    from flashvideo.cli import cmd_train_tokenizer

    args = Namespace(data="shapes", image_size=8, downsample=4, codes=8, code_dim=4, channels=4, steps=1,
                     batch_size=2, lr=1e-3, seed=0, out=str(tmp_path / "tok"), backend="colour", edge_weight=0.0,
                     decoder_of=None)
    cmd_train_tokenizer(args)
    meta = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert meta["backend"] == "colour" and "circle" in meta["vocab"]
    report = json.loads((tmp_path / "tok" / "tokenizer_metrics.json").read_text())
    assert set(report["heldout"]) == {"psnr", "codebook_usage", "codes_used"}
    from flashvideo.train import load_tokenizer_folder

    assert isinstance(load_tokenizer_folder(tmp_path / "tok"), ColourTokenizer)
