"""Reading checkpoint files that may be hostile: regular files only, bounded sizes, safetensors
headers checked before any tensor is allocated, finite weights.

    data = read_regular_file(path, MAX_JSON_BYTES)          # never blocks on a pipe or a device
    meta = read_json(path)                                  # a JSON object, or ValueError naming the file
    header = safetensors_header(data, path)                 # {name: (dtype, shape)}, nothing allocated
    check_shapes(header, {name: shape}, path, against)      # the file against what the config builds
    tensors = load_tensors(data, path)                      # torch tensors, NaN/inf refused

Every error is a ValueError (FileNotFoundError for a missing file) whose message names the file.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

MAX_JSON_BYTES = 1 << 20              # config.json, tokenizer.json
MAX_WEIGHTS_BYTES = 2 << 30           # one .safetensors file (the shipped ones are under 10 MB)
MAX_HEADER_BYTES = 16 << 20           # safetensors JSON header
WEIGHT_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def read_regular_file(path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes. A named pipe, a device (/dev/zero), a folder or
    a socket is refused without reading from it: the file is opened non-blocking and checked by fstat."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a file") from None
    except OSError as e:
        raise ValueError(f"{path} cannot be opened ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                    or stat.S_ISBLK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file")
            raise ValueError(f"{path} is {kind}; only regular files are read")
        if st.st_size > max_bytes:
            raise ValueError(f"{path} is {st.st_size:,} bytes; at most {max_bytes:,} are allowed")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise ValueError(f"{path} grew past {max_bytes:,} bytes while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def parse_json(data: bytes, path) -> object:
    """JSON from bytes, with errors that name the file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}): is it really a JSON file?") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"{path} is not valid JSON: nested too deeply") from None


def read_json(path, max_bytes: int = MAX_JSON_BYTES) -> dict:
    """A JSON object from a regular file (ValueError naming the file otherwise)."""
    value = parse_json(read_regular_file(path, max_bytes), path)
    if not isinstance(value, dict):
        kind = ("null" if value is None else "a list" if isinstance(value, list) else "text"
                if isinstance(value, str) else f"the {type(value).__name__} {value}")
        raise ValueError(f"{path} must hold a JSON object {{...}}, got {kind}")
    return value


def safetensors_header(data: bytes, path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Check a safetensors file's layout without allocating a tensor: the 8-byte header length, the
    JSON header, every entry's dtype, shape and byte range (inside the file, no overlaps, sizes that
    match). Returns {name: (dtype, shape)}."""
    if len(data) < 8:
        raise ValueError(f"{path} is not a safetensors file: {len(data)} bytes is too short for a header")
    n = int.from_bytes(data[:8], "little")
    if n < 2 or n > min(MAX_HEADER_BYTES, len(data) - 8):
        raise ValueError(f"{path} is not a safetensors file (header length {n:,} does not fit a "
                         f"{len(data):,}-byte file); pickles (.bin, .pt) are never loaded")
    header = parse_json(data[8:8 + n], path)
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file: its header is not a JSON object")
    header.pop("__metadata__", None)
    body = len(data) - 8 - n
    spans, out = [], {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) - {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{path}: tensor {name!r} has a malformed header entry")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in WEIGHT_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype!r}; weights must be one of "
                             f"{sorted(WEIGHT_DTYPES)}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
            raise ValueError(f"{path}: tensor {name!r} has an invalid shape {str(shape)[:60]}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= body):
            raise ValueError(f"{path}: tensor {name!r} has byte range {str(offsets)[:60]} outside the "
                             f"file's {body:,} data bytes (truncated file?)")
        if math.prod(shape) * WEIGHT_DTYPES[dtype] != offsets[1] - offsets[0]:
            raise ValueError(f"{path}: tensor {name!r} of shape {tuple(shape)} {dtype} does not fill its "
                             f"{offsets[1] - offsets[0]:,} bytes")
        spans.append((offsets[0], offsets[1], name))
        out[name] = (dtype, tuple(shape))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(f"{path}: tensors {a!r} and {b!r} overlap")
    return out


def check_shapes(header: dict, expected: dict, path, against: str) -> None:
    """The header's {name: (dtype, shape)} against the {name: shape} a config builds: ValueError that
    lists what is missing, unexpected or of the wrong shape."""
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    wrong = [f"{k}: file {header[k][1]} vs {tuple(v)}" for k, v in expected.items()
             if k in header and tuple(header[k][1]) != tuple(v)]
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not match {against}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"wrong shapes {wrong[:5]}")


def load_tensors(data: bytes, path) -> dict:
    """Tensors from safetensors bytes whose header passed `safetensors_header`; NaN or inf refused."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e})") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path}: tensor {name!r} holds NaN or infinite values; the checkpoint is corrupt")
    return tensors
