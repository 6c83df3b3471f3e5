"""The ahead-of-time built step: keyed by CPU type and weights, built only on request, eager until then."""
import shutil

import pytest
import torch

from flashvideo import aot
from flashvideo.config import FlashVideoConfig
from flashvideo.retnet import SHORT_SPAN, RetNet


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return RetNet(FlashVideoConfig(image_size=16, grid=4, n_codes=16, n_text=8, text_len=3, d_model=32, n_heads=4,
                                   n_layers=2, max_key_frames=4, max_interp_frames=2)).eval()


def test_keys_name_the_cpu_and_the_weights(tmp_path):
    a, b = tiny_model(0), tiny_model(0)
    assert aot.model_key(a) == aot.model_key(b) and aot.cpu_key() == aot.cpu_key()
    with torch.no_grad():
        b.head.weight[0, 0] += 1e-3
    assert aot.model_key(a) != aot.model_key(b)  # other weights: another build
    resampled = RetNet(FlashVideoConfig(**{**a.config.to_dict(), "sampling": {"temperature": 0.5, "lead_in": 1}}))
    resampled.load_state_dict(a.state_dict())
    assert aot.model_key(resampled) == aot.model_key(a)  # other sampling defaults: the same step, the same build
    path = aot.step_path(a, tmp_path)
    assert path.parent.name == aot.cpu_key() and torch.__version__.split("+")[0] in path.parent.name


def test_without_a_build_the_eager_step_stays(tmp_path):
    model = tiny_model()
    assert aot.load_step(model, tmp_path) is False and model.step_backend == "eager"
    bad = aot.step_path(model, tmp_path)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a package")
    assert aot.load_step(model, tmp_path) is False and model.step_backend == "eager"


needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="no C++ compiler")


def prefilled():
    """A tiny model, 3 rows of token ids, and the state after their first 6 tokens."""
    model = tiny_model()
    ids = torch.randint(0, model.config.vocab_size, (3, 9))
    with torch.no_grad():
        _, state = model.prefill(ids[:, :6])
    return model, ids, state


def close(a, b, atol):
    (x, xs), (y, ys) = a, b
    return torch.allclose(x, y, atol=atol, rtol=1e-4) and all(torch.allclose(s, t, atol=atol, rtol=1e-4)
                                                               for s, t in zip(xs, ys))


@pytest.fixture(scope="module")
def float32_build(tmp_path_factory):
    """The float32 build of `tiny_model()`, made once for the tests that need it: (cache folder, its step path)."""
    cache = tmp_path_factory.mktemp("aot")
    return cache, aot.build_step(tiny_model(), cache)


@needs_compiler
@torch.no_grad()
def test_built_step_matches_eager_and_falls_back(float32_build):
    tmp_path, path = float32_build
    model, ids, state = prefilled()
    eager = model.step(ids[:, 6], state, 6)
    rows = model.step(ids[:, 6], state, [6, 9, 40])                      # rows at positions of their own
    drafted = model.verify(ids[:, 6:9], state, [6, 9, 40])               # a pass of 3 tokens a row
    assert aot.step_path(model, tmp_path) == path and aot.built(path)
    assert path.exists() and not list(path.parent.glob(".*.tmp.pt2"))
    assert aot.load_step(model, tmp_path) and model.step_backend == "aoti"
    for b in (3, 1):  # a dynamic batch
        built = model.step(ids[:b, 6], [s[:b].contiguous() for s in state], 6)
        assert close(built, (eager[0][:b], [s[:b] for s in eager[1]]), 1e-5)
    built = model.step(ids[:, 6], state, [6, 9, 40])                     # per-row positions run the build too
    assert close(built, rows, 1e-5) and not close(built, eager, 1e-3)    # ... and the positions matter
    for b, t in ((3, 3), (2, 2)):  # the drafted pass: dynamic rows and tokens
        got = model.verify(ids[:b, 6:6 + t], [s[:b] for s in state], [6, 9, 40][:b])
        assert close(got, (drafted[0][:b, :t], [x[:b, :, :t] for x in drafted[1]]), 1e-5)
    first, _ = model.step(ids[:, 0], None, 0)  # no state yet: the eager step
    assert first.shape == (3, model.config.n_codes)
    long = torch.randint(0, model.config.vocab_size, (3, 2 * SHORT_SPAN + 3))  # 3 pieces of the built pass
    built = model.prefill(long, state, [6, 9, 40])
    aot.unload_step(model)
    assert close(built, model.prefill(long, state, [6, 9, 40]), 1e-4)  # ... as the eager chunkwise form
    assert model.step_backend == "eager" and "_recurrent" not in model.__dict__ and "_chunk" not in model.__dict__


