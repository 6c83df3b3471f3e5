"""Decoding a token plan with a RetNet: known spans in one chunkwise pass, sampled tokens one
recurrent step each.

A plan is a (B, n) tensor of token ids with -1 where a code must be sampled. Rows are decoded in
lockstep: a position is a sampling step if any row samples there (rows that know the token there
just feed it), and runs of positions known in every row go through the chunkwise form at once.
Each row samples from its own seeded generator (`flashvideo.sampler.Sampler`, one batched draw per
step), so a row's tokens do not depend on which other rows share its batch.

Classifier-free guidance (`SamplingSettings.guidance_scale` s != 1): every row has an unconditional
twin, whose plan is the same except for its text (the all-padding `Layout.null_text()` or a negative
prompt). Both run in one batch of 2B rows; the logits are combined as uncond + s (cond - uncond),
one code is sampled per row, and the same code is fed to the row and to its twin.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .layout import UNKNOWN
from .sampler import Sampler, SamplingSettings, guide


@contextmanager
def torch_threads(n: int | None):
    """Run the block with n intra-op threads (None: leave as is). Token-by-token decoding is a chain of
    small GEMVs, where handing work to a second thread costs more than it saves."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Draw:
    """Rows drawn with one SamplingSettings: the batch rows `rows` (conditional), their unconditional twins `twins`
    (guided; None unguided), and the Sampler over their generators."""
    rows: list
    twins: list | None
    sampler: Sampler
    scale: float

    def __post_init__(self):  # a slice where the rows are contiguous: indexing then takes a view
        self.at = _index(self.rows)
        self.twins_at = None if self.twins is None else _index(self.twins)


def _index(rows: list):
    contiguous = not rows or rows == list(range(rows[0], rows[-1] + 1))
    return slice(rows[0] if rows else 0, rows[-1] + 1 if rows else 0) if contiguous else torch.tensor(rows)


def segments(todo: list):
    """The schedule of a plan: (i, j, sampled) per run of positions i..j-1 known in every row (sampled False; one
    chunkwise pass), and per position where some row samples ((i, i + 1, True); one recurrent step)."""
    i, n = 0, len(todo)
    while i < n:
        j = i + 1
        if not todo[i]:
            while j < n and not todo[j]:
                j += 1
        yield i, j, todo[i]
        i = j


