"""Endless video: key frames (with their in-between frames) for as long as the caller keeps reading,
with prompt changes mid-stream, from a state of fixed size.

    stream = EndlessStream(pipe, "a red circle moves right", interp_frames=3, seed=0)
    for ev in stream.frames(12):        # 12 key frames and the frames between them, in time order
        ...
    stream.prompt = "a red circle moves down"   # from the next key frame on
    for ev in stream.frames(12): ...
    stream.save("video.state")          # and later: EndlessStream.load(pipe, "video.state")

How it stays constant in time and memory:
* Key frames run through one `Decoder` whose RetNet state (per layer (B, H, dh, dh)) is all that is
  kept of the past; nothing is ever re-read. Serial numbers cycle (`Layout.key_sn`): key frame k
  has SN ((k-1) mod n_sn) + 1, which the model was trained on (sequences that start anywhere in the
  cycle); retention has forgotten a frame long before its serial number comes round again.
* The prompt is repeated in every frame header, so a new prompt simply appears in the next header.
* In-between frames are made by the pipeline's redundant-free interpolation, in batches of up to
  `batch_pairs` ready key-frame pairs that share a prompt. Each pair's randomness comes from its
  global pair number, so how pairs are batched, or where a stream was saved and resumed, never
  changes a frame: extending a saved stream gives the frames of one uninterrupted stream.
* Only the last key frame's codes are kept between batches; frames are handed out, not stored.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from . import rerank
from .aot import model_key
from .config import without_sampling
from .layout import KEY, UNKNOWN
from .pipeline import FrameEvent, _generator, child_seed
from .regions import INHERITABLE, region_counts, region_labels
from .sampler import SamplingSettings
from .sampling import frame_draft
from .timeline import Timeline

MAX_GIVEN_FRAMES = 64            # a clip to continue: at most this many frames are read
STATE_FORMAT = "flashvideo-endless-1"


class EndlessStream:
    """A video without a fixed length. See the module docstring."""

    def __init__(self, pipe, prompt: str, *, interp_frames: int = 3, inherit_ratio: float = 0.2, seed: int = 0,
                 batch_pairs: int = 4, negative_prompt: str | None = None, sampling: SamplingSettings | None = None,
                 **sampling_keywords):
        self.pipe, self.layout, self.config = pipe, pipe.layout, pipe.config
        self.sampling = pipe.check_settings(2, interp_frames, inherit_ratio, seed=seed, sampling=sampling,
                                            negative_prompt=negative_prompt, **sampling_keywords)
        if not isinstance(batch_pairs, int) or isinstance(batch_pairs, bool) or not 1 <= batch_pairs <= 64:
            raise ValueError(f"batch_pairs must be an integer in 1..64, got {batch_pairs!r}")
        self.interp_frames, self.inherit_ratio, self.seed, self.batch_pairs = interp_frames, inherit_ratio, seed, batch_pairs
        self.negative_prompt = negative_prompt
        self._negative = pipe._guidance_text(self.sampling, pipe.encode_negative(negative_prompt, self.sampling))
        self.counts = {"steps": 0, "chunks": 0, "sampled": 0, "fed": 0, "passes": 0}
        self._dec = pipe._decoder([_generator(child_seed(seed, 0))], self.sampling, self.counts)
        self._key_frames = 0                               # key frames so far (given ones included)
        self._lead = 0                                     # lead-in key frames drawn before them (`_key_frame`)
        self._t0 = time.perf_counter()
        self._last_key: torch.Tensor | None = None        # the key frame the next in-between frames start from
        self._before: list = []                            # the last three key frames: the next one's draft
        self.prompt = prompt

    # ---- the prompt --------------------------------------------------------------------------
    @property
    def prompt(self) -> str:
        return self._prompt

    @prompt.setter
    def prompt(self, prompt: str) -> None:
        """Change the prompt from the next key frame on (ValueError for an empty or unknown prompt;
        the stream and its frames so far are kept)."""
        self._text = self.pipe.encode_prompt(prompt)
        self._prompt = prompt

    @property
    def key_frames(self) -> int:
        return self._key_frames

    @property
    def timeline(self) -> Timeline:
        """The timeline of the video so far."""
        return Timeline(max(1, self._key_frames), self.interp_frames)

    # ---- feeding a given clip ------------------------------------------------------------------
    @torch.no_grad()
    def feed_frames(self, frames) -> list[FrameEvent]:
        """Continue a given clip: its frames (uint8 (T, H, W, 3), or a list of images) become the next
        key frames, encoded and fed in one chunkwise pass. Returns their events (kind "given")."""
        frames = list(frames)
        if not 1 <= len(frames) <= MAX_GIVEN_FRAMES:
            raise ValueError(f"a clip to continue needs 1..{MAX_GIVEN_FRAMES} frames, got {len(frames)}")
        codes = torch.stack([self.pipe.encode_image(f) for f in frames])       # (T, grid, grid)
        L = self.layout
        first = self._key_frames + 1
        sn = first + self._lead
        tokens = L.key_sequence(self._text, codes, first=sn)[None]              # (1, T * frame_len)
        twin = None if self._negative is None else L.key_sequence(self._negative, codes, first=sn)[None]
        self._dec.feed(tokens, twin)
        events = []
        for i, c in enumerate(codes):
            events.append(self._event(self.timeline_index(first + i), "given", c))
        self._key_frames += len(codes)
        self._last_key, self._before = codes[-1], (self._before + list(codes))[-3:]
        return events

    def timeline_index(self, key_number: int) -> int:
        """Time-order index of key frame `key_number` (1-based) in the whole stream."""
        return self.timeline.key_index(key_number - 1)

    # ---- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def frames(self, key_frames: int | None = None):
        """Yield FrameEvents in time order: `key_frames` more key frames (None: for as long as the caller
        reads), each preceded by the in-between frames that lead up to it."""
        if key_frames is not None and (not isinstance(key_frames, int) or isinstance(key_frames, bool) or key_frames < 0):
            raise ValueError(f"key_frames must be a non-negative integer or None, got {key_frames!r}")
        made = 0
        while key_frames is None or made < key_frames:
            n = self.batch_pairs if key_frames is None else min(self.batch_pairs, key_frames - made)
            yield from self._batch(n)
            made += n

    def _key_frame(self) -> torch.Tensor:
        L, G = self.layout, self.config.grid
        if self._key_frames == 0:  # a stream that starts by drawing: its lead-in key frames first, dropped
            self._lead = self.sampling.lead_in
            numbers = range(1, self._lead + 2)
        else:                      # this key frame's place in the serial-number cycle, after the lead-in
            numbers = [self._key_frames + 1 + self._lead]
        unknown = torch.full((G * G,), UNKNOWN)
        for sn in map(L.key_sn, numbers):
            plan = torch.cat([L.header(KEY, self._text, sn), unknown])[None]
            twin = None if self._negative is None else torch.cat([L.header(KEY, self._negative, sn), unknown])[None]
            if not self._before:  # drawn from the prompt alone: the likeliest of its candidates
                done = rerank.first_key_frame(self.pipe, self._dec, plan, twin, self.seed, self.sampling)
            else:
                done = self._dec.run(plan, twin, L.draft(frame_draft(self._before))[None])
            codes = done[0, L.header_len:].view(G, G)
            self._before = self._before[-2:] + [codes]
        self._key_frames += 1
        return codes

    def _batch(self, n: int):
        """n key frames, then the in-between frames of the pairs they close, all in time order. The pairs
        of a batch are interpolated together, under the prompt of the batch's key frames."""
        start = self._key_frames + 1                    # 1-based number of the first new key frame
        keys = [self._key_frame() for _ in range(n)]
        events = {self.timeline_index(start + i): self._event(self.timeline_index(start + i), "key", c)
                  for i, c in enumerate(keys)}
        chain = ([self._last_key] if self._last_key is not None else []) + keys
        first_pair = start - 1 if self._last_key is not None else start   # pair p joins key frames p and p+1
        if self.interp_frames and len(chain) > 1:
            events.update(self._interpolate(chain, first_pair))
        self._last_key = keys[-1]
        yield from (events[i] for i in sorted(events))

    def _interpolate(self, keys, first_pair: int) -> dict:
        """In-between frames between consecutive `keys`, as one batch; pair numbers start at first_pair."""
        out = {}
        for p, j, codes, regions in self.pipe.interpolation_codes(
                self._text, keys, self.interp_frames, self.inherit_ratio, self.seed, sampling=self.sampling,
                negative=self._negative, counts=self.counts, first_pair=first_pair - 1):
            index = self.timeline.interp_index(first_pair + p - 1, j)
            out[index] = self._event(index, "interpolated", codes, regions)
        return out

    def _event(self, index: int, kind: str, codes: torch.Tensor, regions=None) -> FrameEvent:
        inherited = int((regions == INHERITABLE).sum()) if regions is not None else 0
        stats = {"seconds": time.perf_counter() - self._t0, "tokens_inherited": inherited, "prompt": self._prompt,
                 "key_frame": self._key_frames, **{f"total_{k}": v for k, v in self.counts.items()}}
        if regions is not None:
            stats["regions"] = region_counts(regions)
        labels = region_labels(regions) if regions is not None else None
        return FrameEvent(index, kind, self.pipe.decode_frame(codes), labels, stats)

    # ---- saving and resuming -------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the stream's state (RetNet state, next-token logits, position, generator, last key frame,
        prompt and settings) to one safetensors file; `load` continues it exactly."""
        from safetensors.torch import save_file

        if self._dec.state is None:
            raise ValueError("nothing to save yet: make or feed at least one key frame first")
        tensors = {f"state.{i}": s.contiguous() for i, s in enumerate(self._dec.state)}
        tensors["logits"] = self._dec.logits.contiguous()
        tensors["generator"] = self._dec.generators[0].get_state()
        if self._last_key is not None:
            tensors["last_key"] = self._last_key.contiguous()
            tensors["before"] = torch.stack(self._before)
        meta = {"format": STATE_FORMAT, "config": self.config.model_dict(), "model": model_key(self.pipe.model),
                "pos": self._dec.pos,
                "key_frames": self._key_frames, "lead_in": self._lead, "prompt": self._prompt, "seed": self.seed,
                "interp_frames": self.interp_frames, "inherit_ratio": self.inherit_ratio,
                "batch_pairs": self.batch_pairs, "negative_prompt": self.negative_prompt,
                "sampling": asdict(self.sampling),
                "counts": self.counts}
        path = Path(path)
        save_file(tensors, str(path), metadata={"flashvideo": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, pipe, path) -> "EndlessStream":
        """A stream saved by `save`, for the same model: the same config and weights (ValueError for a
        state of another model or config, or a file that is not a stream state)."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads((f.metadata() or {}).get("flashvideo", "null"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise ValueError(f"{path.name} is not a FlashVideo stream state ({type(e).__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{path.name} is not a FlashVideo stream state")
        saved = meta.get("config")
        if (not isinstance(saved, dict) or without_sampling(saved) != pipe.config.model_dict()
                or meta.get("model") != model_key(pipe.model)):
            raise ValueError(f"{path.name} was saved by another model or config; it cannot continue with this one")
        stream = cls(pipe, meta["prompt"], interp_frames=meta["interp_frames"], inherit_ratio=meta["inherit_ratio"],
                     seed=meta["seed"], batch_pairs=meta["batch_pairs"], negative_prompt=meta["negative_prompt"],
                     sampling=SamplingSettings(**meta["sampling"]))
        dec = stream._dec
        state = [tensors.get(f"state.{i}") for i in range(pipe.config.n_layers)]
        if any(s is None or s.ndim != 4 for s in state) or "logits" not in tensors:
            raise ValueError(f"{path.name} is missing parts of the stream state")
        dec.state, dec.logits, dec.pos = state, tensors["logits"], int(meta["pos"])
        dec.generators[0].set_state(tensors["generator"])
        stream._key_frames = int(meta["key_frames"])
        stream._lead = int(meta.get("lead_in", 0))
        last = tensors.get("last_key")
        before = tensors.get("before", None if last is None else last[None])  # (a state saved before drafts read 3 frames)
        G, n_codes = pipe.config.grid, pipe.config.n_codes
        for t, dims in ((last, 2), (before, 3)):  # a grid, and a stack of grids
            if t is not None and not (t.dim() == dims and t.shape[-2:] == (G, G) and t.dtype == torch.long
                                      and bool(((t >= 0) & (t < n_codes)).all())):
                raise ValueError(f"{path.name} holds key frames that are not this model's code grids")
        stream._last_key, stream._before = last, [] if before is None else list(before)[-3:]
        stream.counts.update(meta.get("counts", {}))
        return stream
