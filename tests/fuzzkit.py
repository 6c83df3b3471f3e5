"""Hostile-input fuzzing of the app's /generate endpoint, shared by tests/test_fuzz.py and the
before/after figures of issue 9 (`python tests/fuzzkit.py --help`).

A fuzz case is one call: through gradio_client (the client uploads `handle_file` files itself) or
through plain HTTP (`/gradio_api/upload` + `/gradio_api/call/generate`, where the payload is sent
exactly as written: raw server paths, `meta` or not, `data:` URLs, NaN and Infinity). Every outcome
is classified:

* ok       the video was generated;
* clean    refused with one of the app's messages: it names the field and says what is allowed;
* unclear  anything else: Gradio's or pydantic's messages, a raw exception, no message, a hang.

and every message is searched for server paths. The server side records (with an audit hook) every
attempt to open one of the paths the fuzz sent, so a test can assert that no file outside the
upload folder was read.

Issue 9's before/after figures, for the code in --root (default: this checkout; "before" was measured
on `git archive 965b2f7 | tar -x -C /tmp/before`):

    python tests/fuzzkit.py measure [--root R] [--no-fifo]   # the fuzz against `app.py` in a child process
    python tests/fuzzkit.py cli [--root R]                   # the issue's CLI cases
    python tests/fuzzkit.py disk [--root R]                  # files and bytes per default job
    python tests/fuzzkit.py checkpoints [--root R]           # tests/test_checkpoint.py's corrupt folders
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import os
import random
import re
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np

PROMPT = "a red circle moves right"
# generate's inputs, in order, and the words our messages use for them
FIELDS = ["prompt", "first frame", "key frames", "interpolated frames", "inheritable-token ratio", "seed",
          "randomise seed", "temperature", "top-k"]
FIELD_WORDS = FIELDS + ["request", "queue"]
ALLOWED_WORDS = re.compile(r"\d|must|allowed|at most|at least|only|one of|true or false|upload|whole number|"
                           r"between|describe|known words|try again", re.I)
GRADIO_WORDS = re.compile(r"Could not preprocess|validation error|input_value|Expected a|pydantic|Traceback|"
                          r"Cannot move|not in the cache folder|upstream Gradio app|errors\.pydantic|"
                          r"Value .* is (greater|less) than", re.I)
PATH_RE = re.compile(r"(?<![\w.:/])/(?:tmp|work|root|home|etc|proc|dev|usr|var|opt|srv|mnt|sys|run|private)"
                     r"(?:/[^\s'\"`)\],]*)?")


# ------------------------------------------------------------------------------------ files

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int, mode: int = 0, depth: int = 8) -> bytes:
    """PNG signature + IHDR (colour type `mode`: 0 grey, 2 RGB), nothing else."""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, mode, 0, 0, 0))


def bomb_png(width: int = 12_000, height: int = 12_000) -> bytes:
    """A valid greyscale PNG of zeros: width*height pixels (144 M by default) in well under 1 MB."""
    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    parts = [z.compress(row) for _ in range(height)] + [z.flush()]
    return png_header(width, height) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def image_bytes(array, fmt="PNG", **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    (array if isinstance(array, Image.Image) else Image.fromarray(array)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def data_url(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def make_assets(folder: Path) -> dict[str, Path]:
    """Files to upload (good and bad ones) and canaries outside the upload folder."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = image_bytes(np.full((40, 60, 3), 200, np.uint8))
    files = {
        "good.png": good,
        "good.jpg": image_bytes(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), "JPEG"),
        "notes.txt": b"not an image\n",
        "empty.png": b"",
        "header_only.png": png_header(64, 64, 2),
        "zero.png": png_header(0, 0) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""),
        "truncated.png": image_bytes(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))[:300],
        "bomb.png": bomb_png(),
        "claims_huge.png": png_header(100_000, 100_000) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""),
        "wide.png": image_bytes(np.zeros((2, 5000, 3), np.uint8)),
        "picture.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        "anim.gif": b"",
        "deep.png": image_bytes(Image.fromarray(np.full((20, 20), 40000, np.uint16))),
        "cmyk.jpg": image_bytes(Image.new("CMYK", (30, 30), (10, 20, 30, 40)), "JPEG"),
        "image.txt": good,                                          # an image under a wrong name
        "secret.png": image_bytes(np.full((32, 32, 3), 7, np.uint8)),  # canary: never uploaded
        "secret.txt": b"server secret\n",                           # canary: never uploaded
    }
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    files["anim.gif"] = buf.getvalue()
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    return paths


