"""Does a model keep its object over long streams? Not a test (no assertions); the README quotes its output.

    python tests/long_probe.py [MODEL ...]      # default: the shipped model; about 5 min per model on 1 core
    python tests/long_probe.py checkpoints/shapes --aoti --settings '{"centre_first": false}' '{"centre_first": true}'

For each model (and each change to its own sampling given with --settings): 12 streams (3 prompts x 4 seeds;
--seeds) of 150 key frames without in-between frames, the prompt switching at key frame 60 (same object, new
motion), sampled with the model's defaults on the eager step (so that models are compared alike; --aoti: its built
step, for settings of one model). Prints, per stream and in all, the key frames in which `shapes.measure` finds no
object, and those it does not read as the prompt's colour and shape, and how often such a key frame is followed by
another one and two key frames later."""
import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from flashvideo import FlashVideoPipeline, evaluate
from flashvideo.data import shapes
from flashvideo.endless import EndlessStream

PROMPTS = [("a red circle moves right", "a red circle moves down"), ("a blue square moves up", "a blue square moves left"),
           ("a green triangle moves left", "a green triangle moves up")]
SWITCH_AT, AFTER = 60, 90


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=[None])
    ap.add_argument("--settings", nargs="+", default=["{}"], help="changes to the model's sampling, JSON objects")
    ap.add_argument("--aoti", action="store_true", help="sample with the model's built step")
    ap.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds (default 0,1,2,3)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for model in args.models:
        pipe = FlashVideoPipeline.from_pretrained(model)
        if args.aoti and not pipe.compile("aoti"):
            raise SystemExit(f"no built step for {model}: python -m flashvideo.aot build --model {model}")
        for change in args.settings:
            sampling, name = replace(pipe.default_sampling, **json.loads(change)), f"{model or 'shipped'} {change}"
            lost, off, flags = [], [], []
            for seed in map(int, args.seeds.split(",")):
                for prompt, then in PROMPTS:
                    stream = EndlessStream(pipe, prompt, interp_frames=0, seed=seed, sampling=sampling)
                    frames = [e.image for e in stream.frames(SWITCH_AT)]
                    stream.prompt = then
                    frames += [e.image for e in stream.frames(AFTER)]
                    m = shapes.measure(np.stack(frames))
                    colour, shape = prompt.split()[1:3]
                    empty = np.flatnonzero(m["area"] == 0)
                    wrong = evaluate.off_prompt(m, colour, shape)
                    lost.append(len(empty))
                    off.append(int(wrong.sum()))
                    if not wrong.all():  # (a stream off throughout says nothing about when errors recur)
                        flags.append(wrong)
                    print(name, seed, prompt, "empty key frames:", len(empty), "first:", empty[:1],
                          "off the prompt:", off[-1], flush=True)
            print(f"== {name}: streams with an empty key frame: {sum(n > 0 for n in lost)} of {len(lost)}; "
                  f"empty key frames in all: {sum(lost)} of {(SWITCH_AT + AFTER) * len(lost)}; key frames off the "
                  f"prompt: {sum(off)}; streams with more than 10 of them: {sum(n > 10 for n in off)}", flush=True)
            print(f"   a key frame off the prompt is followed by one off {recurrence(flags, 1):.1%} of the time one key "
                  f"frame later and {recurrence(flags, 2):.1%} two later (key frames off in all: "
                  f"{np.mean(np.concatenate(flags)) if flags else float('nan'):.1%})", flush=True)


def recurrence(flags: list, lag: int) -> float:
    """How often a key frame off the prompt is followed, `lag` key frames later, by another."""
    pairs = [(f[:-lag], f[lag:]) for f in flags]
    before = sum(int(a.sum()) for a, _ in pairs)
    return sum(int((a & b).sum()) for a, b in pairs) / before if before else float("nan")


if __name__ == "__main__":
    main()
