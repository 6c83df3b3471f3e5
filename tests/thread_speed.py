"""Does a second thread help the default video? Not a test (no assertions); the README quotes its output.
The default video ("a red circle moves right", the shipped model and its built step and pass), 7 interleaved runs
of each: the drafted passes on 1 or 2 threads (`Decoder.threads`), and the frames' images decoded on 1 or 2
threads; medians of the whole video and of its first frame. Run it on an idle machine: with the other core busy,
two threads wait on each other.

    python tests/thread_speed.py
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashvideo import FlashVideoPipeline, aot
from flashvideo.sampling import torch_threads

pipe = FlashVideoPipeline.from_pretrained()
print("built step and pass:", aot.load_step(pipe.model))
make_decoder, decode_frames = pipe._decoder, pipe.tokenizer.decode_frames


def use(decoding, images):
    def decoder(*args, **kwargs):
        dec = make_decoder(*args, **kwargs)
        dec.threads = decoding
        return dec

    def frames(codes):
        with torch_threads(images):
            return decode_frames(codes)

    pipe._decoder, pipe.tokenizer.decode_frames = decoder, frames


times = {}
for rep in range(7):
    for setting in ((1, 1), (1, 2), (2, 1), (2, 2)):
        use(*setting)
        t0, first = time.perf_counter(), None
        for ev in pipe.stream("a red circle moves right", seed=rep):
            first = first or time.perf_counter() - t0
        times.setdefault(setting, []).append((time.perf_counter() - t0, first))
for (decoding, images), runs in times.items():
    print(f"passes on {decoding} thread(s), images on {images}: video {statistics.median(t for t, _ in runs) * 1e3:.0f} ms,"
          f" first frame {statistics.median(f for _, f in runs) * 1e3:.0f} ms")