def noisy_png(mb: float) -> bytes:
    """An incompressible PNG of about `mb` megabytes."""
    side = int(math.sqrt(mb * 2**20 / 3))
    return image_bytes(np.random.default_rng(1).integers(0, 255, (side, side, 3), dtype=np.uint8), compress_level=0)


# ------------------------------------------------------------------------------------ cases

@dataclasses.dataclass
class Case:
    cls: str                 # the class of hostile input (for the report)
    via: str                 # "client" or "http"
    args: list               # the 9 values of /generate (client: may hold handle_file objects)
    note: str = ""


@dataclasses.dataclass
class Outcome:
    case: Case
    status: str              # ok | clean | unclear
    message: str = ""
    seconds: float = 0.0


def base_args(**kw) -> list:
    values = dict(prompt=PROMPT, first_frame=None, key_frames=2, interp_frames=0, inherit_ratio=0.5, seed=3,
                  randomize=False, temperature=1.0, top_k=0)
    values.update(kw)
    return list(values.values())


NUMBER_JUNK = [None, "", "3", "abc", [], {}, [3], True, False, 1.5, -1, 10**20, -10**20, 1e308, -1e308,
               float("nan"), float("inf"), float("-inf"), 2**63, "1e999"]
FIELD_JUNK = {
    "prompt": [None, 5, 3.5, True, [], {}, ["a red circle"], "", "   ", "x" * 301, PROMPT * 20, "\x00\x01",
               "a 🦄 circle", "<script>alert(1)</script>", "a pink circle", "../../etc/passwd", "{}", "%s%n%x",
               "a red circle moves right\n" * 3, "A RED CIRCLE MOVES RIGHT!"],
    "key_frames": NUMBER_JUNK + [0, 1, 2.0, 3, 99, 5.5],
    "interp_frames": NUMBER_JUNK + [0, 0.0, 4, 5, 99],
    "inherit_ratio": NUMBER_JUNK + [0, 1, 0.25, 1.0000001, -0.0, 1e-300],
    "seed": NUMBER_JUNK + [0, 3.0, 2**31 - 1, 2**31, -0.0, "7", 1e-300],
    "randomize": [None, "false", "no", "true", "yes", 2, 0, 1, -1, 0.0, 1.0, [], {}, "", float("nan")],
    "temperature": NUMBER_JUNK + [0, 0.0, 1e-300, 5e-39, 1e-45, 1e-3, 0.01, 2.0, 2.5, 10, 11, 5e-324],
    "top_k": NUMBER_JUNK + [0, 0.0, 1, 16, 17, 512, 4096],
}
ORDER = ["prompt", "first_frame", "key_frames", "interp_frames", "inherit_ratio", "seed", "randomize",
         "temperature", "top_k"]