@dataclass
class Decoder:
    """Carries the RetNet state and the next-token logits across successive plans."""
    model: torch.nn.Module
    generators: list  # one torch.Generator per (conditional) row
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    state: list | None = None
    pos: int = 0
    logits: torch.Tensor | None = None  # (B or 2B, n_codes): prediction for position `pos`
    counts: dict | None = None  # running totals, may be shared between decoders
    chunked: bool = True        # False: known tokens also take one recurrent step each (for comparison)
    threads: int | None = 1     # intra-op threads while decoding (None: torch's setting)

    def __post_init__(self):
        if self.counts is None:
            self.counts = {}
        for key in ("steps", "chunks", "sampled", "fed"):
            self.counts.setdefault(key, 0)
        B = len(self.generators)
        self.draws = [_Draw(list(range(B)), list(range(B, 2 * B)) if self.guided else None,
                            Sampler(self.generators, self.sampling), self.sampling.guidance_scale)]

    @property
    def guided(self) -> bool:
        return self.sampling.guided

    @property
    def rows(self) -> int:
        """Rows the model decodes: one per generator, twice that when guided."""
        return len(self.generators) * (2 if self.guided else 1)

    def _rows(self, tokens: torch.Tensor, negative: torch.Tensor | None) -> torch.Tensor:
        """The batch the model sees: the rows, then (guided) their unconditional twins."""
        if not self.guided:
            if negative is not None:
                raise ValueError("a negative (unconditional) plan needs guidance_scale != 1")
            return tokens
        if negative is None or negative.shape != tokens.shape:
            raise ValueError(f"guided decoding needs an unconditional plan of shape {tuple(tokens.shape)}")
        if not torch.equal(negative == UNKNOWN, tokens == UNKNOWN):
            raise ValueError("the unconditional plan must sample at the same positions as the plan")
        return torch.cat([tokens, negative])

    def feed(self, tokens: torch.Tensor, negative: torch.Tensor | None = None) -> None:
        """Known tokens (B, n) in one chunkwise pass (guided: and their twins' tokens, `negative`)."""
        self._decode(self._check(self._rows(tokens, negative), sample=False), sample=False)

    def run(self, plan: torch.Tensor, negative: torch.Tensor | None = None) -> torch.Tensor:
        """Fill the -1 entries of plan (B, n) by sampling; return the completed tokens (B, n).
        Guided: `negative` is the twins' plan (the same but for the text); it is completed alike."""
        rows = self._check(self._rows(plan, negative).clone(), sample=True)
        return self._decode(rows, sample=True)[:plan.shape[0]]

    def _check(self, tokens: torch.Tensor, sample: bool) -> torch.Tensor:
        """The model's batch (rows, n) of a plan (sample) or a known span, if this decoder can decode it; its work
        added to `counts`."""
        if sample and self.logits is None and bool((tokens[:, 0] == UNKNOWN).any()):
            raise ValueError("a plan cannot start with a token to sample: give the model a header first")
        self.tally(tokens)
        return tokens

    def _decode(self, tokens: torch.Tensor, sample: bool):
        """Decode the model's batch now: a plan (sample; returns it completed) or a known span. A serving lane
        (`flashvideo.serving`) decodes it in the next batch instead, with other requests' rows."""
        with torch_threads(self.threads):
            return self._run(tokens) if sample else self._feed(tokens)

    def tally(self, tokens: torch.Tensor) -> None:
        """Add to `counts` what decoding these rows (the model's batch, (rows, n)) takes alone."""
        c, rows = self.counts, tokens.shape[0]
        for i, j, sampled in segments((tokens == UNKNOWN).any(0).tolist()):
            if sampled or not self.chunked:
                c["steps"] += j - i
            else:
                c["chunks"] += 1
            if not sampled:
                c["fed"] += rows * (j - i)
        c["sampled"] += int((tokens[:len(self.generators)] == UNKNOWN).sum())

    def _feed(self, tokens: torch.Tensor) -> None:
        if not self.chunked:
            for i in range(tokens.shape[1]):
                self._step(tokens[:, i])
            return
        self.logits, self.state = self.model.prefill(tokens, self.state, _shared(self.pos))
        self.pos = _advance(self.pos, tokens.shape[1])

    def _step(self, tokens: torch.Tensor) -> None:
        self.logits, self.state = self.model.step(tokens, self.state, _shared(self.pos))
        self.pos = _advance(self.pos, 1)

    def _run(self, plan: torch.Tensor) -> torch.Tensor:
        unknown = plan == UNKNOWN
        for i, j, sampled in segments(unknown.any(0).tolist()):
            if not sampled:
                self._feed(plan[:, i:j])
                continue
            here = unknown[:, i].tolist()
            for draw in self.draws:
                self._draw(draw, plan, i, here)
            self._step(plan[:, i])
        return plan

    def _draw(self, d: _Draw, plan: torch.Tensor, i: int, unknown: list) -> None:
        """Sample position i of the draw's rows that sample there; their twins are fed the same codes."""
        pick = [k for k, r in enumerate(d.rows) if unknown[r]]
        if not pick:
            return
        logits = self.logits[d.at] if d.twins is None else guide(self.logits[d.at], self.logits[d.twins_at], d.scale)
        if len(pick) == len(d.rows):
            plan[d.at, i] = d.sampler(logits)
        else:
            plan[[d.rows[k] for k in pick], i] = d.sampler(logits[pick], pick)
        if d.twins is not None:
            plan[d.twins_at, i] = plan[d.at, i]  # the twin is fed the code its row sampled

    @classmethod
    def together(cls, decoders: list) -> "Decoder":
        """One decoder over the rows of several (concurrent requests, `flashvideo.serving`), each keeping its own
        generators, sampling settings and guidance; rows in the decoders' order, each decoder's rows in a block.
        Decode with `_feed` / `_run` on the blocks stacked alike, then hand the results back with `scatter`."""
        first = decoders[0]
        merged = cls(first.model, [], counts={}, chunked=first.chunked, threads=first.threads)
        alike, at = {}, 0  # (settings, scale) -> rows, twins, generators
        for dec in decoders:
            for d in dec.draws:
                rows, twins, gens = alike.setdefault((dec.sampling, d.scale), ([], [], []))
                rows += [at + r for r in d.rows]
                twins += [at + r for r in d.twins or []]
                gens += d.sampler.generators
            at += dec.rows
        merged.draws = [_Draw(rows, twins or None, Sampler(gens, settings), scale)  # one Sampler call for them all
                        for (settings, scale), (rows, twins, gens) in alike.items()]
        merged.pos = [dec.pos for dec in decoders for _ in range(dec.rows)]
        merged.state = _stacked([dec.state for dec in decoders], [dec.rows for dec in decoders])
        merged.logits = _stacked([dec.logits for dec in decoders], [dec.rows for dec in decoders])
        return merged

    def scatter(self, decoders: list) -> None:
        """Hand each decoder of `together` its rows' state, logits and position."""
        sizes = [dec.rows for dec in decoders]
        states = zip(*(layer.split(sizes) for layer in self.state))
        starts = [sum(sizes[:k]) for k in range(len(sizes))]
        for dec, state, logits, start in zip(decoders, states, self.logits.split(sizes), starts):
            dec.state, dec.logits, dec.pos = list(state), logits, self.pos[start]


def _advance(pos, n: int):
    """Positions n tokens on: an int, or one per row."""
    return pos + n if isinstance(pos, int) else [p + n for p in pos]


def _shared(pos):
    """An int where every row is at the same position (the model's faster path), else the per-row list."""
    return pos if isinstance(pos, int) or len(set(pos)) > 1 else pos[0]


def _stacked(parts: list, rows: list):
    """Per-decoder tensors (or per-layer lists of them) stacked along the rows; a decoder that has none yet (nothing
    fed) gets zeros, which decode exactly as nothing: a zero state adds nothing, and nothing samples from the logits
    of a row before its first known token. None if no decoder has any."""
    like = next((p for p in parts if p is not None), None)
    if like is None:
        return None
    if isinstance(like, torch.Tensor):
        return torch.cat([like.new_zeros(n, *like.shape[1:]) if p is None else p for p, n in zip(parts, rows)])
    return [_stacked(layer, rows) for layer in zip(*([None] * len(like) if p is None else p for p in parts))]
