"""How often is a video's first frame right, and what would pick a right one? Not a test (no assertions); the README
quotes its output.

    python tests/first_frame_probe.py [MODEL ...] [--candidates 8] [--key-frames 6]   # default: the shipped model

A first frame is drawn from the prompt alone; later key frames continue the object they are given, so a wrong start
is carried on (`evaluate`'s "first frame shows the prompt" row). For the eval's prompts (45 seen and 15 held-out
combinations, 2 seeds each), each model draws `--candidates` first frames per prompt with its default sampling, and
the probe prints how often `shapes.measure` reads the prompted shape and colour in:
  * the first candidate (what the pipeline shows), split by whether the object touches a frame edge;
  * the candidate the model itself finds likeliest (sum of the log-probabilities of its codes, with the prompt);
  * any candidate (an upper bound for picking among them);
  * as a check on what the model knows: the shape it reads itself (the shape word under whose prompt a frame is
    likeliest) in the ground-truth first frame, and how often the first candidate it reads as the prompt's shape is
    right.
Then the first candidate again at other temperatures (guidance as the model's default). With --key-frames K: how
often each of the first K key frames of a video is right (4 seeds a prompt), the measure behind `lead_in`."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from flashvideo import FlashVideoPipeline, aot
from flashvideo.data import shapes
from flashvideo.evaluate import spread
from flashvideo.layout import KEY, UNKNOWN
from flashvideo.pipeline import _generator, child_seed
from flashvideo.sampler import SamplingSettings

SEEN, HELD, SEEDS = 45, 15, 2
TEMPERATURES = (0.4, 0.6, 1.0)


def loglik(pipe, text, codes):
    """Log-likelihood (n,) of first frames (codes (n, L)) under the prompt `text`, in one parallel pass."""
    h = pipe.layout.header_len
    tokens = torch.cat([pipe.layout.header(KEY, text, 1)[None].repeat(len(codes), 1), codes], 1)
    with torch.no_grad():
        logits, _ = pipe.model(tokens)
    return logits[:, h - 1:-1].float().log_softmax(-1).gather(-1, codes[..., None])[..., 0].sum(1)


def shape_read(pipe, colour, motion, codes):
    """The shape the model itself reads in each frame: the shape word under whose prompt (same colour and motion) the
    frame is likeliest (Bayes with equal priors)."""
    scores = torch.stack([loglik(pipe, pipe.encode_prompt(shapes.make_prompt(colour, s, motion)), codes)
                          for s in shapes.SHAPES])
    return [shapes.SHAPES[i] for i in scores.argmax(0).tolist()]


def first_frames(pipe, text, seed, n, sampling):
    """n first frames for one prompt (codes (n, L)) and their log-likelihood under the prompted model (n,)."""
    L, G = pipe.layout, pipe.config.grid
    unknown = torch.full((G * G,), UNKNOWN)
    neg = pipe._guidance_text(sampling, None)              # the twins' text, as the pipeline's (None: unguided)
    plan = torch.cat([L.header(KEY, text, 1), unknown])[None].repeat(n, 1)
    twin = None if neg is None else torch.cat([L.header(KEY, neg, 1), unknown])[None].repeat(n, 1)
    dec = pipe._decoder([_generator(child_seed(seed, 0, j)) for j in range(n)], sampling, None)
    codes = dec.run(plan, twin)[:, L.header_len:]
    return codes, loglik(pipe, text, codes)


def prompts():
    """(seen?, seed, colour, shape, motion): the eval's seen and held-out combinations, SEEDS seeds each."""
    for seen, combos in ((True, spread(shapes.TRAIN_COMBOS, SEEN)), (False, spread(shapes.HELDOUT_COMBOS, HELD))):
        for seed in range(SEEDS):
            for i, (colour, shape, motion) in enumerate(combos):
                yield seen, seed * 100 + i, colour, shape, motion