def build_cases(seed: int, assets: dict[str, Path], upload_dir: Path, server_url: str, n_random: int = 150,
                fifo: Path | None = None, include_fifo: bool = True) -> tuple[list[Case], set[str]]:
    """The fuzz: every class of hostile input, then seeded random mutations. Returns (cases, the
    absolute paths outside the upload folder that the fuzz names: none of them may be opened)."""
    from gradio_client import handle_file

    rng = random.Random(seed)
    cases: list[Case] = []
    meta = {"_type": "gradio.FileData"}
    secret_png, secret_txt = str(assets["secret.png"]), str(assets["secret.txt"])
    link_dir = upload_dir / "fuzz-links"
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "innocent.png"                       # a symlink inside the upload folder, to a canary
    if not link.is_symlink():
        link.symlink_to(secret_png)
    rel_secret = os.path.relpath(secret_png, upload_dir)
    targets = [secret_png, secret_txt, "/etc/passwd", "/etc/hostname", "/proc/self/environ", "/dev/zero",
               "/proc/self/cmdline", str(link), f"{upload_dir}/{rel_secret}", f"{upload_dir}/../{Path(secret_png).name}",
               "app.py", "checkpoints/shapes/config.json", "../../../../../../etc/passwd", str(upload_dir / "fuzz-links"),
               "/no/such/file.png", "~/.bashrc", "file:///etc/passwd", "http://127.0.0.1:1/x.png",
               f"{server_url.rstrip('/')}/gradio_api/file={secret_png}", "\\\\server\\share\\x.png"]
    if include_fifo and fifo is not None:
        targets.append(str(fifo))
    canaries = set()
    for t in targets:
        if "://" in t or t.startswith("\\"):
            continue
        p = os.path.abspath(os.path.expanduser(t))
        if not os.path.realpath(p).startswith(os.path.realpath(upload_dir) + os.sep) or os.path.islink(p):
            canaries.update({p, os.path.realpath(p)})

    # 1. path injection: raw server paths in every payload shape, over plain HTTP
    for t in targets:
        for shape in ({"path": t}, {"path": t, "meta": meta}, {"path": t, "orig_name": "x.png", "mime_type": "image/png"},
                      {"url": t}, {"path": t, "url": t, "meta": meta}, {"path": None, "url": t, "meta": meta}):
            cases.append(Case("path injection", "http", base_args(first_frame=shape), t))
    # 2. bare values instead of a file payload (both ways)
    for bare in ["/etc/passwd", secret_png, 5, True, False, [], {}, "", 1.5, [secret_png], {"meta": meta},
                 {"path": 5}, {"path": [secret_png]}, data_url(b"\x89PNG")]:
        cases.append(Case("bare value", "http", base_args(first_frame=bare), repr(bare)[:40]))
        cases.append(Case("bare value", "client", base_args(first_frame=bare), repr(bare)[:40]))
    # 3. data: URLs (none is an upload): small and good, 7.85 MB, a decompression bomb, not an image, malformed
    good = assets["good.png"].read_bytes()
    big = noisy_png(7.85)
    for name, url in [("good", data_url(good)), ("7.85 MB", data_url(big)), ("bomb", data_url(assets["bomb.png"].read_bytes())),
                      ("text", data_url(b"hello", "text/plain")), ("malformed", "data:image/png;base64,!!!"),
                      ("svg", data_url(assets["picture.svg"].read_bytes(), "image/svg+xml"))]:
        for shape in ({"url": url}, {"path": url}, {"path": url, "meta": meta}, {"path": None, "url": url, "meta": meta}):
            cases.append(Case("data: URL", "http", base_args(first_frame=shape), name))
    # 4. bad uploads (and good ones) through the client, which uploads them first
    for name in ["good.png", "good.jpg", "notes.txt", "empty.png", "header_only.png", "zero.png", "truncated.png",
                 "bomb.png", "claims_huge.png", "wide.png", "picture.svg", "anim.gif", "deep.png", "cmyk.jpg", "image.txt"]:
        cases.append(Case("upload", "client", base_args(first_frame=handle_file(str(assets[name]))), name))
        cases.append(Case("upload", "http", base_args(first_frame=("upload", name)), name))
    # 5. every scalar field with every junk value, alternating client and plain HTTP
    i = 0
    for field, values in FIELD_JUNK.items():
        for v in values:
            cls = "NaN/inf" if isinstance(v, float) and not math.isfinite(v) else \
                  "boolean" if field == "randomize" else "huge number" if isinstance(v, (int, float)) and abs(v) > 1e6 \
                  else "wrong type"
            via = "http" if cls == "NaN/inf" or i % 2 == 0 else "client"   # gradio_client cannot send NaN
            cases.append(Case(cls, via, base_args(**{field: v}), f"{field}={v!r}"[:60]))
            i += 1
    # 6. seeded random mutations: one to three fields at once
    pool = [(f, v) for f, vs in FIELD_JUNK.items() for v in vs]
    for _ in range(n_random):
        kw = dict(rng.sample(pool, rng.randint(1, 3)))
        finite = all(not isinstance(v, float) or math.isfinite(v) for v in kw.values())
        via = rng.choice(["client", "http"]) if finite else "http"
        cases.append(Case("random", via, base_args(**kw), repr(kw)[:80]))
    # 7. wrong number of values
    for n in (0, 1, 8, 10):
        args = base_args()[:n] if n <= 9 else base_args() + [None] * (n - 9)
        cases.append(Case("arity", "http", args, f"{n} values"))
    return cases, canaries


