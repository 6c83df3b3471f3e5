"""An ahead-of-time built recurrent step (AOTInductor), and beside it the pass that checks drafted codes
(`RetNet.verify`, speculative decoding; it also feeds short spans such as frame headers): built by an explicit
command, cached on this machine by CPU type and weights, loaded in milliseconds. The eager step and pass serve
until both exist, and whenever they cannot be used (no state yet, a batch above `MAX_BATCH`, a pass longer than
`MAX_CHUNK`, a failed load).

    python -m flashvideo.aot build  [--model checkpoints/shapes] [--precision bfloat16]   # tens of seconds of CPU,
    python -m flashvideo.aot status [--model ...]                                        # once per CPU type and weights

    pipe = FlashVideoPipeline.from_pretrained()
    aot.load_step(pipe.model)        # True: pipe.model.step_backend == "aoti"; False: the eager step stays

Compiled code is never downloaded and never part of a checkpoint (weights stay safetensors-only): a build
is made here, from the weights loaded here, into `$FLASHVIDEO_CACHE` (default ~/.cache/flashvideo)/steps/
<cpu key>/step-<model key>.pt2, the pass beside it as chunk-<model key>.pt2. The CPU key names the CPU model,
its vector extensions (the generated C++ uses them) and the torch version; the model key hashes the config and
every weight, so a build never serves other weights. Load after the weights are final: a model trained further
must `load_step` again.

Precision: a float32 build computes what the eager step computes (to float rounding). A bfloat16 build stores the
matrix weights in bfloat16 (activations, norms and the retention state stay float32): a step reads half the bytes,
and its logits differ from float32's by about 0.1 at most, which moves a code only where two codes were nearly
equally likely. Which is faster depends on the CPU. On one machine the bfloat16 build ran a one-row step in 0.73x
the float32 build's time (341 against 467 us; its CPU flags were not recorded). On an AMD EPYC with AVX2 and no
bfloat16 arithmetic it is about as fast at one row but 6x slower at 40 rows (57 against 9.4 ms; batched pairs and
batched users run such steps), its weights being widened on every product. So `preferred_precisions()` puts
bfloat16 first only on a CPU with bfloat16 arithmetic (AVX-512 BF16, AMX): `load_step` takes the first of them
that is built, and `python app.py` and `python -m flashvideo.aot build` build the first.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import platform
import re
import time
from pathlib import Path

import torch
from torch import nn

from .retnet import SHORT_SPAN, RetNet, step_rotation

log = logging.getLogger(__name__)
MAX_BATCH = 192  # rows per step the build accepts (dynamic batch 1..MAX_BATCH; serving's MAX_ROWS); more: eager
MAX_CHUNK = SHORT_SPAN  # tokens a row of a pass through `RetNet.verify` the build accepts (drafts, short prefills)
# How a build is made; part of its file name, so that a build made another way is never loaded in its place.
# "frozen": Inductor's freezing treats the weights as constants and pre-packs them for the CPU's matrix kernels.
# Without it every matrix product of 2..8 rows (guided twins, batched pairs) re-packed its weights: the default
# demo video took 1.56x as long (1,245 ms against 797 ms, interleaved runs, identical frames).
# "rows": the rotation is given per row (B, 2, 2D), so rows of different videos at different positions (batched
# serving) run the build too; a shared position is expanded to every row. The batch limit is part of the name too.
BUILD = f"frozen-rows{MAX_BATCH}"
PRECISIONS = ("float32", "bfloat16")
NATIVE_BF16 = ("avx512_bf16", "amx_bf16")  # CPU flags of bfloat16 arithmetic: a bfloat16 build is preferred there
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx512_fp16", "amx_tile", "amx_bf16", "asimd", "sve")


def cache_root() -> Path:
    return Path(os.environ.get("FLASHVIDEO_CACHE") or Path.home() / ".cache" / "flashvideo")


def _cpu() -> tuple[str, set]:
    """The CPU's model name and its flags, from /proc/cpuinfo (empty where there is none)."""
    name, flags = platform.processor() or "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return name, flags


def cpu_key() -> str:
    """e.g. 'x86_64-intel-xeon-platinum-8481c-avx512f-...-torch2.13.0-1a2b3c4d': one folder per CPU type."""
    name, flags = _cpu()
    vec = [f for f in VECTOR_FLAGS if f in flags]
    words = "-".join(re.findall(r"[a-z0-9]+", name.lower()))[:48] or "cpu"
    digest = hashlib.sha1(" ".join([name, *sorted(flags), torch.__version__]).encode()).hexdigest()[:8]
    return f"{platform.machine()}-{words}-{'-'.join(vec) or 'novec'}-torch{torch.__version__.split('+')[0]}-{digest}"


