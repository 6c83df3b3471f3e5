"""Training: loss goes down, resume is exact, SIGKILL loses at most one interval, DDP ranks agree,
folder datasets train, bad --resume is a clear error, --init fine-tunes from a pipeline folder,
--ema keeps a weight average."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from flashvideo.data import shapes
from flashvideo.tokenizer import VQTokenizer, VQVAE, WordTokenizer
from flashvideo.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
TINY = {"d_model": 32, "n_heads": 2, "n_layers": 1, "max_key_frames": 3, "max_interp_frames": 2}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tok")
    vq = VQVAE(image_size=32, downsample=8, n_codes=16, code_dim=8, channels=16, n_res=1)
    VQTokenizer(WordTokenizer(shapes.vocabulary()), vq).save(folder)
    return folder


def config(tokenizer_dir, out, **kw):
    return TrainConfig(**{**dict(out=str(out), tokenizer=str(tokenizer_dir), steps=4, batch_size=2, warmup=2,
                                 save_every=2, sample_every=0, log_every=1, model=TINY), **kw})


def weights(folder):
    from safetensors.torch import load_file

    return load_file(Path(folder) / "model.safetensors")


def test_training_lowers_the_loss(tokenizer_dir, tmp_path):
    train(config(tokenizer_dir, tmp_path / "a", steps=40, lr=3e-3, save_every=40))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_resume_is_exact(tokenizer_dir, tmp_path):
    straight = train(config(tokenizer_dir, tmp_path / "straight", steps=6))
    train(config(tokenizer_dir, tmp_path / "split", steps=6, stop_at=4))
    resumed = train(config(tokenizer_dir, tmp_path / "split", steps=6, resume=True))
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_bad_resume(tokenizer_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(config(tokenizer_dir, tmp_path / "none", resume=True))
    train(config(tokenizer_dir, tmp_path / "c", steps=2))
    with pytest.raises(ValueError, match="different model config"):
        train(config(tokenizer_dir, tmp_path / "c", steps=4, resume=True, model={**TINY, "d_model": 64}))


def test_init_starts_from_a_pipeline_folder(tokenizer_dir, tmp_path):
    source = train(config(tokenizer_dir, tmp_path / "source", steps=2))
    start = train(config(tokenizer_dir, tmp_path / "tuned", steps=0, init=str(source)))
    a, b = weights(source), weights(start)
    assert all(torch.equal(a[k], b[k]) for k in a)
    fresh = train(config(tokenizer_dir, tmp_path / "fresh", steps=0))
    assert not all(torch.equal(a[k], weights(fresh)[k]) for k in a)
    with pytest.raises(ValueError, match="another config"):
        train(config(tokenizer_dir, tmp_path / "wide", steps=1, init=str(source), model={**TINY, "d_model": 64}))


def test_init_grows_a_deeper_model_that_computes_the_same_function(tokenizer_dir, tmp_path):
    from flashvideo.pipeline import load_model

    source = train(config(tokenizer_dir, tmp_path / "source", steps=2, model={**TINY, "n_layers": 2}))
    grown = train(config(tokenizer_dir, tmp_path / "deep", steps=0, init=str(source), model={**TINY, "n_layers": 3}))
    small, deep = load_model(source), load_model(grown)
    assert len(deep.blocks) == 3
    idx = torch.randint(0, small.config.vocab_size, (2, 40))
    torch.testing.assert_close(deep(idx)[0], small(idx)[0], rtol=1e-5, atol=1e-5)
    assert not torch.equal(deep.blocks[2].retention.qkvg.weight, small.blocks[1].retention.qkvg.weight)  # 2 -> 3: old, old, new
    assert torch.equal(deep.blocks[1].retention.qkvg.weight, small.blocks[1].retention.qkvg.weight)
    assert not deep.blocks[2].glu.down.weight.any()
    tuned = train(config(tokenizer_dir, tmp_path / "deep2", steps=2, init=str(source), model={**TINY, "n_layers": 3}))
    assert weights(tuned)["blocks.2.glu.down.weight"].any()   # the new block trains
    with pytest.raises(ValueError, match="another config"):  # fewer layers than the folder: refused
        train(config(tokenizer_dir, tmp_path / "shallow", steps=0, init=str(grown), model={**TINY, "n_layers": 2}))


def test_init_into_task_tokens_that_name_n_computes_the_same_function(tokenizer_dir, tmp_path):
    from flashvideo.layout import Layout
    from flashvideo.pipeline import load_model

    source = train(config(tokenizer_dir, tmp_path / "source", steps=2))
    counted = train(config(tokenizer_dir, tmp_path / "n", steps=0, init=str(source),
                           model={**TINY, "interp_count_token": True}))
    old, new = load_model(source), load_model(counted)
    g = torch.randint(0, old.config.n_codes, (4, old.config.grid, old.config.grid))
    seqs = [Layout(m.config).interp_sequence(Layout(m.config).text_block([1]), g[0], g[1], g[2:]) for m in (old, new)]
    assert not torch.equal(*seqs)                                       # n = 2 has a token of its own ...
    torch.testing.assert_close(new(seqs[1][None])[0], old(seqs[0][None])[0])  # ... which starts as INTERP
    with pytest.raises(ValueError, match="another config"):              # and back is refused
        train(config(tokenizer_dir, tmp_path / "back", steps=0, init=str(counted), model=TINY))


def test_ema_averages_the_weights_and_resumes_exactly(tokenizer_dir, tmp_path):
    source = train(config(tokenizer_dir, tmp_path / "source", steps=2))
    one = train(config(tokenizer_dir, tmp_path / "one", steps=1, init=str(source), ema=0.9, export=str(tmp_path / "x")))
    w0, w1, avg = weights(source), weights(one), weights(one / "ema")
    assert all(torch.allclose(avg[k], 0.9 * w0[k] + 0.1 * w1[k], atol=1e-6) for k in w0)
    assert not all(torch.equal(avg[k], w1[k]) for k in w0)
    assert all(torch.equal(avg[k], weights(tmp_path / "x")[k]) for k in w0)   # --export writes the average
    straight = train(config(tokenizer_dir, tmp_path / "straight", steps=6, ema=0.9))
    train(config(tokenizer_dir, tmp_path / "split", steps=6, stop_at=4, ema=0.9))
    resumed = train(config(tokenizer_dir, tmp_path / "split", steps=6, resume=True, ema=0.9))
    a, b = weights(straight / "ema"), weights(resumed / "ema")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="decay of the weight average"):
        train(config(tokenizer_dir, tmp_path / "bad", steps=1, ema=1.5))


def cli(*args):
    return [sys.executable, "-m", "flashvideo", *map(str, args)]


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_sigkill_then_resume_loses_at_most_one_interval(tokenizer_dir, tmp_path):
    out = tmp_path / "k"
    args = ["train", "--tokenizer", tokenizer_dir, "--out", out, "--steps", 400, "--batch-size", 2,
            "--save-every", 3, "--sample-every", 0, "--log-every", 1, "--model-config", json.dumps(TINY)]
    proc = subprocess.Popen(cli(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and not (out / "latest").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "latest").exists(), "no checkpoint was written before the kill"
    logged = max(json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines())
    saved = int((out / "latest").read_text().split("-")[1])
    assert 0 <= logged - saved <= 3  # lost at most the save interval (a kill mid-save keeps the previous one)
    args[args.index("--steps") + 1] = saved + 2
    subprocess.run(cli(*args, "--resume"), env=ENV, check=True, capture_output=True, timeout=120)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps[-2:] == [saved + 1, saved + 2]


def test_ddp_two_processes_end_with_identical_weights(tokenizer_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "flashvideo", "train", "--tokenizer", str(tokenizer_dir), "--out", str(out), "--steps", "3",
           "--batch-size", "2", "--save-every", "3", "--sample-every", "0", "--model-config", json.dumps(TINY)]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1))
    assert r0["step"] == r1["step"] == 3
    assert r0["weights"] == r1["weights"]   # gradients were all-reduced
    assert r0["data_sha256"] != r1["data_sha256"]         # each rank saw different clips


def test_folder_dataset_trains(tmp_path):
    root = tmp_path / "ucf"
    rng = np.random.default_rng(0)
    for cls in ("JumpRope", "ApplyEyeMakeup"):
        (root / cls).mkdir(parents=True)
        for v in range(2):
            frames = rng.integers(0, 255, (10, 40, 48, 3), dtype=np.uint8)
            imageio.mimsave(root / cls / f"v{v}.gif", list(frames))
    tok, out = tmp_path / "tok", tmp_path / "run"
    subprocess.run(cli("train-tokenizer", "--data", root, "--out", tok, "--steps", 3, "--batch-size", 4,
                       "--image-size", 32, "--codes", 16, "--channels", 16, "--code-dim", 8),
                   env=ENV, check=True, capture_output=True, timeout=120)
    assert json.loads((tok / "tokenizer.json").read_text())["vocab"] == ["apply", "eye", "jump", "makeup", "rope"]
    res = subprocess.run(cli("train", "--data", root, "--tokenizer", tok, "--out", out, "--steps", 2, "--batch-size", 2,
                             "--sample-every", 0, "--model-config", json.dumps(TINY)),
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "latest").exists()
    cfg = json.loads((out / (out / "latest").read_text() / "config.json").read_text())
    assert cfg["text_len"] == 3  # "apply eye makeup"


def test_shake_moves_codes_only_to_a_neighbour_and_keeps_the_targets():
    from flashvideo.config import FlashVideoConfig
    from flashvideo.layout import Layout
    from flashvideo.train import shake

    c = FlashVideoConfig(image_size=32, grid=4, n_codes=16, n_text=4, text_len=2, max_key_frames=3, d_model=16,
                         n_heads=2)
    layout = Layout(c)
    plain = torch.full((3, 4, 4), 5)
    obj = plain.clone()
    obj[:, 1:3, 1:3] = 9                                              # a 2x2 object on a plain background
    text = layout.text_block(torch.tensor([1, 2]))
    tokens = torch.stack([layout.key_sequence(text, plain), layout.key_sequence(text, obj)])
    shaken = shake(np.random.default_rng(0), tokens, layout, 3, 1.0)
    assert torch.equal(shaken[0], tokens[0])                          # a plain frame has nothing to move
    codes = torch.stack([shaken[1, layout.code_positions(s)].view(4, 4) for s in range(3)])
    assert set(codes.unique().tolist()) <= {5, 9} and not torch.equal(codes, obj)   # edges moved, nothing new
    outside = torch.ones(tokens.shape[1], dtype=torch.bool)
    for s in range(3):
        outside[layout.code_positions(s)] = False
    assert torch.equal(shaken[:, outside], tokens[:, outside])        # headers (text, SN) are never shaken
    assert torch.equal(shake(np.random.default_rng(0), tokens, layout, 3, 0.0), tokens)


def test_swap_frames_shows_another_sequences_frame_and_drops_its_loss():
    from flashvideo.config import FlashVideoConfig
    from flashvideo.layout import Layout
    from flashvideo.train import swap_frames

    c = FlashVideoConfig(image_size=32, grid=4, n_codes=16, n_text=4, text_len=2, max_key_frames=5, d_model=16,
                         n_heads=2)
    layout = Layout(c)
    text = layout.text_block(torch.tensor([1, 2]))
    frames = [torch.full((5, 4, 4), b) + torch.arange(5)[:, None, None] * 3 for b in range(3)]  # every frame differs
    tokens = torch.stack([layout.key_sequence(text, f) for f in frames])
    targets = layout.targets(tokens, range(5))
    swapped, dropped = swap_frames(np.random.default_rng(0), tokens, targets, layout, 5, 1.0)
    for b in range(3):
        changed = [s for s in range(5) if not torch.equal(swapped[b, layout.code_positions(s)],
                                                          tokens[b, layout.code_positions(s)])]
        assert len(changed) == 1 and changed[0] < 3                           # one frame, never one of the last two
        pos = layout.code_positions(changed[0])
        assert any(torch.equal(swapped[b, pos], tokens[o, pos]) for o in range(3) if o != b)   # another sequence's
        lost = (dropped[b] != targets[b]).nonzero()[:, 0]
        assert lost.tolist() == list(range(pos.start - 1, pos.stop - 1)) and (dropped[b, lost] == -100).all()
        rest = torch.ones(tokens.shape[1], dtype=torch.bool)
        rest[pos] = False
        assert torch.equal(swapped[b, rest], tokens[b, rest])                 # headers and other frames kept
    for few in (tokens[:1], tokens[:, :layout.frame_len * 2]):                 # one sequence, or two key frames
        n = few.shape[1] // layout.frame_len
        assert swap_frames(np.random.default_rng(0), few, targets[:len(few), :few.shape[1]], layout, n, 1.0)[0] is few
    kept, same = swap_frames(np.random.default_rng(0), tokens, targets, layout, 5, 0.0)
    assert torch.equal(kept, tokens) and torch.equal(same, targets)


def test_self_feed_replaces_only_generated_codes_with_the_models_draws():
    from flashvideo.config import FlashVideoConfig
    from flashvideo.layout import Layout
    from flashvideo.retnet import RetNet
    from flashvideo.train import self_feed

    c = FlashVideoConfig(image_size=32, grid=4, n_codes=16, n_text=4, text_len=2, max_key_frames=3, d_model=16,
                         n_heads=2)
    layout = Layout(c)
    torch.manual_seed(0)
    model = RetNet(c)
    text = layout.text_block(torch.tensor([1, 2]))
    tokens = torch.stack([layout.key_sequence(text, torch.randint(0, 16, (3, 4, 4))) for _ in range(2)])
    targets = layout.targets(tokens, [1, 2])                          # slot 0 is given
    fed = self_feed(np.random.default_rng(0), model, tokens, targets, 1.0)
    may_change = torch.zeros(tokens.shape[1], dtype=torch.bool)
    for s in (1, 2):
        may_change[layout.code_positions(s)] = True
    assert torch.equal(fed[:, ~may_change], tokens[:, ~may_change])  # headers and the given frame stay true
    changed = fed != tokens
    assert changed.any() and (fed[changed] < c.n_codes).all()        # the model's draws are image codes
    again = self_feed(np.random.default_rng(0), model, tokens, targets, 1.0)
    assert torch.equal(fed, again)                                    # seeded by the step's generator
    assert torch.equal(self_feed(np.random.default_rng(0), model, tokens, targets, 0.0), tokens)


def batches(tokenizer_dir):
    """`make_batch` on the tiny tokenizer, a tiny layout and the shapes world: (rng, **its keywords) -> its result."""
    from flashvideo.config import FlashVideoConfig
    from flashvideo.layout import Layout
    from flashvideo.tokenizer import read_tokenizer
    from flashvideo.train import make_batch
    from flashvideo.world import make_world

    tok = read_tokenizer(tokenizer_dir)
    c = FlashVideoConfig(image_size=32, grid=4, n_codes=16, n_text=len(shapes.vocabulary()) + 1, text_len=4,
                         max_key_frames=3, max_interp_frames=2, d_model=16, n_heads=2)
    layout, world = Layout(c), make_world("shapes", 32)
    return layout, world, lambda rng, batch_size, **kw: make_batch(rng, world, tok, layout, batch_size, **kw)


def test_p_first_batches_are_lone_first_frames_and_off_changes_nothing(tokenizer_dir):
    from flashvideo.layout import KEY

    layout, world, make = batches(tokenizer_dir)
    c = layout.config

    def batch(seed, **kw):
        return make(np.random.default_rng(seed), 3, p_interp=0.0, p_given=1.0, **kw)

    tokens, targets, task = batch(0, p_first=1.0, p_stream=1.0)
    assert task == "key K=1" and tokens.shape == (3, layout.frame_len)         # one frame, never given, ...
    text = tokens[0, 1:layout.header_len - 1]
    assert torch.equal(tokens[0, :layout.header_len], layout.header(KEY, text, layout.key_sn(1)))   # ... at SN 1
    assert (targets != -100).sum() == 3 * c.frame_tokens                       # the loss is on its every code
    # off, it draws nothing: K comes straight after the interpolation draw, as in runs made before the option
    t_max = min(world.t_max, c.max_key_frames - 1)

    def k_drawn(seed):
        rng = np.random.default_rng(seed)
        rng.random()
        return int(rng.integers(2, int(t_max) + 2))

    seeds = range(8)
    assert all(batch(s)[2].startswith(f"key K={k_drawn(s)}") for s in seeds)
    assert not all(batch(s, p_first=1e-9)[2].startswith(f"key K={k_drawn(s)}") for s in seeds)  # on: one draw more


def test_hardest_clip_has_the_largest_jump_in_time_order(tokenizer_dir):
    from flashvideo.train import hardest

    def clip(*levels):  # frames of one grey level each
        return "p", np.stack([np.full((4, 4, 3), v, np.uint8) for v in levels])

    times = [0, 2, 1]   # slot order of an interpolation clip: A, B, the middle
    smooth, jumpy = clip(0, 120, 60), clip(0, 0, 100)   # in slot order smooth's jump (120) is the larger
    assert hardest([smooth, jumpy], times) is jumpy     # in time order: 60 against 100
    assert hardest([jumpy, smooth], [0, 1, 2]) is smooth
    # on, an interpolation batch is drawn from other clips than off; a key-frame batch from the same
    make = batches(tokenizer_dir)[2]

    def batch(p_interp, **kw):
        return make(np.random.default_rng(3), 4, p_interp=p_interp, p_given=0.0, **kw)[0]

    assert not torch.equal(batch(1.0), batch(1.0, p_hard=1.0))
    assert torch.equal(batch(0.0), batch(0.0, p_hard=1.0))