# ------------------------------------------------------------------------------------ calls

def _upload(http, url: str, path: Path) -> dict:
    with path.open("rb") as f:
        r = http.post(url.rstrip("/") + "/gradio_api/upload", files={"files": (path.name, f)})
    if r.status_code != 200:
        raise RuntimeError(f"upload refused ({r.status_code}): {r.text[:200]}")
    return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def call_http(http, url: str, args: list, assets: dict, timeout: float) -> tuple[str, str]:
    """POST /gradio_api/call/generate then read its SSE stream: ("ok", "") or ("error", message)."""
    args = [(_upload(http, url, assets[a[1]]) if isinstance(a, tuple) and a[:1] == ("upload",) else a) for a in args]
    body = json.dumps({"data": args}, allow_nan=True)
    r = http.post(url.rstrip("/") + "/gradio_api/call/generate", content=body,
                  headers={"content-type": "application/json"}, timeout=timeout)
    if r.status_code != 200:
        return "error", f"HTTP {r.status_code}: {r.text[:2000]}"
    event_id = r.json()["event_id"]
    last_event, last_data = None, None
    with http.stream("GET", url.rstrip("/") + f"/gradio_api/call/generate/{event_id}", timeout=timeout) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                last_event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                last_data = line.split(":", 1)[1].strip()
    if last_event == "complete":
        return "ok", ""
    try:
        data = json.loads(last_data) if last_data else None
    except ValueError:
        data = last_data
    if isinstance(data, dict):
        data = data.get("error")
    return "error", "" if data is None else str(data)


def call_client(client, args: list, timeout: float) -> tuple[str, str]:
    from gradio_client.exceptions import AppError

    try:
        job = client.submit(*args, api_name="/generate")
        job.result(timeout=timeout)
        return "ok", ""
    except AppError as e:
        return "error", str(e)
    except TimeoutError:
        return "error", "<timeout>"
    except Exception as e:  # client-side refusal or protocol error
        return "error", f"<{type(e).__name__}> {e}"


def classify(kind: str, message: str) -> str:
    if kind == "ok":
        return "ok"
    if not message or message.startswith("<") or GRADIO_WORDS.search(message):
        return "unclear"
    lower = message.lower()
    if any(w in lower for w in FIELD_WORDS) and ALLOWED_WORDS.search(message):
        return "clean"
    return "unclear"


def server_paths(message: str, extra=()) -> list[str]:
    found = PATH_RE.findall(message)
    found += [p for p in extra if p and p in message]
    return found


def run_fuzz(url: str, cases: list[Case], assets: dict, timeout: float = 30.0, log=None) -> list[Outcome]:
    import httpx
    from gradio_client import Client

    client = Client(url, analytics_enabled=False, verbose=False, download_files=False)
    outcomes = []
    with httpx.Client(timeout=timeout) as http:
        for case in cases:
            t0 = time.perf_counter()
            try:
                if case.via == "client":
                    kind, message = call_client(client, case.args, timeout)
                else:
                    kind, message = call_http(http, url, case.args, assets, timeout)
            except Exception as e:
                kind, message = "error", f"<{type(e).__name__}> {e}"
            out = Outcome(case, classify(kind, message), message, time.perf_counter() - t0)
            outcomes.append(out)
            if log:
                log(out)
    return outcomes


