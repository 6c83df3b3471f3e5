"""`python -m flashvideo bench --quick` runs and reports every row (no timing assertions)."""
import json

import pytest
import torch

from flashvideo import bench
from flashvideo.config import FlashVideoConfig
from flashvideo.retnet import RetNet


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    result = bench.main(["--quick", "--out", str(out)])
    assert torch.get_num_threads() == threads  # the bench restores the thread count
    return out, result


def test_quick_bench_writes_every_output(quick):
    out, _ = quick
    assert (out / "bench.md").stat().st_size > 0
    data = json.loads((out / "bench.json").read_text())
    assert set(bench.SECTIONS) <= set(data)
    for key in ("cpu", "cores", "torch", "threads"):
        assert key in data["machine"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    for name in ("frames.png", "tokens.png", "interpolation.png"):
        assert (out / name).stat().st_size > 0


def test_quick_bench_has_every_row(quick):
    out, r = quick
    s = bench.QUICK
    assert [row["frames"] for row in r["frames"]["rows"]] == s.frames
    assert [row["grid"] for row in r["tokens"]["rows"]] == s.grids
    for section in ("frames", "tokens"):
        for row in r[section]["rows"]:
            for m in bench.METHODS:
                assert row[m] > 0 and m + "_extrapolated" in row
    assert [row["rho"] for row in r["interp"]["rows"]] == s.rhos
    for row in r["interp"]["rows"]:
        for tag in ("batched_chunked", "batched_stepwise", "per_pair_chunked", "per_pair_stepwise"):
            assert row[tag]["seconds_per_frame"] > 0 and row[tag]["steps_per_frame"] > 0
        # chunkwise prefill never takes more sequential steps than feeding known tokens one by one
        assert row["batched_chunked"]["steps_per_frame"] <= row["batched_stepwise"]["steps_per_frame"]
    fl = r["floor"]
    for key in ("flops_floor_seconds", "bytes_floor_seconds", "gemv_floor_seconds", "step_seconds", "step_over_floor"):
        assert fl[key] > 0
    assert set(fl["threads"]) >= {1, 2}
    e = r["evdm_flops"]
    assert all(b["ratio"] > 1 for b in e["blocks"]) and e["gate"]
    h = r["headline"]
    assert [row["frames"] for row in h["rows"]] == sorted(s.headline_frames)
    assert h["config"]["tokens_per_frame"] == s.headline_grid ** 2 and h["treatment"] == "both eager"
    for row in h["rows"]:
        for model in ("retnet", "transformer_kv"):
            assert all(row[model][k] > 0 and row["cpu"][model][k] > 0 for k in ("start", "end", "whole"))
        assert row["kv_cache_bytes"] > row["retnet_state_bytes"] > 0
    # the KV cache grows with the video, the RetNet state does not
    first, last = h["rows"][0], h["rows"][-1]
    assert last["kv_cache_bytes"] > first["kv_cache_bytes"] and last["retnet_state_bytes"] == first["retnet_state_bytes"]
    d = r["demo"]
    assert d["frames"] == 13 and d["seconds"] > 0 and d["time_to_first_frame"] <= d["seconds"]
    assert d["samplings"]["default"]["over_default"] == 1.0
    md = (out / "bench.md").read_text()
    for heading in ("Headline", "vs number of frames", "vs tokens per frame", "interpolation", "Floor", "EVDM FLOPs",
                    "demo"):
        assert heading in md
    for label in bench.LABELS.values():
        assert label in md


def test_quick_users_section_serves_every_user(tmp_path):
    r = bench.main(["--quick", "--out", str(tmp_path), "--sections", "users"])["users"]
    assert [row["users"] for row in r["rows"]] == bench.QUICK.users
    for row in r["rows"]:
        assert 0 < row["first_frame_median"] <= row["first_frame_max"] <= row["last_frame_max"] == row["wall"]
        assert row["frames_per_s"] > 0 and row["rows_per_step"] >= 1
    assert r["rows"][-1]["rows_per_step"] > r["rows"][0]["rows_per_step"]   # more users, larger batches
    assert r["ratio_users"] == max(bench.QUICK.users) and r["wall_ratio"] > 0
    assert "Simultaneous users" in (tmp_path / "bench.md").read_text()


def test_step_cost_counts_the_linear_layers():
    config = FlashVideoConfig(d_model=64, n_heads=4, n_layers=3, n_codes=100)
    model = RetNet(config)
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() == 2
                  and not n.startswith("embed"))
    cost = bench.step_cost(config)
    assert cost["flops_linear"] == 2 * weights
    assert cost["weight_bytes"] == 4 * (weights + config.d_model)


