"""The Hub, offline: save_pretrained(push_to_hub=True) writes a model card and uploads only the checkpoint
files (against a stand-in for huggingface_hub.HfApi), and from_pretrained("org/name") loads from a
Hugging Face cache with HF_HUB_OFFLINE=1 (the real huggingface_hub code path, no network)."""
import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

from flashvideo import hub

ROOT = Path(__file__).resolve().parent.parent
TABLE = "| metric | value |\n|---|---|\n| adherence | 97 % |"


class FakeApi:
    """Records calls and keeps what upload_folder would send, in a local "remote" folder."""

    def __init__(self, remote: Path, token=None):
        self.remote, self.token, self.calls = remote, token, []

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kw):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, commit_message=None, **kw):
        self.calls.append(("upload_folder", repo_id, commit_message))
        for path in Path(folder_path).iterdir():
            if allow_patterns is None or any(fnmatch.fnmatch(path.name, p) for p in allow_patterns):
                (self.remote / repo_id).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, self.remote / repo_id / path.name)
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/0"})()


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    made = []

    def factory(*args, **kwargs):
        made.append(FakeApi(tmp_path / "remote", **kwargs))
        return made[-1]

    monkeypatch.setattr(huggingface_hub, "HfApi", factory)
    return made


def test_save_pretrained_pushes_card_and_checkpoint_only(tiny_pipe, tmp_path, fake_hub):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "eval.md").write_text(TABLE)
    (folder / "optimizer.safetensors").write_bytes(b"not for the hub")
    tiny_pipe.save_pretrained(folder, push_to_hub=True, repo_id="org/tiny", token="hf_test", private=True)
    api = fake_hub[-1]
    assert api.token == "hf_test"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"] and api.calls[0][1:] == ("org/tiny", True, True)
    sent = sorted(p.name for p in (tmp_path / "remote" / "org" / "tiny").iterdir())
    assert sent == sorted(hub.HUB_FILES)                           # no optimizer state, no eval files
    card = (tmp_path / "remote" / "org" / "tiny" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: flashvideo\npipeline_tag: text-to-video")
    assert 'FlashVideoPipeline.from_pretrained("org/tiny")' in card
    assert f"| d_model | {tiny_pipe.config.d_model} |" in card and "| grid | 4 |" in card
    assert TABLE in card
    assert "red, blue, circle" in card                             # the words the model knows


def test_eval_table_from_a_given_file_or_none(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "m")
    assert "No evaluation table was given" in hub.model_card(tmp_path / "m")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "eval.md").write_text(TABLE)
    (tmp_path / "runs" / "eval.json").write_text("{}")
    assert TABLE in hub.model_card(tmp_path / "m", eval_path=tmp_path / "runs" / "eval.json")   # the .md beside it
    (tmp_path / "runs" / "eval.md").unlink()
    with pytest.raises(ValueError, match="not an eval.json written by"):
        hub.eval_table(tmp_path / "m", tmp_path / "runs" / "eval.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hub.eval_table(tmp_path / "m", tmp_path / "nowhere.md")


def test_push_refuses_what_is_not_a_checkpoint(tiny_pipe, tmp_path, fake_hub):
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        hub.push_to_hub(tmp_path, "org/x")
    with pytest.raises(ValueError, match="needs repo_id"):
        tiny_pipe.save_pretrained(tmp_path / "m", push_to_hub=True)
    tiny_pipe.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="repo_id must be 'org/name'"):
        hub.push_to_hub(tmp_path / "m", "no-slash")
    assert not fake_hub                                            # nothing reached the Hub


LOAD = """
import sys, numpy as np
from flashvideo.pipeline import FlashVideoPipeline
try:
    pipe = FlashVideoPipeline.from_pretrained(sys.argv[1])
except FileNotFoundError as e:
    print("missing:", type(e).__name__); raise SystemExit(0)
np.save(sys.argv[2], pipe("red circle moves right", key_frames=2, interp_frames=1, seed=3).frames)
print("loaded")
"""


def test_from_pretrained_offline_from_the_hub_cache(tiny_pipe, tmp_path):
    """A cache laid out as huggingface_hub writes it (models--org--name/snapshots/<rev>, refs/main)."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--org--tiny"
    tiny_pipe.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HF_")}, "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", LOAD, "org/tiny", tmp_path / "frames.npy"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "loaded", out.stderr[-2000:]
    expected = tiny_pipe("red circle moves right", key_frames=2, interp_frames=1, seed=3).frames
    assert np.array_equal(np.load(tmp_path / "frames.npy"), expected)
    missing = subprocess.run([sys.executable, "-c", LOAD, "org/absent", tmp_path / "x.npy"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert missing.stdout.strip() == "missing: LocalEntryNotFoundError", missing.stderr[-2000:]
