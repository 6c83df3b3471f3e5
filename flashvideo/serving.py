"""Batched serving: concurrent requests decoded together, frame by frame.

    server = serving.shared(pipe)                # one server per pipeline (or Server(pipe, max_rows=...))
    for ev in server.stream("a red circle moves right", seed=1, temperature=0.8):   # `pipe.stream`'s arguments
        ev.index, ev.image, ...                  # the FrameEvents `pipe.stream` yields, in the same order

One idea: requests are decoded frame by frame as one batch.

* Every request runs `FlashVideoPipeline.stream` unchanged, in a thread of its own, on a copy of the pipeline whose
  decoders are lanes (`_LaneDecoder`): a lane's plan (a frame to fill: header, known and unknown codes) or known
  span (prefill) waits for the batch. So each request keeps its own layout, region maps, seeded generators and
  sampling settings (prompt, seed, temperature, top-k, top-p, guidance, ρ): nothing of one request reaches another's
  rows.
* A batch runs when every admitted request is waiting: the waiting plans of equal length decode as one
  `sampling.Decoder` over all their rows (`Decoder.together`): known runs in one chunkwise pass, each sampled
  position one recurrent step, each row at its own position (per-row rotations), the codes of rows with the same
  sampling settings drawn in one `Sampler` call (each row from its own generator), guided rows beside their own
  twins; known spans of equal length are prefilled together likewise. The request whose arrival completes the batch
  runs it; there is no scheduler thread. A request's frames are drawn to images on a thread of the server's own, beside
  the next batch (on the other core), while the request goes on to its next frame.
* A request's thread decodes ahead of a slow consumer: its frames wait in its own queue (one video at most).
* A request joins at its next frame (its first: once admitted) and leaves when its video is done, when it fails,
  or when its consumer closes the generator (Gradio's Stop; the request stops at its next frame); the others carry
  on. Room is bounded: at most `max_rows` rows at once, a request counting the most rows it ever decodes together;
  later requests wait in line, first come first served.
* The same frames as decoding alone: a row's arithmetic never mixes with another row's, so a request's codes are
  those of `pipe.stream` with the same seed and settings. A lone request runs exactly the solo computation on one
  thread (`pipe.threads = 1`; the pipeline's default of two threads may split a product's sums otherwise); in a
  larger batch the matrix kernels may round differently (one row is a matrix-vector product, several rows a
  matrix product; the same holds for the pipeline's own batched pairs), and a row that knows its token where another
  samples takes a recurrent step instead of the chunkwise pass; either changes a code only if a draw falls within
  float rounding of the boundary between two codes.
"""
from __future__ import annotations

import copy
import inspect
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from .pipeline import FlashVideoPipeline, FrameEvent
from .sampler import SamplingSettings
from .sampling import Decoder, torch_threads

# Rows decoded together at most (a guided row counts twice: it has an unconditional twin). A default video with the
# shipped model's guidance takes 6 rows while interpolating (3 key-frame pairs, each with its twin), so 192 rows
# admit 32 such videos at once; at the default size a row's state is 147 KB, so the batch holds at most 28 MB of
# state.
MAX_ROWS = 192


class Cancelled(Exception):
    """Raised inside a request's decoding thread once its consumer has gone."""


_DONE = object()


def _last(item) -> bool:
    """A request's last queue item: _DONE, or the exception its decoding raised."""
    return item is _DONE or isinstance(item, BaseException)


@dataclass(eq=False)
class _Request:
    rows: int                        # the most rows it decodes at once: its share of max_rows
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # FrameEvents, then _DONE or an exception
    admitted: bool = False
    cancelled: bool = False
    ask: tuple | None = None         # (its decoder, the model's batch (rows, n), sample?) waiting for the batch
    answer: object = None            # the completed tokens from the batch, or the exception the batch raised
    answered: threading.Event = field(default_factory=threading.Event)  # wakes this request alone


class _LaneDecoder(Decoder):
    """A request's decoder: its plans and known spans are decoded in the server's next batch."""

    def __init__(self, server: "Server", request: _Request, *args, **kwargs):
        self.server, self.request = server, request
        super().__init__(*args, **kwargs)

    def _decode(self, tokens, sample):
        return self.server._ask(self.request, (self, tokens, sample))