def probe(pipe, sampling, candidates, read_shapes=False):
    """Per prompt: (seen?, first candidate right, likeliest right, any right, first touches an edge); with
    read_shapes also (the model reads the ground truth's shape right, the first candidate it reads as the prompt's
    shape is right)."""
    rows = []
    for seen, seed, colour, shape, motion in prompts():
        codes, lik = first_frames(pipe, pipe.encode_prompt(shapes.make_prompt(colour, shape, motion)), seed,
                                  candidates, sampling)
        frames = pipe.tokenizer.decode_frames(codes.view(len(codes), pipe.config.grid, pipe.config.grid))
        m = shapes.measure(frames)
        right = [s == shape and c == colour for s, c in zip(m["shapes"], m["colours"])]
        obj = abs(frames[0].astype(int) - frames[0].reshape(-1, 3).mean(0)).sum(-1) > 60   # far from the mean colour
        edge = bool(obj[0].any() or obj[-1].any() or obj[:, 0].any() or obj[:, -1].any())
        row = [seen, right[0], right[int(lik.argmax())], any(right), edge]
        if read_shapes:  # the model's own reading of the ground-truth first frame, and the candidate it reads as `shape`
            truth = pipe.tokenizer.encode_frames(shapes.render(colour, shape, motion, seed, [0.0])).reshape(1, -1)
            reads = shape_read(pipe, colour, motion, codes)
            row += [shape_read(pipe, colour, motion, truth)[0] == shape,
                    right[reads.index(shape)] if shape in reads else right[0]]
        rows.append(tuple(row))
    return rows


def per_key_frame(pipe, key_frames, seeds=4):
    """For each of the first `key_frames` key frames of a video (default sampling, no lead-in: key frame 1 is drawn
    from the prompt alone): (seen, held out) share right."""
    right = [[[], []] for _ in range(key_frames)]
    for seen, seed, colour, shape, motion in prompts():
        for rep in range(seeds // SEEDS):
            text = pipe.encode_prompt(shapes.make_prompt(colour, shape, motion))
            codes = torch.stack(list(pipe.key_frame_codes(text, key_frames, seed + 1000 * rep, lead_in=0)))
            m = shapes.measure(pipe.tokenizer.decode_frames(codes))
            for k, (s, c) in enumerate(zip(m["shapes"], m["colours"])):
                right[k][0 if seen else 1].append(s == shape and c == colour)
    return [(sum(a) / len(a), sum(b) / len(b)) for a, b in right]


def share(rows, col):
    seen = [r[col] for r in rows if r[0]]
    held = [r[col] for r in rows if not r[0]]
    return f"{sum(seen) / len(seen):.0%} seen / {sum(held) / len(held):.0%} held out"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--key-frames", type=int, default=0, help="also: how often each of the first K key frames is right")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for model in args.models or [None]:
        pipe = FlashVideoPipeline.from_pretrained(model)
        aot.load_step(pipe.model)  # the built step if there is one (`python -m flashvideo.aot build`): faster
        default = SamplingSettings.resolve(None, pipe.config.sampling)
        rows = probe(pipe, default, args.candidates, read_shapes=True)
        print(f"== {model or 'shipped'}: temperature {default.temperature}, guidance {default.guidance_scale}, "
              f"{args.candidates} candidates a prompt")
        print(f"first candidate right: {share(rows, 1)}")
        for edge, where in ((True, "touching an edge"), (False, "inside the frame")):
            hits = [r[1] for r in rows if r[4] == edge]
            print(f"  first candidate {where}: {sum(hits)} of {len(hits)} right")
        print(f"likeliest candidate right: {share(rows, 2)}")
        print(f"any candidate right: {share(rows, 3)}")
        print(f"the model reads the ground-truth first frame's shape right: {share(rows, 5)}")
        print(f"the first candidate the model reads as the prompt's shape right: {share(rows, 6)}", flush=True)
        for t in TEMPERATURES:
            sampling = SamplingSettings.resolve(None, pipe.config.sampling, temperature=t)
            print(f"temperature {t}: first frame right {share(probe(pipe, sampling, 1), 1)}", flush=True)
        if args.key_frames:
            print("key frame k right (seen / held out): " + ", ".join(
                f"{k}: {a:.0%} / {b:.0%}" for k, (a, b) in enumerate(per_key_frame(pipe, args.key_frames), 1)))


if __name__ == "__main__":
    main()
