"""How many sequential model calls does a video take with each key-frame draft? Not a test (no assertions); the
README quotes its output. For 17 training prompts (every 8th), a 4-key-frame and a 16-key-frame video (3 in-between
frames, the model's default sampling) each, the mean of steps + drafted passes (a frame's stats): with key frames
drafted by `sampling.frame_draft` (the default: the last key frame, or the one before it moved by a patch) and with
the last key frame alone. The counts do not depend on the machine's load.

    python tests/draft_calls.py [MODEL]
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, aot, pipeline
from flashvideo.data import shapes

torch.set_num_threads(1)
pipe = FlashVideoPipeline.from_pretrained(sys.argv[1] if len(sys.argv) > 1 else None)
aot.load_step(pipe.model)
rules = {"frame_draft": pipeline.frame_draft, "last key frame": lambda frames: frames[-1] if frames else None}
for name, rule in rules.items():
    pipeline.frame_draft = rule
    for key_frames in (4, 16):
        calls = []
        for i, (c, s, m) in enumerate(shapes.TRAIN_COMBOS[::8]):
            for ev in pipe.stream(shapes.make_prompt(c, s, m), key_frames=key_frames, seed=i):
                pass
            calls.append(ev.stats["total_passes"] + ev.stats["total_steps"])
        print(f"{name}: {key_frames} key frames: {sum(calls) / len(calls):.1f} model calls a video ({len(calls)} videos)",
              flush=True)