# ------------------------------------------------------------------------------------ server side

class OpenAudit:
    """Records attempts (in this process) to open any of `paths`; `sys.addaudithook` cannot be removed,
    so one hook serves every instance and `stop()` just stops recording."""
    _active: list = []
    _installed = False

    def __init__(self, paths):
        self.paths = {os.path.abspath(p) for p in paths}
        self.opened: list[str] = []
        if not OpenAudit._installed:
            sys.addaudithook(OpenAudit._hook)
            OpenAudit._installed = True
        OpenAudit._active.append(self)

    @staticmethod
    def _hook(event, args):
        if event != "open" or not OpenAudit._active or not args or args[0] is None or isinstance(args[0], int):
            return
        try:
            p = os.path.abspath(os.fsdecode(args[0]))
        except Exception:
            return
        for audit in OpenAudit._active:
            if p in audit.paths:
                audit.opened.append(p)

    def stop(self):
        if self in OpenAudit._active:
            OpenAudit._active.remove(self)


def rss_kb(pid="self", field="VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid="self") -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def summary(outcomes: list[Outcome], extra_paths=()) -> dict:
    by = {"ok": 0, "clean": 0, "unclear": 0}
    for o in outcomes:
        by[o.status] += 1
    leaks = [o for o in outcomes if server_paths(o.message, extra_paths)]
    return {"calls": len(outcomes), "successes": by["ok"], "clean refusals": by["clean"],
            "unclear refusals": by["unclear"], "messages with server paths": len(leaks),
            "client calls": sum(o.case.via == "client" for o in outcomes),
            "http calls": sum(o.case.via == "http" for o in outcomes)}


# ------------------------------------------------------------------------------------ figures

def _serve(args):
    """Child process: the app (from args.root) on a port, with the open audit; prints canary opens."""
    sys.path.insert(0, args.root)
    os.chdir(args.root)
    os.environ["FLASHVIDEO_MODEL"] = args.model
    os.environ["FLASHVIDEO_COMPILE"] = "0"
    import importlib.util

    import torch

    torch.set_num_threads(1)
    audit = OpenAudit(json.loads(Path(args.canaries).read_text()))
    spec = importlib.util.spec_from_file_location("flashvideo_app", Path(args.root) / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    demo = app.build_demo()
    app.launch(demo, prevent_thread_lock=True, server_port=args.port, quiet=True)
    print("READY", flush=True)

    def report():
        while True:
            time.sleep(0.5)
            Path(args.canaries + ".opened").write_text(json.dumps(sorted(set(audit.opened))))
    threading.Thread(target=report, daemon=True).start()
    while True:
        time.sleep(3600)


def _measure(args):
    """Parent: build a tiny checkpoint, start the app in a child, fuzz it, measure; print the figures."""
    import subprocess
    import tempfile

    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, args.root)
    from conftest import make_tiny_pipeline  # noqa: E402

    work = Path(tempfile.mkdtemp(prefix="fuzz-figures-"))
    ckpt = make_tiny_pipeline().save_pretrained(work / "tiny")
    assets = make_assets(work / "assets")
    fifo = work / "pipe.png"
    os.mkfifo(fifo)
    upload_dir = work / "gradio"
    port = args.port
    url = f"http://127.0.0.1:{port}/"
    cases, canaries = build_cases(args.seed, assets, upload_dir, url, n_random=args.random, fifo=fifo,
                                  include_fifo=not args.no_fifo)
    (work / "canaries.json").write_text(json.dumps(sorted(canaries)))
    env = {**os.environ, "GRADIO_TEMP_DIR": str(upload_dir), "GRADIO_ANALYTICS_ENABLED": "False",
           "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": args.root}
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([sys.executable, __file__, "serve", "--root", args.root, "--model", str(ckpt),
                             "--port", str(port), "--canaries", str(work / "canaries.json")],
                            stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        base_rss = rss_kb(proc.pid)
        # peak RSS under a decompression bomb: a 12,000 x 12,000 PNG as a data: URL, then as an upload
        bomb = assets["bomb.png"]
        bomb_figures = {}
        with httpx.Client(timeout=120) as http:
            for how, payload in [("data: URL", {"url": data_url(bomb.read_bytes())}),
                                 ("upload", ("upload", "bomb.png"))]:
                reset_peak_rss(proc.pid)
                before = rss_kb(proc.pid)
                t0 = time.perf_counter()
                kind, message = call_http(http, url, base_args(first_frame=payload), assets, 120)
                bomb_figures[how] = {"peak_rss_increase_mb": round((rss_kb(proc.pid, "VmHWM") - before) / 1024, 1),
                                     "seconds": round(time.perf_counter() - t0, 2), "message": message[:160]}
        log.flush()
        lines_before = len((work / "server.log").read_text().splitlines())
        t0 = time.perf_counter()
        outcomes = run_fuzz(url, cases, assets, timeout=args.timeout)
        seconds = time.perf_counter() - t0
        time.sleep(1.0)
        log.flush()
        log_lines = (work / "server.log").read_text().splitlines()[lines_before:]
        opened = json.loads((work / "canaries.json.opened").read_text()) if (work / "canaries.json.opened").exists() else []
        figures = summary(outcomes, [str(upload_dir), args.root, str(work)])
        refused = figures["clean refusals"] + figures["unclear refusals"]
        figures.update({
            "seconds": round(seconds, 1),
            "log lines": len(log_lines),
            "tracebacks in log": sum(line.startswith("Traceback") for line in log_lines),
            "log lines per refused request": round(len(log_lines) / max(1, refused), 2),
            "canary files opened": opened,
            "server baseline RSS MB": round(base_rss / 1024, 1),
            "decompression bomb": bomb_figures,
        })
        by_class = {}
        for o in outcomes:
            c = by_class.setdefault(o.case.cls, {"ok": 0, "clean": 0, "unclear": 0})
            c[o.status] += 1
        figures["by class"] = by_class
        unclear = {}
        for o in outcomes:
            if o.status == "unclear" or server_paths(o.message, [str(upload_dir), args.root, str(work)]):
                key = re.sub(r"\s+", " ", o.message)[:150]
                unclear[key] = unclear.get(key, 0) + 1
        figures["unclear or leaking messages (top)"] = sorted(unclear.items(), key=lambda kv: -kv[1])[:25]
        print(json.dumps(figures, indent=2, default=str))
    finally:
        proc.terminate()
        proc.wait(10)


def _disk(args):
    """Disk used per default job (K=4, n=3): files and bytes left in the Gradio cache and in the app's
    own output folder, for the app in --root."""
    import subprocess
    import tempfile

    from gradio_client import Client

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, args.root)
    from conftest import make_tiny_pipeline  # noqa: E402

    work = Path(tempfile.mkdtemp(prefix="disk-figures-"))
    ckpt = make_tiny_pipeline().save_pretrained(work / "tiny")
    (work / "canaries.json").write_text("[]")
    (work / "tmp").mkdir()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(work / "gradio"), "TMPDIR": str(work / "tmp"),
           "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": args.root}
    proc = subprocess.Popen([sys.executable, __file__, "serve", "--root", args.root, "--model", str(ckpt),
                             "--port", str(args.port), "--canaries", str(work / "canaries.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)

    def usage():
        files = [p for p in work.rglob("*") if p.is_file() and (work / "gradio" in p.parents or work / "tmp" in p.parents)]
        return len(files), sum(p.stat().st_size for p in files)
    try:
        assert proc.stdout.readline().strip() == "READY"
        client = Client(f"http://127.0.0.1:{args.port}/", analytics_enabled=False, verbose=False, download_files=False)
        n0, b0 = usage()
        for i in range(args.jobs):
            client.predict(PROMPT, None, 4, 3, 0.5, 100 + i, False, 1.0, 0, api_name="/generate")
        time.sleep(1.0)
        n1, b1 = usage()
        videos = [p for p in work.rglob("*") if p.suffix in (".mp4", ".gif")]
        print(json.dumps({"jobs": args.jobs, "files per job": round((n1 - n0) / args.jobs, 1),
                          "KB per job": round((b1 - b0) / args.jobs / 1024, 1),
                          "mp4/gif files per job": round(len(videos) / args.jobs, 1)}, indent=1))
    finally:
        proc.terminate()
        proc.wait(10)


_LOAD_ONE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import flashvideo.pipeline as P
def kb(f):
    for l in Path("/proc/self/status").read_text().splitlines():
        if l.startswith(f + ":"): return int(l.split()[1])
Path("/proc/self/clear_refs").write_text("5"); before = kb("VmRSS"); t0 = time.perf_counter()
try:
    P.FlashVideoPipeline.from_pretrained(sys.argv[2]); err = None
except BaseException as e:
    err = (type(e).__name__, str(e)[:300])
print(json.dumps({"error": err, "seconds": time.perf_counter() - t0, "growth_mb": (kb("VmHWM") - before) / 1024}))
"""


def _checkpoints(args):
    """tests/test_checkpoint.py's corrupt checkpoints against the code in --root, one child process per
    case (a 6 GB address-space cap so an unfixed loader cannot take the machine down, and a timeout):
    clean = ValueError/FileNotFoundError naming the file. Cold children: growth includes imports."""
    import importlib.util
    import resource
    import shutil
    import subprocess
    import tempfile

    sys.path.insert(0, args.root + "/tests")
    sys.path.insert(0, args.root)
    from conftest import make_tiny_pipeline  # noqa: E402  (the checkpoint as --root's code writes it)

    spec = importlib.util.spec_from_file_location("tc", Path(__file__).resolve().parent / "test_checkpoint.py")
    tc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tc)
    work = Path(tempfile.mkdtemp(prefix="ckpt-figures-"))
    saved = make_tiny_pipeline().save_pretrained(work / "ckpt")
    files = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer.safetensors")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    counts, worst, rows = {"clean": 0, "unclear": 0, "hangs": 0}, 0.0, []
    for i, (name, corrupt, _) in enumerate(tc._corruptions(saved)):
        folder = work / f"case{i:02d}"
        shutil.copytree(saved, folder)
        corrupt(folder)
        try:
            out = subprocess.run([sys.executable, "-c", _LOAD_ONE, args.root, str(folder)], capture_output=True,
                                 text=True, env={**os.environ, "PYTHONPATH": args.root}, preexec_fn=limit,
                                 timeout=args.timeout)
            lines = out.stdout.strip().splitlines()
            r = json.loads(lines[-1]) if lines else {"error": ("crash", out.stderr[-200:]), "seconds": 0, "growth_mb": 0}
        except subprocess.TimeoutExpired:
            r = {"error": (f"hang ({args.timeout:g} s)", ""), "seconds": args.timeout, "growth_mb": 0}
        kind, message = r["error"] or ("no error", "")
        clean = kind in ("ValueError", "FileNotFoundError") and any(f in message for f in files)
        counts["clean" if clean else "unclear"] += 1
        counts["hangs"] += kind.startswith("hang")
        worst = max(worst, r["growth_mb"])
        rows.append(f"{name:30s} {r['seconds']:6.2f} s {r['growth_mb']:8.1f} MB {'clean  ' if clean else 'UNCLEAR'} "
                    f"{kind}: {message[:90]}")
    print("\n".join(rows))
    print(json.dumps({"cases": len(rows), **counts, "max peak RSS growth MB": round(worst, 1)}))


CLI_CASES = [  # issue 9's CLI cases: (name, extra arguments); {d} is a scratch folder
    ("--fps 0", ["--fps", "0"]), ("--fps -5", ["--fps", "-5"]), ("--out x.jpg", ["--out", "{d}/x.jpg"]),
    ("--scale 1000", ["--scale", "1000"]), ("--first-frame bomb", ["--first-frame", "{d}/bomb.png"]),
    ("--out folder", ["--out", "{d}"]), ("--out ''", ["--out", ""]), ("--out unwritable", ["--out", "/proc/x.gif"]),
    ("--top-k 0", ["--top-k", "0"]), ("--temperature 1e-300", ["--temperature", "1e-300"]),
    ("--first-frame /dev/zero", ["--first-frame", "/dev/zero"]), ("--first-frame fifo", ["--first-frame", "{d}/pipe.png"]),
]


def _cli(args):
    """Run issue 9's CLI cases against the code in --root: exit status, stderr lines, traceback, seconds,
    files left behind, peak RSS (ru_maxrss of the child)."""
    import resource
    import subprocess
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, args.root)
    from conftest import make_tiny_pipeline  # noqa: E402

    work = Path(tempfile.mkdtemp(prefix="cli-figures-"))
    ckpt = make_tiny_pipeline().save_pretrained(work / "tiny")
    env = {**os.environ, "PYTHONPATH": args.root}
    rows = []
    for name, extra in CLI_CASES:
        d = work / "case"
        if d.exists():
            for f in d.iterdir():
                f.unlink()
        else:
            d.mkdir()
        (d / "bomb.png").write_bytes(bomb_png())
        os.mkfifo(d / "pipe.png")
        before = {p.name for p in d.iterdir()}
        extra = [a.replace("{d}", str(d)) for a in extra]
        cmd = [sys.executable, "-m", "flashvideo", "generate", "a red circle moves right", "--model", str(ckpt),
               "--key-frames", "3", "--interp-frames", "2", *extra]
        if "--out" not in extra:
            cmd += ["--out", str(d / "out.gif")]
        t0 = time.perf_counter()
        try:
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            out, err = p.communicate(timeout=args.timeout)
            code = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            code = "timeout"
        seconds = time.perf_counter() - t0
        err_lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "frame/s" not in line]
        left = sorted({p.name for p in d.iterdir()} - before)
        rows.append({"case": name, "exit": code, "seconds": round(seconds, 1),
                     "stderr lines": len(err_lines), "traceback": "Traceback" in err,
                     "files left": left, "last line": (err_lines[-1] if err_lines else out.strip()[-100:])[:140]})
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"cases": rows, "max child peak RSS MB": round(rss, 1)}, indent=1))


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="fuzz the app and print issue 9's figures")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="fuzz the app in --root (default: this repo) and print the figures")
    m.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    m.add_argument("--seed", type=int, default=9)
    m.add_argument("--random", type=int, default=150)
    m.add_argument("--port", type=int, default=7871)
    m.add_argument("--timeout", type=float, default=30)
    m.add_argument("--no-fifo", action="store_true", help="leave out the named pipe (it hangs an unfixed app)")
    c = sub.add_parser("cli", help="run issue 9's CLI cases against the code in --root")
    c.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    c.add_argument("--timeout", type=float, default=60)
    k = sub.add_parser("disk", help="disk used per default job by the app in --root")
    k.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    k.add_argument("--jobs", type=int, default=10)
    k.add_argument("--port", type=int, default=7873)
    q = sub.add_parser("checkpoints", help="corrupt checkpoints against the loader in --root")
    q.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    q.add_argument("--timeout", type=float, default=30)
    s = sub.add_parser("serve")
    s.add_argument("--root")
    s.add_argument("--model")
    s.add_argument("--port", type=int)
    s.add_argument("--canaries")
    a = p.parse_args()
    {"measure": _measure, "serve": _serve, "cli": _cli, "disk": _disk, "checkpoints": _checkpoints}[a.cmd](a)
