"""Batched serving: the recurrent steps of concurrent requests decoded as one batch.

    server = serving.shared(pipe)                # one server per pipeline (or Server(pipe, max_rows=...))
    for ev in server.stream("a red circle moves right", seed=1, temperature=0.8):   # `pipe.stream`'s arguments
        ev.index, ev.image, ...                  # the FrameEvents `pipe.stream` yields, in the same order

One idea: requests share the recurrent step and nothing else.

* Every request runs `FlashVideoPipeline.stream` unchanged, in a thread of its own, on a copy of the pipeline
  whose model is a `_Lane`. The lane's prefill (text headers, given frames, runs of known tokens: the chunkwise
  form) runs at once on the request's own state; its step waits for the batch. So each request keeps its own
  layout, region maps, seeded generators and sampling settings (prompt, seed, temperature, top-k, top-p,
  guidance, ρ): nothing of one request reaches another's rows.
* A batch runs when every admitted request is waiting for a step: one `RetNet.step` over all their rows, each
  row at its own position (rows of different videos sit at different positions: per-row rotations, which the
  built step (`flashvideo.aot`) and the eager step take; torch.compile's step only runs rows that share one
  position), the states concatenated and split again. The request whose arrival completes the batch runs it;
  there is no scheduler thread.
* A request's thread decodes ahead of a slow consumer: its frames wait in its own queue (one video at most).
* A request joins at its first frame (once its header is prefilled) and leaves when its video is done, when it
  fails, or when its consumer closes the generator (Gradio's Stop); the others carry on. Room is bounded: at
  most `max_rows` rows at once, a request counting the most rows it ever decodes together; later requests wait
  in line, first come first served.
* The same frames as decoding alone: a row's arithmetic never mixes with another row's, so a request's codes are
  those of `pipe.stream` with the same seed and settings. A lone request runs exactly the solo computation; in a
  larger batch the matrix kernels may round differently (one row is a matrix-vector product, several rows a
  matrix product; the same holds for the pipeline's own batched pairs), which changes a code only if a draw falls
  within float rounding of the boundary between two codes.
"""
from __future__ import annotations

import copy
import inspect
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from .pipeline import FlashVideoPipeline
from .sampler import SamplingSettings

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
    ask: tuple | None = None         # (tokens (b,), state, position) waiting for the batch
    answer: object = None            # (logits, state) from the batch, or the exception the batch raised
    answered: threading.Event = field(default_factory=threading.Event)  # wakes this request alone


class _Lane:
    """A request's view of the model: all of it is the model's own, except that a step waits for the batch."""

    def __init__(self, server: "Server", request: _Request):
        self.server, self.request = server, request

    def __getattr__(self, name):
        return getattr(self.server.model, name)

    def step(self, idx, state, offset):
        return self.server._step(self.request, idx, state, offset)


class Server:
    """Decodes the requests for one pipeline together (see the module docstring). Thread-safe."""

    def __init__(self, pipe: FlashVideoPipeline, max_rows: int = MAX_ROWS):
        self.pipe, self.model, self.max_rows = pipe, pipe.model, max_rows
        self.lock = threading.Condition()
        # Held by the request thread doing its own work between steps (sampling, prefill, VQ decoding, events): one
        # at a time, instead of dozens of threads of small torch ops each dropping and retaking the interpreter
        # lock. The work is the same; 16 users' wall time fell to 0.66x (9.0 -> 5.9 s, interleaved against the code
        # before).
        self.turn = threading.Lock()
        self.line: deque = deque()   # requests waiting for room, oldest first
        self.rows = 0                # rows of the admitted requests
        self.running = 0             # admitted requests that are not waiting for a step
        self.waiting: list = []      # requests waiting for the next batch
        self.batches = 0             # batched steps run ...
        self.rows_stepped = 0        # ... and the rows they stepped (mean batch: rows_stepped / batches)
        self.step_seconds = 0.0      # ... and the time they took

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
        """The most rows a request decodes at once: one for its key frames, one per key-frame pair while
        interpolating (all pairs in one batch), each twice where it is guided (a guided row has an unconditional
        twin; in-between frames are guided only if the settings' `guide_interp` is on).
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
        key_rows = 2 if sampling.guided else 1                                  # one row, and its twin if guided
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
        lane.model = _Lane(self, request)
        with self.lock:
            self.running += 1
        self.turn.acquire()
        try:
            for ev in lane.stream(*args, **kwargs):
                if request.cancelled:
                    raise Cancelled
                request.events.put(ev)
            request.events.put(_DONE)
        except Cancelled:
            pass
        except BaseException as e:  # the consumer raises it; the other requests never see it
            request.events.put(e)
        finally:
            self.turn.release()
            with self.lock:
                self.running -= 1
                self.rows -= request.rows
                self._let_in()
                self._run_if_ready()

    def _step(self, request: _Request, idx, state, offset):
        if state is None:  # nothing prefilled yet (token-by-token benchmarks only): no state to batch
            return self.model.step(idx, state, offset)
        self.turn.release()
        try:
            with self.lock:
                if request.cancelled:
                    raise Cancelled
                request.ask = (idx, state, offset)
                self.waiting.append(request)
                self.running -= 1
                self._run_if_ready()
            request.answered.wait()
        finally:
            self.turn.acquire()
        request.answered.clear()
        answer, request.answer = request.answer, None
        if isinstance(answer, BaseException):
            raise RuntimeError("the batched step failed") from answer
        return answer

    def _run_if_ready(self) -> None:  # lock held
        """Once every admitted request waits for a step: step them all, and wake them."""
        if self.running or not self.waiting:
            return
        batch, self.waiting = self.waiting, []
        self.running += len(batch)
        try:
            answers = self._batched_step([r.ask for r in batch])
        except Exception as e:  # the model failed: every request of this batch gets the error
            answers = [e] * len(batch)
        for r, answer in zip(batch, answers):
            r.ask, r.answer = None, answer
            r.answered.set()

    def _batched_step(self, asks: list) -> list:
        """One model step over the rows of every ask (tokens (b,), state, position) -> per ask (logits, state)."""
        sizes = [len(idx) for idx, _, _ in asks]
        self.batches, self.rows_stepped = self.batches + 1, self.rows_stepped + sum(sizes)
        t0 = time.perf_counter()
        try:
            if len(asks) == 1:  # alone: exactly the solo step
                return [self.model.step(*asks[0])]
            positions = [pos for (_, _, pos), n in zip(asks, sizes) for _ in range(n)]
            logits, state = self.model.step(torch.cat([idx for idx, _, _ in asks]),
                                            [torch.cat(layer) for layer in zip(*(s for _, s, _ in asks))],
                                            positions[0] if len(set(positions)) == 1 else positions)
            states = zip(*(layer.split(sizes) for layer in state))
            return [(lg, list(s)) for lg, s in zip(logits.split(sizes), states)]
        finally:
            self.step_seconds += time.perf_counter() - t0


_shared_lock = threading.Lock()


def shared(pipe: FlashVideoPipeline) -> Server:
    """The pipeline's own server, made on first use: every caller that goes through it decodes together."""
    with _shared_lock:
        if "_server" not in vars(pipe):
            pipe._server = Server(pipe)
        return pipe._server