def preferred_precisions(flags: set | None = None) -> tuple:
    """PRECISIONS, fastest first on this CPU (or on one with these flags): bfloat16 first only where the CPU
    has bfloat16 arithmetic (see the module docstring for the measurements)."""
    flags = _cpu()[1] if flags is None else flags
    return ("bfloat16", "float32") if flags & set(NATIVE_BF16) else ("float32", "bfloat16")


def model_key(model: RetNet) -> str:
    """A hash of the config and every parameter and buffer: a build serves exactly these weights. The sampling
    defaults are not part of the step, so changing them keeps the build."""
    h = hashlib.sha256(json.dumps(model.config.model_dict(), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def step_paths(model: RetNet, cache_dir: Path | None = None, precisions=PRECISIONS) -> dict:
    """{precision: where its build for this CPU type and these weights lives}; the weights are hashed once."""
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {bad[0]!r}")
    folder, key = Path(cache_dir or cache_root()) / "steps" / cpu_key(), model_key(model)
    return {p: folder / f"step-{key}-{BUILD if p == 'float32' else f'{BUILD}-{p}'}.pt2" for p in precisions}


def step_path(model: RetNet, cache_dir: Path | None = None, precision: str = "float32") -> Path:
    return step_paths(model, cache_dir, (precision,))[precision]


class _Step(nn.Module):
    """The recurrent step as a module with flat tensor inputs and outputs, for torch.export."""

    def __init__(self, model: RetNet, precision: str = "float32"):
        super().__init__()
        self.model = model
        if precision != "float32":  # a copy whose matrix weights (not the embedding table) are stored in `precision`
            self.model = copy.deepcopy(model)
            for name, p in self.model.named_parameters():
                if p.dim() == 2 and name != "embed.weight":
                    p.data = p.data.to(getattr(torch, precision))

    def forward(self, idx, rot, *state):
        logits, new_state = type(self.model)._recurrent(self.model, idx, list(state), rot)
        return (logits, *new_state)


class _Chunk(_Step):
    """`RetNet._chunk` (a drafted pass of speculative decoding) likewise: logits and each layer's keys and values."""

    def forward(self, idx, rot, *state):
        logits, kv = type(self.model)._chunk(self.model, idx, list(state), rot)
        return (logits, *kv)


def build_step(model: RetNet, cache_dir: Path | None = None, precision: str = "float32") -> Path:
    """Export the eager recurrent step (batch 1..MAX_BATCH) and the drafted pass (`RetNet._chunk`, 2..MAX_CHUNK tokens
    a row) and compile both with AOTInductor into the cache. Takes a minute of CPU and needs a C++ compiler; call
    it from a command, never from a request. Returns the step's path (the pass's is `chunk_path` of it)."""
    path = step_path(model, cache_dir, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = model.config
    model = model.eval()
    device = model.head.weight.device
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    tokens = torch.export.Dim("tokens", min=2, max=MAX_CHUNK)
    with torch.no_grad():
        _, state = model.prefill(torch.zeros(2, 2, dtype=torch.long, device=device))
        idx = torch.zeros(2, dtype=torch.long, device=device)
        rot = step_rotation([2, 3], c.d_model, c.n_heads, device)
        chunk = torch.zeros(2, 3, dtype=torch.long, device=device)
        chunk_rot = step_rotation([2, 3, 4] * 2, c.d_model, c.n_heads, device).view(2, 3, 2, -1)
        rows_and_tokens = {0: batch, 1: tokens}
        for module, args, out, dims in (
                (_Step, (idx, rot), path, {"idx": {0: batch}, "rot": {0: batch}}),
                (_Chunk, (chunk, chunk_rot), chunk_path(path), {"idx": rows_and_tokens, "rot": rows_and_tokens})):
            shapes = {**dims, "state": tuple({0: batch} for _ in state)}
            exported = torch.export.export(module(model, precision), (*args, *state), dynamic_shapes=shapes)
            tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.pt2")  # aoti insists on the .pt2 suffix
            with torch._inductor.config.patch(freezing=True):
                torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp))
            os.replace(tmp, out)  # a half-written build never sits under the real name
    return path


def chunk_path(step: Path) -> Path:
    """Where the drafted pass built with the step at `step` lives."""
    return step.with_name("chunk" + step.name[len("step"):])


def built(path: Path) -> bool:
    """Whether the step at `path` and its drafted pass are both built."""
    return path.exists() and chunk_path(path).exists()


def load_step(model: RetNet, cache_dir: Path | None = None, precision: str | None = None) -> bool:
    """Use the build for this CPU type and these weights if one exists (no building here): of `precision`, or
    else the first of `preferred_precisions()` built. Returns whether `model.step` now runs it; a missing build is
    silent, a failed load is logged with its reason. `model.step_backend` becomes "aoti" (float32) or "aoti-bfloat16"."""
    paths = step_paths(model, cache_dir, (precision,) if precision else preferred_precisions())
    found = [p for p, path in paths.items() if built(path)]
    if not found:
        return False
    precision, path = found[0], paths[found[0]]
    c = model.config
    dh = c.d_model // c.n_heads
    state = [torch.zeros(1, c.n_heads, dh, dh) for _ in range(c.n_layers)]
    try:  # the package's C++ loader: no torch._inductor import, no per-call pytree parsing
        runner = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)
        probe = runner.boxed_run([torch.zeros(1, dtype=torch.long), step_rotation([0], c.d_model, c.n_heads), *state])
        if len(probe) != 1 + c.n_layers or probe[0].shape != (1, c.n_codes):
            raise ValueError(f"the build returns {len(probe)} tensors, expected logits and {c.n_layers} states")
        chunk = torch._C._aoti.AOTIModelPackageLoader(str(chunk_path(path)), "model", False, 1, -1)
        rot = step_rotation([0, 1], c.d_model, c.n_heads).view(1, 2, 2, -1)
        probe = chunk.boxed_run([torch.zeros(1, 2, dtype=torch.long), rot, *state])
        if len(probe) != 1 + 2 * c.n_layers or probe[0].shape != (1, 2, c.n_codes):
            raise ValueError(f"the drafted pass returns {len(probe)} tensors, expected logits and {2 * c.n_layers}")
    except Exception as e:  # a corrupt or foreign build: stay eager, say why
        log.warning("could not load the built step %s; the eager step stays in use (%s: %s)", path, type(e).__name__, e)
        return False
    eager = type(model)._recurrent.__get__(model)
    eager_chunk = type(model)._chunk.__get__(model)

    def recurrent(idx, state, rot):
        if state is None or idx.shape[0] > MAX_BATCH or any(s is None for s in state):
            return eager(idx, state, rot)
        if rot.dim() == 2:  # one position for every row
            rot = rot.expand(len(idx), *rot.shape).contiguous()
        logits, *new_state = runner.boxed_run([idx, rot, *(s.contiguous() for s in state)])
        return logits, new_state

    def drafted(idx, state, rot):
        if idx.shape[0] > MAX_BATCH or not 2 <= idx.shape[1] <= MAX_CHUNK:
            return eager_chunk(idx, state, rot)
        logits, *kv = chunk.boxed_run([idx, rot.contiguous(), *(s.contiguous() for s in state)])
        return logits, kv

    model._recurrent, model._chunk = recurrent, drafted
    model.step_backend = "aoti" if precision == "float32" else f"aoti-{precision}"
    return True