class _Images:
    """Frames drawn to images on a thread of their own: a request's thread hands each event over with its frame's
    codes (a lane's `decode_frame` keeps the codes) and goes on to its next frame at once, so the next batch need not
    wait for every request's image (the convolutions release the interpreter lock: they run beside the batch, on the
    other core). The thread draws the image, one frame a call as `pipe.decode_frame` draws it alone (the same
    pixels), and puts the event in the request's queue; the request's last item goes the same way, so the consumer
    gets everything in order. Nothing more is drawn or put for a cancelled request."""

    def __init__(self, pipe: FlashVideoPipeline):
        self.pipe = pipe
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="flashvideo-images")

    def put(self, request: "_Request", item) -> None:
        """Hand `item` (a FrameEvent holding its codes, or the request's last item) to the request's consumer."""
        self.pool.submit(self._put, request, item)

    def _put(self, request: "_Request", item) -> None:
        if request.cancelled:
            return
        if isinstance(item, FrameEvent) and isinstance(item.image, torch.Tensor):  # (an image already drawn passes)
            try:
                item.image = self.pipe.decode_frame(item.image)
            except BaseException as e:  # the consumer raises it, as an error of the decoding
                item = e
        request.events.put(item)


class Server:
    """Decodes the requests for one pipeline together (see the module docstring). Thread-safe."""

    def __init__(self, pipe: FlashVideoPipeline, max_rows: int = MAX_ROWS):
        self.pipe, self.model, self.max_rows = pipe, pipe.model, max_rows
        self.lock = threading.Condition()
        # Held by the request thread doing its own work between batches (region maps, plans, events; its images are
        # drawn by `images`): one at a time, instead of dozens of threads of small torch ops each dropping and retaking
        # the interpreter lock (16 users' wall time fell to 0.66x when this came in).
        self.turn = threading.Lock()
        self.line: deque = deque()   # requests waiting for room, oldest first
        self.rows = 0                # rows of the admitted requests
        self.running = 0             # admitted requests that are not waiting for the batch
        self.waiting: list = []      # requests waiting for the next batch
        self.batches = 0             # batched model calls run (recurrent steps, drafted passes) ...
        self.rows_stepped = 0        # ... and the rows they stepped (mean batch: rows_stepped / batches)
        self.decode_seconds = 0.0    # time in batched decoding (steps, prefills, sampling)
        self.images = _Images(pipe)

    def stream(self, *args, **kwargs):
        """`FlashVideoPipeline.stream`'s arguments and events, decoded in batches with the other requests. Waits for
        room first; closing the generator (or an exception in the loop that reads it) cancels the request."""
        for ready in self.stream_ready(*args, **kwargs):
            yield from ready

    def stream_ready(self, *args, pace: float = 0.0, **kwargs):
        """As `stream`, but yields lists: every event decoded by the time the consumer asks (at least one). A
        consumer slower than the decoding (a web page's updates) then sends one update where frames came together,
        e.g. the in-between frames of all key-frame pairs, which one batch decodes at once. With `pace` (seconds),
        lists come at most that often: events arriving sooner after the last list wait, at most `pace`, to join
        the next (the last frame never waits)."""
        request = _Request(self._rows(*args, **kwargs))
        try:
            self._admit(request)
            threading.Thread(target=self._decode, args=(request, args, kwargs), daemon=True,
                             name="flashvideo-request").start()
            sent = -float("inf")
            while True:
                ready = [request.events.get()]
                while not _last(ready[-1]):
                    try:
                        ready.append(request.events.get(timeout=max(0.0, sent + pace - time.perf_counter())))
                    except queue.Empty:
                        break
                end = ready.pop() if _last(ready[-1]) else None
                if ready:
                    sent = time.perf_counter()
                    yield ready
                if end is _DONE:
                    return
                if end is not None:
                    raise end
        finally:
            with self.lock:
                request.cancelled = True
                if not request.admitted:
                    self.line.remove(request)

    def _rows(self, *args, **kwargs) -> int:
        """The most rows a request decodes at once: one for its key frames (one per candidate for the first,
        `flashvideo.rerank`), one per key-frame pair while interpolating (all pairs in one batch), each twice where it
        is guided (a guided row has an unconditional twin; in-between frames are guided only if the settings'
        `guide_interp` is on).
        Arguments `pipe.stream` refuses count one row: the request's thread then raises `pipe.stream`'s error."""
        try:
            bound = inspect.signature(FlashVideoPipeline.stream).bind(self.pipe, *args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            pairs = int(a["key_frames"]) - 1 if a["interp_frames"] and a["batch_pairs"] else 1
            sampling = SamplingSettings.resolve(a["sampling"], self.pipe.config.sampling,
                                                guidance_scale=a["guidance_scale"])
        except (TypeError, ValueError):
            return 1
        key_rows = (2 if sampling.guided else 1) * sampling.first_candidates  # (the first key frame's candidates)
        pair_rows = max(1, pairs) * (2 if sampling.for_interp().guided else 1)
        return max(key_rows, pair_rows)

    def _admit(self, request: _Request) -> None:
        """Wait in line until the request's rows fit beside the others' (alone, it always fits)."""
        with self.lock:
            self.line.append(request)
            self._let_in()
            while not request.admitted:
                self.lock.wait()

    def _let_in(self) -> None:  # lock held
        while self.line and (self.rows == 0 or self.rows + self.line[0].rows <= self.max_rows):
            request = self.line.popleft()
            request.admitted = True
            self.rows += request.rows
        self.lock.notify_all()

    def _decode(self, request: _Request, args, kwargs) -> None:
        """The request's thread: `pipe.stream` on a lane, its events handed to the consumer."""
        lane = copy.copy(self.pipe)
        lane.decode_frame = lambda codes: codes   # the image thread draws it (`_Images`)
        lane._decoder = lambda generators, sampling, counts: _LaneDecoder(
            self, request, self.model, generators, sampling, counts=counts, chunked=self.pipe.chunked_prefill,
            draft_len=self.pipe.draft_len)
        with self.lock:
            self.running += 1
        self.turn.acquire()
        try:
            for ev in lane.stream(*args, **kwargs):
                if request.cancelled:
                    raise Cancelled
                self.images.put(request, ev)
            self.images.put(request, _DONE)
        except Cancelled:
            pass
        except BaseException as e:  # the consumer raises it; the other requests never see it
            self.images.put(request, e)
        finally:
            self.turn.release()
            with self.lock:
                self.running -= 1
                self.rows -= request.rows
                self._let_in()
                self._run_if_ready()

    def _ask(self, request: _Request, ask: tuple):
        """A lane's plan or span: wait for the batch that decodes it (run by whichever request completes it)."""
        self.turn.release()
        try:
            with self.lock:
                if request.cancelled:
                    raise Cancelled
                request.ask = ask
                self.waiting.append(request)
                self.running -= 1
                self._run_if_ready()
            request.answered.wait()
        finally:
            self.turn.acquire()
        request.answered.clear()
        answer, request.answer = request.answer, None
        if isinstance(answer, BaseException):
            raise RuntimeError("the batched decoding failed") from answer
        return answer

    def _run_if_ready(self) -> None:  # lock held
        """Once every admitted request waits: decode them all, and wake them."""
        if self.running or not self.waiting:
            return
        batch, self.waiting = self.waiting, []
        self.running += len(batch)
        try:
            answers = self._decode_together([r.ask for r in batch])
        except Exception as e:  # the model failed: every request of this batch gets the error
            answers = [e] * len(batch)
        for r, answer in zip(batch, answers):
            r.ask, r.answer = None, answer
            r.answered.set()

    def _decode_together(self, asks: list) -> list:
        """Decode every ask (decoder, tokens (rows, n), sample?): asks of one kind and length as one decoder over
        all their rows. Per ask, its completed tokens (None for a span)."""
        answers, groups = [None] * len(asks), {}
        for k, (_, tokens, sample) in enumerate(asks):
            groups.setdefault((sample, tokens.shape[1]), []).append(k)
        t0 = time.perf_counter()
        try:
            # One thread, even for a lone request: on two, a lone default video took 0.83-1.04 s against 0.26-0.28 s
            # on one, while `pipe.stream` on two threads took 0.25 s (a one-off A/B on the shipped model; why the
            # request's thread fares so much worse on two was not pinned down)
            with torch_threads(1):
                for (sample, _), ks in groups.items():
                    decoders, tokens = [asks[k][0] for k in ks], torch.cat([asks[k][1] for k in ks])
                    dec = decoders[0] if len(ks) == 1 else Decoder.together(decoders)  # alone: the solo computation
                    if sample:
                        out = dec._run(tokens).split([len(asks[k][1]) for k in ks])
                        self.batches, self.rows_stepped = self.batches + dec.calls, self.rows_stepped + dec.calls * len(tokens)
                        for k, rows in zip(ks, out):
                            answers[k] = rows
                    else:
                        dec._feed(tokens)
                    if len(ks) > 1:
                        dec.scatter(decoders)
            return answers
        finally:
            self.decode_seconds += time.perf_counter() - t0


_shared_lock = threading.Lock()


def shared(pipe: FlashVideoPipeline) -> Server:
    """The pipeline's own server, made on first use: every caller that goes through it decodes together."""
    with _shared_lock:
        if "_server" not in vars(pipe):
            pipe._server = Server(pipe)
        return pipe._server