def test_bfloat16_comes_first_only_on_a_cpu_with_bfloat16_arithmetic():
    assert aot.preferred_precisions({"avx2", "fma"}) == ("float32", "bfloat16")
    assert aot.preferred_precisions({"avx512f", "avx512_bf16"}) == ("bfloat16", "float32")
    assert aot.preferred_precisions({"amx_bf16"}) == ("bfloat16", "float32")
    assert aot.preferred_precisions(set()) == ("float32", "bfloat16")


@needs_compiler
@torch.no_grad()
def test_a_bfloat16_build_is_close_to_float32_and_loaded_where_preferred(tmp_path, monkeypatch, float32_build):
    model, ids, state = prefilled()
    eager, _ = model.step(ids[:, 6], state, [6, 7, 8])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    aot.build_step(model, tmp_path, precision="bfloat16")
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())  # the model keeps float32
    assert aot.load_step(model, tmp_path) and model.step_backend == "aoti-bfloat16"  # the only one built
    built, built_state = model.step(ids[:, 6], state, [6, 7, 8])
    assert built.dtype == torch.float32 and all(s.dtype == torch.float32 for s in built_state)
    err = (built - eager).abs().max().item()
    assert 0 < err < 0.05 * eager.abs().max().item()                     # rounded weights: close, not equal
    assert aot.load_step(model, tmp_path, precision="float32") is False  # only what was built is loaded
    with pytest.raises(ValueError, match="precision must be one of"):
        aot.step_path(model, tmp_path, "float16")
    aot.unload_step(model)
    path = aot.step_path(model, tmp_path, "float32")  # the float32 build of the same weights, made once
    for built in (float32_build[1], aot.chunk_path(float32_build[1])):
        shutil.copy(built, path.parent / built.name)
    real = aot.preferred_precisions
    for flags, backend in (({"avx2"}, "aoti"), ({"avx512_bf16"}, "aoti-bfloat16")):  # both built: the CPU decides
        monkeypatch.setattr(aot, "preferred_precisions", lambda f=flags: real(f))
        assert aot.load_step(model, tmp_path) and model.step_backend == backend


def test_pipeline_opts_in_by_name_and_reports_the_step(tmp_path, monkeypatch, tiny_pipe):
    monkeypatch.setenv("FLASHVIDEO_CACHE", str(tmp_path))
    assert tiny_pipe.compile("aoti") is False and tiny_pipe.model.step_backend == "eager"  # nothing built: eager
    with pytest.raises(ValueError, match="backend"):
        tiny_pipe.compile("tensorrt")
    ev = next(iter(tiny_pipe.stream("a red circle moves right", key_frames=2, interp_frames=0)))
    assert ev.stats["step"] == "eager"


@needs_compiler
def test_the_app_builds_its_step_once_before_serving(tmp_path, monkeypatch):
    """`python app.py` (`demo.build_step_at_start`): no build when FLASHVIDEO_COMPILE says eager or torch.compile,
    a failed build leaves the eager step serving, a real build is used at once and found again on the next start,
    and a build of the precision this CPU runs slower does not stop the faster one from being built."""
    from conftest import make_tiny_pipeline
    from flashvideo import demo as lib

    folder = str(make_tiny_pipeline(seed=3).save_pretrained(tmp_path / "model"))
    monkeypatch.setenv("FLASHVIDEO_CACHE", str(tmp_path / "cache"))
    real_build = aot.build_step

    def start(build, env=None):
        lib._load.cache_clear()
        monkeypatch.setattr(aot, "build_step", build)
        if env is None:
            monkeypatch.delenv("FLASHVIDEO_COMPILE", raising=False)
        else:
            monkeypatch.setenv("FLASHVIDEO_COMPILE", env)
        return lib.build_step_at_start(folder)

    def no_build(*args, **kwargs):
        raise AssertionError("built although it should not")

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    backend = {"float32": "aoti", "bfloat16": "aoti-bfloat16"}
    faster, slower = aot.preferred_precisions()  # on this CPU
    built = backend[faster]
    try:
        assert start(no_build, env="0") == "eager"
        assert start(no_compiler) == "eager"                  # logged; the app serves eagerly
        with monkeypatch.context() as m:                      # a start on a CPU that prefers the other precision
            m.setattr(aot, "preferred_precisions", lambda: (slower, faster))
            assert start(real_build) == backend[slower]
        assert start(no_compiler) == backend[slower]          # this CPU's build fails: the other one serves
        assert start(real_build) == built
        assert lib.load_pipeline(folder).model.step_backend == built   # the pipeline the app serves
        assert start(no_build) == built                       # the next start finds the build
    finally:
        lib._load.cache_clear()