def unload_step(model: RetNet) -> None:
    """Back to the eager step (e.g. before training the weights further)."""
    for name in ("_recurrent", "_chunk", "step_backend"):
        model.__dict__.pop(name, None)


def main(argv=None) -> None:
    from .pipeline import FlashVideoPipeline

    p = argparse.ArgumentParser(prog="python -m flashvideo.aot", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["build", "status"])
    p.add_argument("--model", default=None, help="checkpoint folder or Hub repo id (default: the shipped model)")
    p.add_argument("--cache", default=None, help="cache folder (default: $FLASHVIDEO_CACHE or ~/.cache/flashvideo)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help=f"the weights' precision in the build (default here: {preferred_precisions()[0]}, the faster "
                        "on this CPU's kind; see the docstring)")
    args = p.parse_args(argv)
    model = FlashVideoPipeline.from_pretrained(args.model).model
    cache = Path(args.cache) if args.cache else None
    if args.command == "status":
        for precision, path in step_paths(model, cache).items():
            print(f"{precision}: {path}: {'built' if built(path) else 'not built'}")
        return
    t0 = time.perf_counter()
    path = build_step(model, cache, args.precision or preferred_precisions()[0])
    print(f"built {path} in {time.perf_counter() - t0:.0f} s; loaded: {load_step(model, cache)} ({model.step_backend})")


if __name__ == "__main__":
    main()
