"""The eval: its detector is honest (ground truth reads 100 %, a drift is not motion, a bad video
scores low), and the eval command runs end to end (a random model: only ranges are checked)."""
import numpy as np
import torch

from flashvideo.config import FlashVideoConfig
from flashvideo.data import shapes
from flashvideo.evaluate import (check_detector, evaluate, forward_steps, psnr, sampling_sweep, ssim, summarise,
                                 sweep_markdown, to_markdown, video_scores)
from flashvideo.pipeline import FlashVideoPipeline
from flashvideo.retnet import RetNet
from flashvideo.timeline import Timeline
from flashvideo.tokenizer import VQTokenizer, VQVAE, WordTokenizer


def test_psnr_and_ssim():
    a = shapes.render("red", "circle", "grows", 0, [0.0])[0]
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 10, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, a) == float("inf") and abs(ssim(a, a) - 1) < 1e-9
    assert 25 < psnr(a, noisy) < 35 and 0 < ssim(a, noisy) < 0.99
    assert ssim(a, 255 - a) < ssim(a, noisy)


def test_ground_truth_scores_100_percent_and_a_drift_is_not_motion():
    check = check_detector()                          # every combination, 3 and 7 in-between frames
    assert check["ok"], check
    gt = check["ground_truth"]
    assert np.allclose(list(gt["timing"].values()), [0.25, 0.5, 0.75], atol=0.02)
    assert gt["area_cv_median"] < 0.02 and gt["backtrack"] < 1e-3 and gt["first_frame_right"] == 1.0
    assert check["drift_1px"]["motion"] is False


def test_holds_count_as_forward_only_where_the_pixel_grid_could_not_show_the_change():
    e = np.full(6, 0.5)                               # the world's step: 0.5 px, below a 2 px resolution
    hold_then_catch_up = np.array([0.5, 0.0, 0.0, 1.5, 0.5, 0.5])
    assert forward_steps(hold_then_catch_up, e, 2.0).all()
    assert forward_steps(np.array([0.5, 0.5, 0.5, 0.5, 0.0, 0.0]), e, 2.0).all()     # a hold at the end
    assert not forward_steps(hold_then_catch_up, e, 1.0)[1:3].any()   # two holds = 1 px: the grid shows that
    stall = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 2.0])  # 2.5 px of the world's change held back: a stall
    assert forward_steps(stall, e, 2.0).sum() == 1
    back = np.array([0.5, -0.5, 0.0, 1.5, 0.5, 0.5])  # a step backwards is never forgiven
    assert forward_steps(back, e, 2.0).tolist() == [True, False, True, True, True, True]
    assert not forward_steps(np.zeros(6), e, 2.0).any()


def test_bad_videos_score_low():
    tl = Timeline(4, 3)
    truth = shapes.render("red", "circle", "moves right", 1, tl.times)
    still = shapes.render("red", "circle", "moves right", 1, [0] * tl.n_frames)
    backwards = truth[::-1]
    morph = truth.copy()
    morph[1::2] = shapes.render("red", "square", "moves right", 1, tl.times)[1::2]
    ahead = shapes.render("red", "circle", "moves right", 1, [round(t) for t in tl.times])  # jumps at key frames
    s = {name: video_scores(v, tl.times, "red", "circle", "moves right")
         for name, v in [("truth", truth), ("still", still), ("backwards", backwards), ("morph", morph), ("ahead", ahead)]}
    assert s["truth"]["forward"] == s["truth"]["steps"] and s["truth"]["flicker"] == 0
    assert not s["still"]["motion"] and s["still"]["forward"] == 0 and abs(s["still"]["net_share"]) < 0.1
    assert not s["backwards"]["motion"] and s["backwards"]["net_share"] < -0.9
    assert s["morph"]["flicker"] >= 5 and s["morph"]["first_right"]      # its odd frames are squares
    wrong_start = truth.copy()
    wrong_start[0] = shapes.render("red", "square", "moves right", 1, tl.times[:1])[0]
    assert not video_scores(wrong_start, tl.times, "red", "circle", "moves right")["first_right"]
    timing = summarise([s["ahead"]])["timing"]
    assert abs(timing[1] - 0.25) > 0.2                                  # in-between frames off schedule
    blank = np.zeros_like(truth)
    blank[:] = shapes.BACKGROUND
    assert video_scores(blank, tl.times, "red", "circle", "moves right")["garbled"] == tl.n_frames


