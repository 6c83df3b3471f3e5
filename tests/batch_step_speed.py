"""The recurrent step of the shipped model at 1 to 64 rows (each row at its own position, as `flashvideo.serving`
steps them), one thread, the built step: the best of 3 means of 100 steps each. A script behind a README figure,
not a test.

    python tests/batch_step_speed.py [MODEL_FOLDER]      # default: checkpoints/shapes
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, aot  # noqa: E402

ROWS = (1, 4, 8, 16, 24, 38, 64)


def main(folder: str) -> None:
    torch.set_num_threads(1)
    model = FlashVideoPipeline.from_pretrained(folder).model
    aot.load_step(model)
    c = model.config
    dh = c.d_model // c.n_heads
    print(f"{folder}, step {model.step_backend}, 1 thread")
    for rows in ROWS:
        state = [torch.zeros(rows, c.n_heads, dh, dh) for _ in model.blocks]
        idx, positions = torch.zeros(rows, dtype=torch.long), [100 + r for r in range(rows)]
        for _ in range(20):
            model.step(idx, state, positions)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(100):
                model.step(idx, state, positions)
            best = min(best, (time.perf_counter() - t0) / 100)
        print(f"{rows} rows: {best * 1e3:.2f} ms a step, {best * 1e3 / rows:.3f} ms a row")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/shapes")