def test_full_bench_times_the_shipped_models_size(tmp_path, monkeypatch):
    from flashvideo.bench import common
    from flashvideo.pipeline import DEFAULT_CHECKPOINT

    shipped = FlashVideoConfig.load(DEFAULT_CHECKPOINT / "config.json")
    size = common.Settings().model
    assert size == common.Settings().headline_model
    assert common.model_config(common.Settings()).n_layers == shipped.n_layers
    assert {k: getattr(shipped, k) for k in common.SIZE_FIELDS} == size
    # another size in the checkpoint's config is followed; no checkpoint: the default config
    (tmp_path / "config.json").write_text(json.dumps({**shipped.to_dict(), "n_layers": 3, "d_model": 64}))
    monkeypatch.setattr(common, "DEFAULT_CHECKPOINT", tmp_path)
    assert (common.Settings().model["n_layers"], common.Settings().model["d_model"]) == (3, 64)
    monkeypatch.setattr(common, "DEFAULT_CHECKPOINT", tmp_path / "missing")
    assert common.model_config(common.Settings()).n_layers == FlashVideoConfig().n_layers


def test_every_section_module_stays_small():
    from pathlib import Path

    for path in Path(bench.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) < 400, path.name


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown sections"):
        bench.main(["--quick", "--out", str(tmp_path), "--sections", "frames,nope"])


def test_bench_options_plug_into_any_parser(tmp_path):
    import argparse

    args = bench.add_arguments(argparse.ArgumentParser()).parse_args(["--quick", "--out", str(tmp_path), "--sections",
                                                                      "evdm_flops"])
    r = bench.run(args)
    assert "evdm_flops" in r and "frames" not in r and (tmp_path / "bench.md").exists()


def test_cli_bench_subcommand_when_wired(tmp_path):
    from flashvideo import cli

    sub = next(a for a in cli.build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    if "bench" not in sub.choices:
        pytest.skip("python -m flashvideo bench is not wired into cli.py yet")
    cli.main(["bench", "--quick", "--out", str(tmp_path), "--sections", "evdm_flops"])
    assert (tmp_path / "bench.json").exists()


def test_quick_long_section_keeps_the_stream_flat(quick):
    _, r = quick
    h = r["long"]
    assert list(h["retnet"]) == bench.QUICK.long_frames
    first, last = (h["retnet"][f] for f in (h["checkpoints"][0], h["checkpoints"][-1]))
    assert last["rss_mb"] - first["rss_mb"] < 20                 # no growth with the stream's length
    assert all(v["over_fresh"] > 0 and v["fresh_cpu"] > 0 for v in h["retnet"].values())  # timed beside a fresh stream
    kv = h["kv_cache_bytes"]
    assert kv[h["checkpoints"][-1]] > kv[h["checkpoints"][0]]   # the transformer's cache grows


def test_demo_section_times_the_other_samplings_beside_the_default():
    from conftest import make_tiny_pipeline
    from flashvideo.bench.demo import samplings
    from flashvideo.sampler import SamplingSettings

    shipped = samplings(make_tiny_pipeline(sampling={"temperature": 0.8, "guidance_scale": 1.5, "guide_interp": False}))
    default = SamplingSettings(temperature=0.8, guidance_scale=1.5, guide_interp=False)
    assert shipped == {"default": (default, 8), "token by token (no drafts)": (default, 0),
                       "every frame guided": (SamplingSettings(temperature=0.8, guidance_scale=1.5), 8),
                       "unguided": (SamplingSettings(temperature=0.8, guide_interp=False), 8)}
    tokens = make_tiny_pipeline()
    tokens.draft_len = 0  # neutral defaults, decoded token by token: nothing else to compare
    assert list(samplings(tokens)) == ["default"]
