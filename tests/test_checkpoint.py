"""Checkpoint folders: save/load round trip, Hub loading offline, and every way a folder can be wrong."""
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flashvideo.pipeline import FlashVideoPipeline

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def saved(tiny_pipe, tmp_path):
    return tiny_pipe.save_pretrained(tmp_path / "ckpt")


def test_round_trip_gives_identical_video(tiny_pipe, saved):
    files = sorted(p.name for p in saved.iterdir())
    assert "config.json" in files and "model.safetensors" in files
    assert all(f.endswith((".json", ".safetensors")) for f in files)
    assert all((saved / f).stat().st_size < 10 * 2**20 for f in files)
    loaded = FlashVideoPipeline.from_pretrained(saved)
    kw = dict(key_frames=3, interp_frames=1, seed=4)
    assert np.array_equal(loaded("a blue square grows", **kw).frames, tiny_pipe("a blue square grows", **kw).frames)


def test_hub_id_loads_offline_from_a_cache(saved, tmp_path):
    """Build a real huggingface_hub cache by hand and load 'flashvideo/tiny' from it with HF_HUB_OFFLINE=1."""
    home = tmp_path / "hf"
    repo = home / "hub" / "models--flashvideo--tiny"
    rev = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(saved, repo / "snapshots" / rev)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    code = ("from flashvideo import FlashVideoPipeline as P; p = P.from_pretrained('flashvideo/tiny'); "
            "print(p.config.grid, len(p('a red circle', key_frames=2, interp_frames=1).frames))")
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "3"]
    # an id that is not in the cache fails at once, offline, with the hub's own error
    code = "from flashvideo import FlashVideoPipeline as P; P.from_pretrained('flashvideo/missing')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "LocalEntryNotFoundError" in out.stderr


def test_pickle_checkpoint_is_refused(saved):
    (saved / "model.safetensors").unlink()
    with open(saved / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": 1}, f)
    with pytest.raises(FileNotFoundError, match="pickle"):
        FlashVideoPipeline.from_pretrained(saved)


def test_pickle_disguised_as_safetensors_is_refused(saved):
    torch.save({"x": torch.zeros(1)}, saved / "model.safetensors")
    with pytest.raises(ValueError, match="safetensors"):
        FlashVideoPipeline.from_pretrained(saved)


def test_wrong_shapes_are_named(saved):
    import json

    cfg = json.loads((saved / "config.json").read_text())
    cfg["d_model"] = 64
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="wrong shapes"):
        FlashVideoPipeline.from_pretrained(saved)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_files_are_named(saved, missing):
    (saved / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing.replace(".", r"\.")):
        FlashVideoPipeline.from_pretrained(saved)


def test_foreign_config_is_refused(saved):
    (saved / "config.json").write_text('{"architectures": ["BertModel"], "hidden_size": 768}')
    with pytest.raises(ValueError, match="FlashVideo"):
        FlashVideoPipeline.from_pretrained(saved)


def test_not_a_folder_nor_hub_id():
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        FlashVideoPipeline.from_pretrained("./no/such/folder")
