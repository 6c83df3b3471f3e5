"""The world seam: training, tokenizer training and eval ask a `World` for prompts, clips and held-out
frames; a toy world trains without touching any other module; folder worlds know every video suffix
and say what time span their clips cover."""
import json
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from flashvideo.data import shapes
from flashvideo.data.folder import VIDEO_EXTENSIONS
from flashvideo.layout import Layout
from flashvideo.tokenizer import VQTokenizer, VQVAE, WordTokenizer
from flashvideo.train import TrainConfig, make_batch, train
from flashvideo.world import FolderWorld, ShapesWorld, frame_stream, make_world


class BlinkWorld:
    """A toy world: a dot that blinks (white on odd key frames) or glows (brighter with time)."""
    sample_switch = None

    def __init__(self, size=32, t_max=3.0):
        self.size, self.t_max, self.asked = size, t_max, []

    def sample(self, rng, times):
        self.asked += list(times)
        prompt = self.prompts()[int(rng.integers(2))]
        level = [255 * (int(t) % 2) if "blinks" in prompt else 255 * t / self.t_max for t in times]
        frames = np.zeros((len(times), self.size, self.size, 3), np.uint8)
        frames[:, 12:20, 12:20] = np.asarray(level, np.uint8)[:, None, None, None]
        return prompt, frames

    def prompts(self):
        return ["dot blinks", "dot glows"]

    def vocabulary(self):
        return ["blinks", "dot", "glows"]

    def grammar(self):
        return None

    def example_prompts(self, limit=6):
        return self.prompts()[:limit]

    def heldout_frames(self, n_clips=2):
        return self.sample(np.random.default_rng(1), [0.5, 1.5])[1]


def test_a_toy_world_trains_through_the_same_code(tmp_path):
    world = BlinkWorld()
    torch.manual_seed(0)
    vq = VQVAE(image_size=32, downsample=8, n_codes=16, code_dim=8, channels=16, n_res=1)
    VQTokenizer(WordTokenizer(world.vocabulary()), vq).save(tmp_path / "tok")
    tc = TrainConfig(out=str(tmp_path / "run"), tokenizer=str(tmp_path / "tok"), steps=2, batch_size=2, warmup=1,
                     save_every=2, sample_every=1, log_every=1,
                     model={"d_model": 16, "n_heads": 2, "n_layers": 1, "max_key_frames": 3, "max_interp_frames": 2})
    last = train(tc, world=world)
    assert json.loads((last / "config.json").read_text())["text_len"] == 2       # "dot blinks"
    assert world.asked and max(world.asked) <= world.t_max
    assert (tmp_path / "run" / "samples" / "step-0000001.gif").exists()        # sampled with the world's example


def test_make_batch_asks_the_world_for_clips():
    world = BlinkWorld(size=16)
    tok = VQTokenizer(WordTokenizer(world.vocabulary()), VQVAE(image_size=16, downsample=4, n_codes=8, code_dim=4,
                                                                channels=4, n_res=1))
    from flashvideo.config import FlashVideoConfig

    layout = Layout(FlashVideoConfig(image_size=16, grid=4, n_codes=8, n_text=4, text_len=2, max_key_frames=4,
                                     max_interp_frames=2, d_model=16, n_heads=2))
    rng = np.random.default_rng(0)
    for _ in range(6):
        tokens, targets, task = make_batch(rng, world, tok, layout, 2, p_interp=0.5, p_given=0.0)
        assert tokens.shape[0] == 2 and (targets != -100).any()
    assert min(world.asked) >= 0 and max(world.asked) <= 3


def test_shapes_world():
    world = make_world("shapes", 32)
    assert isinstance(world, ShapesWorld) and world.t_max == shapes.T_MAX
    prompt, frames = world.sample(np.random.default_rng(0), [0, 0.5, 1])
    assert frames.shape == (3, 32, 32, 3) and prompt in world.prompts()
    words = WordTokenizer(world.vocabulary(), slots=world.grammar())
    assert all(words.encode(p) for p in world.example_prompts(8))
    assert world.heldout_frames(2).shape == (6, 32, 32, 3)
    assert next(frame_stream(world)).shape == (4, 32, 32, 3)
    for seed in range(4):                                   # the step into the first new-prompt frame follows it
        prompts, frames = make_world("shapes", 64).sample_switch(np.random.default_rng(seed), [0, 1, 2, 3], 2)
        assert len(set(prompts[:2])) == 1 and prompts[1] != prompts[2]
        new = prompts[2].split(maxsplit=3)[3]               # "a red circle moves right" -> "moves right"
        along = shapes.progress(shapes.steps(shapes.measure(frames), 64), new)
        assert along[1] >= 0.5 * shapes.rate(new), (prompts, along)
    from flashvideo import evaluate

    assert evaluate.EXAMPLES == world.example_prompts(6)


def grey_video(n, size=24):
    return np.stack([np.full((size, size, 3), 12 * i, np.uint8) for i in range(n)])


@pytest.mark.parametrize("suffix", [".mov", ".mkv"])
def test_folder_world_reads_every_video_suffix(tmp_path, suffix):
    assert suffix in VIDEO_EXTENSIONS
    (tmp_path / "JumpRope").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iio.imwrite(tmp_path / "JumpRope" / f"a{suffix}", grey_video(20), fps=8, macro_block_size=1)
    world = make_world(str(tmp_path), 16)
    assert isinstance(world, FolderWorld) and world.vocabulary() == ["jump", "rope"]
    assert world.prompts() == ["jump rope"] and world.example_prompts() == ["jump rope"]


def test_folder_world_time_span_is_a_documented_parameter(tmp_path):
    (tmp_path / "clip_one").mkdir()
    for i, frame in enumerate(grey_video(12)):
        iio.imwrite(tmp_path / "clip_one" / f"{i}.png", frame)
    rng = np.random.default_rng(0)
    default = FolderWorld(tmp_path, 16, n_frames=8)
    assert default.t_max == 7                                     # one frame per key-frame interval
    levels = default.sample(rng, [0, 1, 7])[1][:, 0, 0, 0]
    assert list(levels) == [0, 12, 84]
    spread = FolderWorld(tmp_path, 16, n_frames=8, t_max=3.5)      # the same 8 frames over 3.5 intervals
    assert list(spread.sample(rng, [0, 1, 3.5])[1][:, 0, 0, 0]) == [0, 24, 84]
    with pytest.raises(ValueError, match="t_max must be > 0"):
        FolderWorld(tmp_path, 16, t_max=0)
    assert TrainConfig().folder_frames == 16 and TrainConfig().folder_t_max == 0.0
