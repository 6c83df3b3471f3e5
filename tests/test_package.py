"""Packaging: the wheel builds, installs into a fresh venv and generates a video from a folder outside the
repo, with the shipped model found inside the installed package; an editable install finds the repo's.

Nothing is downloaded: the venvs see this interpreter's packages (--system-site-packages) and flashvideo
is installed with --no-deps --no-index. The sources are copied to a temporary folder first, so building
leaves nothing (build/, *.egg-info) in the repo.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "shapes"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer.safetensors")
PROMPT = "a red circle moves right"


def run(*cmd, cwd, timeout=120, env=None):
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The package's sources, copied out of the repo (pyproject.toml, README.md, flashvideo/, checkpoints/)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("flashvideo", "checkpoints"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    return src


def venv(path):
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)], check=True,
                   timeout=60)
    return path / "bin" / "python"


def pip_install(python, *args, cwd):
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", *args,
        cwd=cwd, timeout=120)


def clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def shipped_model_loads() -> bool:
    from flashvideo.pipeline import FlashVideoPipeline

    try:
        FlashVideoPipeline.from_pretrained(SHIPPED)
    except (ValueError, OSError) as e:
        warnings.warn(f"the shipped checkpoint does not load with this code ({str(e)[:160]}); the installed "
                      f"package generates with a tiny model passed as --model instead")
        return False
    return True


def test_wheel_installs_and_generates_outside_the_repo(source, tmp_path):
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
        "-w", dist, source, cwd=tmp_path)
    wheel = next(dist.glob("flashvideo-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"flashvideo/checkpoints/shapes/{f}" for f in FILES} <= names
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "flashvideo").rglob("*.py")}
    assert modules <= names, f"modules missing from the wheel (add their package to pyproject.toml): {modules - names}"

    python = venv(tmp_path / "venv")
    pip_install(python, wheel, cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = clean_env()
    where = run(python, "-c", "import flashvideo, flashvideo.pipeline as p; print(flashvideo.__file__); "
                              "print(p.default_checkpoint())", cwd=work, env=env).split()
    site = tmp_path / "venv" / "lib"
    assert Path(where[0]).is_relative_to(site), where        # the installed copy, not the repo
    packaged = Path(where[1])
    assert packaged.is_relative_to(site) and packaged.name == "shapes"
    assert all(sha(packaged / f) == sha(SHIPPED / f) for f in FILES)

    model = []
    if not shipped_model_loads():
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import make_tiny_pipeline

        make_tiny_pipeline().save_pretrained(tmp_path / "tiny")
        model = ["--model", tmp_path / "tiny"]
    script = tmp_path / "venv" / "bin" / "flashvideo"
    run(script, "generate", PROMPT, "--key-frames", 2, "--interp-frames", 1, "--out", "clip.gif", "--scale", 1,
        *model, cwd=work, env=env, timeout=180)
    assert (work / "clip.gif").stat().st_size > 0
    assert "usage" in run(python, "-m", "flashvideo", "--help", cwd=work, env=env)


def test_editable_install_finds_the_checkout(source, tmp_path):
    python = venv(tmp_path / "venv")
    pip_install(python, "--no-build-isolation", "-e", source, cwd=tmp_path)
    found = run(python, "-c", "import flashvideo.pipeline as p; print(p.__file__); print(p.default_checkpoint())",
                cwd=tmp_path, env=clean_env()).split()
    assert Path(found[0]) == source / "flashvideo" / "pipeline.py"
    assert Path(found[1]) == source / "checkpoints" / "shapes"
    assert "generate" in run(tmp_path / "venv" / "bin" / "flashvideo", "--help", cwd=tmp_path, env=clean_env())


def test_no_default_model_is_a_clear_error(monkeypatch, tmp_path):
    from flashvideo import pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_CHECKPOINTS", (tmp_path / "a", tmp_path / "b"))
    with pytest.raises(FileNotFoundError, match=r"shipped default model is not here: looked for config.json in "
                                                r".*a and in .*b\. Pass a checkpoint folder or a Hub repo id"):
        pipeline.FlashVideoPipeline.from_pretrained()