def test_evaluate_runs_end_to_end():
    torch.manual_seed(0)
    words = WordTokenizer(shapes.vocabulary(), slots=shapes.grammar())
    config = FlashVideoConfig(image_size=64, grid=8, n_codes=32, n_text=words.n_text, text_len=4, d_model=32,
                              n_heads=2, n_layers=1, max_key_frames=4, max_interp_frames=3)
    vq = VQVAE(image_size=64, downsample=8, n_codes=32, code_dim=8, channels=16, n_res=1)
    pipe = FlashVideoPipeline(RetNet(config), VQTokenizer(words, vq))
    r = evaluate(pipe, seen=2, heldout=1, clips=1, long=1)
    assert r["seen"]["videos"] == 2 and r["heldout"]["videos"] == 1
    for key in ("colour", "shape", "motion", "forward_steps", "flicker_frames", "first_frame_right"):
        assert 0 <= r["all"][key] <= 1
    assert r["interpolation_rho0"]["inherited"] == 0 and 0 <= r["interpolation_rho05"]["inherited"] <= 1
    cost = r["rho05_cost"]                            # paired over the same 4 clips
    assert cost["clips"] == 4 and np.isclose(cost["db"], np.mean(r["interpolation_rho0"]["clip_psnr"])
                                                      - np.mean(r["interpolation_rho05"]["clip_psnr"]))
    assert set(r["inheritance"]) == {0.2, 0.5, 1.0} and r["prediction"]["frames"] == 3
    assert r["long"]["key_frames"] == 4
    table = to_markdown(r)
    assert r["densest"]["videos"] == 1 and r["densest"]["frames"] == 4 + 3 * 3      # the most in-between frames
    assert "3 in-between frames (1 seen prompts): timing (world: 0.25 / 0.50 / 0.75)" in table
    assert "held out (1 prompts)" in table and "ground truth encoded and decoded (144 videos)" in table
    assert r["tokenizer"]["round_trip"]["videos"] == len(shapes.ALL_COMBOS)
    sw = r["stream"]["switches"]                     # both right: follows and no jump, never more than either
    assert 0 <= sw["clean"] <= min(sw["follow_within_one"], 1 - sw["jumps"]) and "jump at the switch / both right" in table
    late = r["stream"]["late_switches"]
    assert late["switches"] == 1 and 0 <= late["object_kept"] <= 1 and "late switches (1, after key frame 80)" in table
    rows = sampling_sweep(pipe, [dict(temperature=1.0), dict(temperature=0.5, top_k=4)], n=2)
    assert [r["settings"] for r in rows] == [dict(temperature=1.0), dict(temperature=0.5, top_k=4)]
    assert "| temperature=0.5, top_k=4 |" in sweep_markdown(rows) and all(0 <= r["motion"] <= 1 for r in rows)


def test_paired_cost_is_the_mean_difference_with_its_error():
    from flashvideo.evaluate import paired_cost

    c = paired_cost({"clip_psnr": [30.0, 28.0, 26.0]}, {"clip_psnr": [29.0, 28.0, 24.0]})
    assert c["clips"] == 3 and np.isclose(c["db"], 1.0) and np.isclose(c["se"], 1.0 / np.sqrt(3))


def test_switch_scoring_is_honest_on_ground_truth():
    from flashvideo.evaluate_stream import AFTER, SWITCH_AT, new_motion, switch_result

    times = list(range(SWITCH_AT + AFTER))
    hits = []
    for seed in range(4):                             # every trained object and motion; sizes that wrap included
        for i, (c, s, m) in enumerate(shapes.TRAIN_COMBOS):
            new = new_motion(c, s, m, i + seed)
            truth = shapes.render(c, s, m, 1000 * seed + i, times, switches=[(SWITCH_AT - 1, new)])
            hits.append(switch_result(truth, new))
    for i, (c, s, m) in enumerate(shapes.TRAIN_COMBOS[::7]):
        new = new_motion(c, s, m, i)
        truth = shapes.render(c, s, m, i, times, switches=[(SWITCH_AT - 1, new)])
        teleport = truth.copy()
        teleport[SWITCH_AT:] = np.roll(truth[SWITCH_AT:], 20, axis=2)       # the object jumps at the switch
        assert switch_result(teleport, new)[1], (c, s, m, new)
        ignored = shapes.render(c, s, m, i, times)                            # keeps the old motion
        assert not switch_result(ignored, new)[0] or new.startswith("moves") == m.startswith("moves") is False
    assert all(f and not j for f, j in hits), hits
