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


def test_half_precision_storage_halves_the_file_and_loads_as_float32(tiny_pipe, saved, tmp_path):
    half = tiny_pipe.save_pretrained(tmp_path / "half", dtype=torch.float16)
    size = lambda folder: (folder / "model.safetensors").stat().st_size
    assert size(half) < 0.55 * size(saved)
    loaded = FlashVideoPipeline.from_pretrained(half).model
    for name, w in tiny_pipe.model.state_dict().items():
        got = loaded.state_dict()[name]
        assert got.dtype == w.dtype
        assert torch.equal(got, w.half().float() if w.is_floating_point() else w)
    with pytest.raises(ValueError, match="dtype must be"):
        tiny_pipe.save_pretrained(tmp_path / "bad", dtype=torch.int8)


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


# ------------------------------------------------------------------------ corrupt and hostile folders

SHIPPED = ROOT / "checkpoints" / "shapes"
SHIPPED_BYTES = sum(p.stat().st_size for p in SHIPPED.glob("*") if p.is_file()) if SHIPPED.is_dir() else 14 * 2**20
CASE_TIMEOUT_S = 20


def _safetensors(header: dict, data: bytes = b"") -> bytes:
    import json
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def _corruptions(saved: Path):
    """(name, how to break a copy of the tiny checkpoint, words the error must contain). The words name
    the file and, where there is one, the field and what is allowed."""
    import json

    from safetensors.torch import load_file, save_file

    def config(**changes):
        def apply(folder):
            cfg = json.loads((folder / "config.json").read_text())
            cfg.update(changes)
            (folder / "config.json").write_text(json.dumps(cfg))
        return apply

    def tokenizer_json(edit):
        def apply(folder):
            meta = json.loads((folder / "tokenizer.json").read_text())
            (folder / "tokenizer.json").write_text(json.dumps(edit(meta)))
        return apply

    def write(name, data):
        def apply(folder):
            (folder / name).unlink()
            (folder / name).write_bytes(data)
        return apply

    def fifo(name):
        def apply(folder):
            (folder / name).unlink()
            os.mkfifo(folder / name)
        return apply

    def link(name, target):
        def apply(folder):
            (folder / name).unlink()
            (folder / name).symlink_to(target)
        return apply

    def directory(name):
        def apply(folder):
            (folder / name).unlink()
            (folder / name).mkdir()
        return apply

    def truncate(name, keep=0.5):
        def apply(folder):
            data = (folder / name).read_bytes()
            (folder / name).write_bytes(data[:int(len(data) * keep)])
        return apply

    def weights(name, edit):
        def apply(folder):
            state = load_file(folder / name)
            edit(state)
            save_file(state, str(folder / name))
        return apply

    def header(name, edit):
        """Rewrite the safetensors header only (the data stays): shapes, offsets, dtypes."""
        def apply(folder):
            data = (folder / name).read_bytes()
            n = int.from_bytes(data[:8], "little")
            head = json.loads(data[8:8 + n])
            edit(head)
            (folder / name).write_bytes(_safetensors(head, data[8 + n:]))
        return apply

    def first_tensor(head):
        return next(k for k in head if k != "__metadata__")

    def set_nan(state, value=float("nan")):
        k = next(iter(state))
        state[k] = state[k].clone()
        state[k].view(-1)[0] = value

    C, M, J, S = "config.json", "model.safetensors", "tokenizer.json", "tokenizer.safetensors"
    return [
        # config.json: types, bounds, structure (the cases first)
        ("n_layers '4'", config(n_layers="4"), [C, "n_layers", "1..128", "got '4'"]),
        ("grid 8.0", config(grid=8.0), [C, "grid", "whole number", "got 8.0"]),
        ("n_heads 0", config(n_heads=0), [C, "n_heads", "1..256", "got 0"]),
        ("d_model -192", config(d_model=-192), [C, "d_model", "2..16384"]),
        ("d_model '192'", config(d_model="192"), [C, "d_model", "got '192'"]),
        ("ffn_mult NaN", config(ffn_mult=float("nan")), [C, "ffn_mult", "finite number"]),
        ("memory_frames -4", config(memory_frames=-4), [C, "memory_frames", "[0.5, 10000"]),
        ("d_model 20000", config(d_model=20000), [C, "d_model", "2..16384"]),
        ("n_layers 1e6", config(n_layers=10**6), [C, "n_layers", "1..128"]),
        ("n_codes 1e9", config(n_codes=10**9), [C, "n_codes", "2..65536"]),
        ("n_text 1e9", config(n_text=10**9), [C, "n_text"]),
        ("max_key_frames 1e9", config(max_key_frames=10**9), [C, "max_key_frames", "2..1024"]),
        ("in bounds but huge", config(d_model=16384, n_layers=128, n_heads=256, n_text=2**20, n_codes=65536),
         [M, "does not match", C]),
        ("shortest_memory 1", config(shortest_memory=1), [C, "shortest_memory", "(1, "]),
        ("tokenizer 'bpe'", config(tokenizer="bpe"), [C, "tokenizer backend", "'vq', 'icetk'"]),
        ("tokenizer_args huge", config(tokenizer_args={"batch_size": 10**9}), [C, "tokenizer_args.batch_size", "1..4096"]),
        ("unknown field", config(hidden_size=768), [C, "unknown fields", "hidden_size"]),
        ("centre_first 'yes'", config(sampling={"centre_first": "yes"}), [C, "centre_first", "true or false"]),
        ("centre_first, frames that do not wrap", config(sampling={"centre_first": True}), [C, "centre_first", "wrap"]),
        ("config null", write(C, b"null"), [C, "JSON object"]),
        ("config list", write(C, b"[]"), [C, "JSON object"]),
        ("config garbage", write(C, b"\xff\xfe\x00garbage"), [C, "not UTF-8"]),
        ("config truncated", truncate(C), [C, "not valid JSON"]),
        ("config deep", write(C, b"[" * 100000 + b"]" * 100000), [C, "JSON"]),
        ("config 2 MB", write(C, b" " * (2 << 20) + b"{}"), [C, "at most 1,048,576"]),
        ("config fifo", fifo(C), [C, "named pipe"]),
        ("config /dev/zero", link(C, "/dev/zero"), [C, "device"]),
        ("config folder", directory(C), [C, "folder"]),
        # model.safetensors: layout, shapes, values, kinds of file
        ("weights truncated", truncate(M), [M, "outside the file"]),
        ("weights empty", write(M, b""), [M, "too short"]),
        ("weights header length huge", write(M, b"\xff" * 8 + b"{}"), [M, "not a safetensors file"]),
        ("weights pickle", lambda f: (f / M).unlink() or torch.save({"x": torch.zeros(1)}, f / M),
         [M, "not a safetensors file"]),
        ("weights shape 1e9", header(M, lambda h: h[first_tensor(h)].update(shape=[10**9, 10**9])), [M, "does not fill"]),
        ("weights offsets out of range", header(M, lambda h: h[first_tensor(h)].update(data_offsets=[0, 2**40])),
         [M, "outside the file"]),
        ("weights dtype I64", header(M, lambda h: h[first_tensor(h)].update(dtype="I64")), [M, "dtype", "F32"]),
        ("weights overlap", header(M, lambda h: [h[k].update(data_offsets=[0, h[k]["data_offsets"][1] -
                                                                            h[k]["data_offsets"][0]])
                                                 for k in h if k != "__metadata__"]), [M, "overlap"]),
        ("weights NaN", weights(M, set_nan), [M, "NaN or infinite"]),
        ("weights inf", weights(M, lambda s: set_nan(s, float("inf"))), [M, "NaN or infinite"]),
        ("weights missing tensor", weights(M, lambda s: s.pop(next(iter(s)))), [M, "missing"]),
        ("weights extra tensor", weights(M, lambda s: s.update(extra=torch.zeros(3))), [M, "unexpected ['extra']"]),
        ("weights fifo", fifo(M), [M, "named pipe"]),
        ("weights /dev/zero", link(M, "/dev/zero"), [M, "device"]),
        ("weights folder", directory(M), [M, "folder"]),
        # tokenizer.json
        ("tokenizer.json list", write(J, b"[]"), [J, "JSON object"]),
        ("tokenizer.json null", write(J, b"null"), [J, "JSON object"]),
        ("tokenizer.json garbage", write(J, b"\x80\x81 not json"), [J, "not UTF-8"]),
        ("vocab 5", tokenizer_json(lambda m: {**m, "vocab": 5}), [J, "'vocab'", "list of at most"]),
        ("vocab huge", tokenizer_json(lambda m: {**m, "vocab": [f"w{i}" for i in range(20000)]}), [J, "'vocab'", "16384"]),
        ("vq null", tokenizer_json(lambda m: {**m, "vq": None}), [J, "'vq' settings"]),
        ("vq n_codes 1e9", tokenizer_json(lambda m: {**m, "vq": {**m["vq"], "n_codes": 10**9}}), [J, "vq.n_codes", "1..4096"]),
        ("vq channels '16'", tokenizer_json(lambda m: {**m, "vq": {**m["vq"], "channels": "16"}}), [J, "vq.channels"]),
        ("vq n_res 1e6", tokenizer_json(lambda m: {**m, "vq": {**m["vq"], "n_res": 10**6}}), [J, "vq.n_res", "1..64"]),
        ("vq in bounds but huge", tokenizer_json(lambda m: {**m, "vq": {**m["vq"], "channels": 4096, "code_dim": 4096,
                                                                         "n_res": 64}}), [S, "does not match", J]),
        ("vq wrap 'yes'", tokenizer_json(lambda m: {**m, "vq": {**m["vq"], "wrap": "yes"}}), [J, "vq.wrap", "true or false"]),
        ("vq unknown setting", tokenizer_json(lambda m: {**m, "vq": {**m["vq"], "foo": 3}}), [J, "bad VQ settings"]),
        ("tokenizer.json fifo", fifo(J), [J, "named pipe"]),
        ("tokenizer.json /dev/zero", link(J, "/dev/zero"), [J, "device"]),
        # tokenizer.safetensors
        ("tokenizer weights truncated", truncate(S), [S, "outside the file"]),
        ("tokenizer weights NaN", weights(S, set_nan), [S, "NaN or infinite"]),
        ("tokenizer weights shape", header(S, lambda h: h[first_tensor(h)].update(shape=[10**9])), [S, "does not fill"]),
        ("tokenizer weights fifo", fifo(S), [S, "named pipe"]),
        ("tokenizer weights /dev/zero", link(S, "/dev/zero"), [S, "device"]),
    ]


