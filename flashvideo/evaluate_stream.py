"""Eval of endless streams (`flashvideo.endless`): does quality hold with length, and do prompt switches work?

* length -- 64-key-frame streams: the eval's measures (`evaluate.video_scores`) on the first and the last
  8 key frames. Serial numbers go round four times in such a stream (16 per cycle), so this is where a
  model tied to its trained length would show it.
* switches -- streams that change the motion after key frame `SWITCH_AT` (e.g. "moves right" -> "grows",
  same object): does the motion follow the new prompt within one key frame (the first or second step
  under the new prompt covers at least `FORWARD` of the world's step), and is there no jump at the switch
  (the object's travel and size change at that step are at most `JUMP` times the world's step, its area
  within a factor 2 unless its size wrapped round the world's range, as a growing object's does at 32 px)?
* late switches -- the same switch after `LATE_AT` key frames, past the 16 a model is trained on (serial
  numbers have cycled), then `LATE_AFTER` more key frames: does the motion follow within one key frame, and
  does the object stay (present in every key frame after the switch)?
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from .data import shapes
from .endless import EndlessStream
from .evaluate import FORWARD, first_and_last, spread

SWITCH_AT = 4      # key frames under the first prompt
AFTER = 3          # key frames under the second
JUMP = 2.0         # a step that travels (or resizes) more than this many world steps is a jump
LATE_AT = 80       # key frames before a late switch (serial numbers have gone round five times)
LATE_AFTER = 48    # key frames watched after it


def _key_frames(stream: EndlessStream, n: int) -> list[np.ndarray]:
    return [ev.image for ev in stream.frames(n)]


def length_scores(pipe, combos, seed: int = 0, key_frames: int = 64, window: int = 8, **sampling) -> dict:
    def make(i, prompt):
        stream = EndlessStream(pipe, prompt, interp_frames=0, seed=seed + i, batch_pairs=8, **sampling)
        return np.stack(_key_frames(stream, key_frames))

    return first_and_last(make, combos, key_frames, window, f"stream of {key_frames}")


def switch_result(frames: np.ndarray, new: str) -> tuple[bool, bool]:
    """(follows, jump) for key frames whose prompt changes to motion `new` from frame SWITCH_AT on."""
    m = shapes.measure(frames)
    size = frames.shape[1]
    k = size / 64
    st, j = shapes.steps(m, size), SWITCH_AT - 1
    after = np.nan_to_num(shapes.progress(st, new)[j:j + 2]) / k          # first two steps under `new`
    travel, ds = np.hypot(st["dx"][j], st["dy"][j]) / k, abs(st["ds"][j]) / k
    area = m["area"][j:j + 2]
    wrapped = abs(m["size"][j + 1] - m["size"][j]) / k > ds + 1e-6                # the world's size wrap
    jump = (not np.isfinite(travel) or travel > JUMP * shapes.SPEED or ds > JUMP * shapes.GROWTH
            or area.min() == 0 or (area.max() / area.min() > 2.0 and not wrapped))
    return bool((after >= FORWARD * shapes.rate(new)).any()), bool(jump)


def _switched(pipe, n: int, seed: int, at: int, after: int, desc: str, **sampling):
    """For `n` trained objects: (new motion, key frames before, key frames after) of a stream whose motion
    switches after `at` key frames, watched for `after` more."""
    for i, (c, s, m) in enumerate(tqdm(spread(shapes.TRAIN_COMBOS, n), desc=desc, leave=False)):
        new = new_motion(c, s, m, i)
        stream = EndlessStream(pipe, shapes.make_prompt(c, s, m), interp_frames=0, seed=seed + i, batch_pairs=1,
                               **sampling)
        before = _key_frames(stream, at)
        stream.prompt = shapes.make_prompt(c, s, new)
        yield new, before, _key_frames(stream, after)


def switch_scores(pipe, n: int = 24, seed: int = 0, **sampling) -> dict:
    """Switch the motion of `n` trained objects after `SWITCH_AT` key frames; score the switches."""
    results = [switch_result(np.stack(before + after), new)
               for new, before, after in _switched(pipe, n, seed, SWITCH_AT, AFTER, "prompt switches", **sampling)]
    return {"switches": n, "follow_within_one": sum(f for f, _ in results) / n, "jumps": sum(j for _, j in results) / n,
            "clean": sum(f and not j for f, j in results) / n}  # the target's measure: follows, and no jump


def late_switch_scores(pipe, n: int = 8, seed: int = 0, **sampling) -> dict:
    """Switch the motion of `n` trained objects after `LATE_AT` key frames and watch `LATE_AFTER` more."""
    follows = kept = 0
    for new, before, after in _switched(pipe, n, seed, LATE_AT, LATE_AFTER, "late prompt switches", **sampling):
        follows += switch_result(np.stack(before[-SWITCH_AT:] + after[:AFTER]), new)[0]
        kept += bool((shapes.measure(np.stack(after))["area"] > 0).all())
    return {"switches": n, "at": LATE_AT, "after": LATE_AFTER, "follow_within_one": follows / n, "object_kept": kept / n}


def new_motion(colour: str, shape: str, motion: str, i: int) -> str:
    """The i-th other motion trained for this object (a switch never leads into a held-out combination)."""
    others = [o for c, s, o in shapes.TRAIN_COMBOS if (c, s) == (colour, shape) and o != motion]
    return others[i % len(others)]


def evaluate_streams(pipe, *, long: int = 4, switches: int = 24, seed: int = 0, **sampling) -> dict:
    return {"length": length_scores(pipe, spread(shapes.ALL_COMBOS, long), seed, **sampling),
            "switches": switch_scores(pipe, switches, seed, **sampling),
            "late_switches": late_switch_scores(pipe, max(1, switches // 6), seed, **sampling)}


def markdown_rows(r: dict) -> list[tuple[str, str]]:
    pct = "{:.0%}".format
    lg, sw = r["length"], r["switches"]
    a, b = lg["first"], lg["last"]
    rows = [
        (f"{lg['key_frames']}-key-frame streams, first vs last {lg['window']} key frames: colour / shape / motion",
         f"{pct(a['colour'])} / {pct(a['shape'])} / {pct(a['motion'])} vs {pct(b['colour'])} / {pct(b['shape'])} / {pct(b['motion'])}"),
        (f"{lg['key_frames']}-key-frame streams, first vs last {lg['window']} key frames: steps forward / flicker",
         f"{pct(a['forward_steps'])} / {pct(a['flicker_frames'])} vs {pct(b['forward_steps'])} / {pct(b['flicker_frames'])}"),
        (f"prompt switches ({sw['switches']}): motion follows within one key frame / jump at the switch / both right",
         f"{pct(sw['follow_within_one'])} / {pct(sw['jumps'])} / {pct(sw['clean'])}"),
    ]
    if "late_switches" in r:
        la = r["late_switches"]
        rows.append((f"late switches ({la['switches']}, after key frame {la['at']}): motion follows within one key frame / "
                     f"object kept in all {la['after']} key frames after", f"{pct(la['follow_within_one'])} / {pct(la['object_kept'])}"))
    return rows