def _load_each(folders: list) -> list:
    """Run in a child process: load every folder, each under an alarm, measuring its peak RSS growth
    (VmHWM after resetting it through /proc/self/clear_refs)."""
    import signal
    import time

    from flashvideo.pipeline import FlashVideoPipeline

    def kb(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])

    def alarm(*_):
        raise TimeoutError(f"no answer in {CASE_TIMEOUT_S} s")

    signal.signal(signal.SIGALRM, alarm)
    results = []
    for folder in folders:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            resettable = True
        except OSError:
            resettable = False
        before, t0 = kb("VmRSS"), time.perf_counter()
        signal.alarm(CASE_TIMEOUT_S)
        try:
            FlashVideoPipeline.from_pretrained(folder)
            error = None
        except BaseException as e:  # noqa: BLE001 - every outcome is reported to the parent
            error = (type(e).__name__, str(e))
        finally:
            signal.alarm(0)
        results.append({"folder": folder, "error": error, "seconds": time.perf_counter() - t0,
                        "peak_growth_bytes": (kb("VmHWM") - before) * 1024 if resettable else None})
    return results


def test_every_corrupt_checkpoint_gets_a_clear_error_in_bounded_memory_and_time(saved, tmp_path):
    """Each way config.json, model.safetensors, tokenizer.json or tokenizer.safetensors can be wrong or
    hostile: a ValueError (FileNotFoundError) naming the file, the field and what is allowed; no more
    memory than 4 x the shipped checkpoint; no hang (a named pipe, /dev/zero), all in a child process
    with an alarm per case and a timeout for the whole."""
    import json

    cases = _corruptions(saved)
    folders = []
    for i, (name, corrupt, _) in enumerate(cases):
        folder = tmp_path / f"case{i:02d}"
        shutil.copytree(saved, folder)
        corrupt(folder)
        folders.append(str(folder))
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import test_checkpoint as t; "
            "print(json.dumps(t._load_each(json.loads(sys.argv[2]))))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests"), json.dumps([str(saved)] + folders)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results[0]["error"] is None                                # the intact copy loads
    bound = 4 * SHIPPED_BYTES
    problems = []
    for (name, _, words), r in zip(cases, results[1:]):
        kind, message = r["error"] or ("no error", "")
        if kind not in ("ValueError", "FileNotFoundError"):
            problems.append(f"{name}: {kind}: {message[:200]}")
        elif not all(w in message for w in words):
            problems.append(f"{name}: message lacks {[w for w in words if w not in message]}: {message[:300]}")
        if r["peak_growth_bytes"] is not None and r["peak_growth_bytes"] > bound:
            problems.append(f"{name}: peak RSS grew {r['peak_growth_bytes'] / 2**20:.0f} MB > {bound / 2**20:.0f} MB")
        if r["seconds"] > 10:
            problems.append(f"{name}: took {r['seconds']:.1f} s")
    assert problems == [], "\n".join(problems)
