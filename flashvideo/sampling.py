"""Decoding a token plan with a RetNet: known spans in one chunkwise pass, sampled codes one recurrent step each,
or drafted and checked several at a time (speculative decoding, the default of `FlashVideoPipeline`).

A plan is a (B, n) tensor of token ids with -1 where a code must be sampled. Token by token, rows are decoded in
lockstep: a position is a sampling step if any row samples there (rows that know the token there
just feed it), and runs of positions known in every row go through the chunkwise form at once.
Each row samples from its own seeded generator (`flashvideo.sampler.Sampler`, one batched draw per
step), so a row's tokens do not depend on which other rows share its batch.

Drafted (`Decoder.draft_len` > 0, `run(..., draft=)`): every code to sample has a draft, the code of the frame
before at that place (the pipeline's guess) or else the code just before it again. One `RetNet.verify` pass feeds
each row its next `draft_len` + 1 tokens at once, and `Sampler.speculate` keeps the drafts in order until it
replaces one by a draw from the distribution without it. Each code is then drawn from exactly the distribution it
has token by token (so the videos are as good, though not the same videos for a seed), and a background that
stays put is kept eight codes a pass: a pass of 2 rows x 9 tokens costs about 1.7 recurrent steps, and a
64-code frame takes about 14 passes. Rows then advance by what they kept, each at its own position.

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

DRAFT_BUDGET = 36  # tokens a drafted pass feeds at most (`Decoder.draft_budget`)


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
    draft_len: int = 0          # drafted tokens checked per pass (speculative decoding, `run(..., draft=)`); 0: off
    draft_budget: int = DRAFT_BUDGET  # tokens a pass feeds at most, over all rows: many rows draft less, or not at all
    threads: int | None = 1     # intra-op threads while decoding (None: torch's setting)

    def __post_init__(self):
        if self.counts is None:
            self.counts = {}
        for key in ("steps", "chunks", "sampled", "fed", "passes"):
            self.counts.setdefault(key, 0)
        self.draft = None  # (rows, n) while `run` decodes a drafted plan
        self.parts = None  # `together`: each decoder's counts and rows
        self.calls = 0     # sequential model calls (recurrent steps or drafted passes) of the last `_run`
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

    def run(self, plan: torch.Tensor, negative: torch.Tensor | None = None,
            draft: torch.Tensor | None = None) -> torch.Tensor:
        """Fill the -1 entries of plan (B, n) by sampling; return the completed tokens (B, n).
        Guided: `negative` is the twins' plan (the same but for the text); it is completed alike.
        `draft` (B, n): a guess of the codes to sample (-1: none), checked `draft_len` at a time in one pass each
        (speculative decoding); the codes are drawn from the same distribution with or without it."""
        rows = self._rows(plan, negative).clone()
        self.draft = None
        if self.draft_len and self.chunked:
            if draft is None:
                draft = torch.full_like(plan, UNKNOWN)
            if draft.shape != plan.shape:
                raise ValueError(f"a draft of shape {tuple(draft.shape)} for a plan of shape {tuple(plan.shape)}")
            self.draft = draft.repeat(len(rows) // len(plan), 1).long()  # twins are fed their rows' codes
        rows = self._check(rows, sample=True)
        try:
            return self._decode(rows, sample=True)[:plan.shape[0]]
        finally:
            self.draft = None

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
        """Add to `counts` what decoding these rows (the model's batch, (rows, n)) takes alone, but for the model calls
        that sample, which `_count` adds as they run."""
        c, rows = self.counts, tokens.shape[0]
        for i, j, sampled in segments((tokens == UNKNOWN).any(0).tolist()):
            if sampled:
                continue  # counted as it is decoded (`_count`): a step per position, or drafted passes
            if self.chunked:
                c["chunks"] += 1
            else:
                c["steps"] += j - i
            c["fed"] += rows * (j - i)
        c["sampled"] += int((tokens[:len(self.generators)] == UNKNOWN).sum())

    def _feed(self, tokens: torch.Tensor) -> None:
        if not self.chunked:
            for i in range(tokens.shape[1]):
                self._step(tokens[:, i])
            return
        self.logits, self.state = self.model.prefill(tokens, self.state, _shared(self.pos))
        self.pos = _advance(self.pos, tokens.shape[1])

    def _count(self, key: str, live: list) -> None:
        """One model call that samples: counted by each decoder (`together`: each request) with a row in `live`."""
        for counts, rows in self.parts or [(self.counts, range(len(live)))]:
            counts[key] += any(live[r] for r in rows)

    def _step(self, tokens: torch.Tensor) -> None:
        self.calls += 1
        self.logits, self.state = self.model.step(tokens, self.state, _shared(self.pos))
        self.pos = _advance(self.pos, 1)

    def pass_len(self, rows: int) -> int:
        """Tokens a row a drafted pass of `rows` rows feeds (below 2: recurrent steps, each code still decided from
        its draft, as in a pass). A pass costs about a step while it reads the weights more than it computes; past
        that, drafts that are rejected are wasted work."""
        return min(self.draft_len + 1, self.draft_budget // max(1, rows))

    def _run(self, plan: torch.Tensor) -> torch.Tensor:
        self.calls = 0
        if self.draft is not None and self.pass_len(len(plan)) >= 2:
            return self._run_drafted(plan, self.draft)  # else token by token, each code decided from its draft
        unknown = plan == UNKNOWN
        for i, j, sampled in segments(unknown.any(0).tolist()):
            if not sampled:
                self._feed(plan[:, i:j])
                continue
            here = unknown[:, i].tolist()
            self._count("steps", here)
            for draw in self.draws:
                self._draw(draw, plan, i, here)
            self._step(plan[:, i])
        return plan

    def _run_drafted(self, plan: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
        """Speculative decoding. Every code to sample has a draft: `draft`'s code there, else (-1) the code before it
        again (a plain background repeats). Each pass feeds every row its next tokens (the next code, already
        decided, then known tokens and drafts, `pass_len` in all) through `RetNet.verify`, and
        `Sampler.speculate` keeps the drafts in order until it replaces one by a draw without it, or else decides
        the code after the pass from the pass's last logits (one call a pass for both): every code is
        drawn from exactly the distribution of decoding token by token, and no code's draw depends on where the
        passes start, so rows decode alike in any batch. Rows advance by what they kept, each at its own position.
        A pass costs about what a recurrent step of a few rows costs, and a frame that changes little from its
        draft takes far fewer passes than it has codes."""
        R, n = plan.shape
        todo = (plan == UNKNOWN).any(0).tolist()
        lead = todo.index(True) if True in todo else n
        if lead:  # the known columns every row starts with (a header): one chunkwise pass
            self._feed(plan[:, :lead])
        cur, T, n_codes = [lead] * R, self.pass_len(R), self.model.config.n_codes
        pos = list(self.pos) if isinstance(self.pos, list) else [self.pos] * R
        P, D = plan.tolist(), draft.tolist()
        fresh = [self.logits is not None] * R  # the held logits predict column cur (else it must be known)

        def decide(d, entries, drafts, rows_logits):  # entries (k, col) in order: codes kept or drawn, None past a stop
            ks = [k for k, _ in entries]
            cond = rows_logits([d.rows[k] for k in ks])
            logits = cond if d.twins is None else guide(cond, rows_logits([d.twins[k] for k in ks]), d.scale)
            codes = d.sampler.speculate(logits, drafts, ks)
            for (k, col), code in zip(entries, codes):
                if code is None:
                    continue
                for r in [d.rows[k]] + ([d.twins[k]] if d.twins is not None else []):
                    plan[r, col] = P[r][col] = code
            return codes

        while any(c < n for c in cur):
            for d in self.draws:  # a row's next code still to sample (the first pass): from the held logits
                entries = [(k, cur[r]) for k, r in enumerate(d.rows) if cur[r] < n and P[r][cur[r]] == UNKNOWN]
                if not all(fresh[d.rows[k]] for k, _ in entries):
                    raise RuntimeError("drafted decoding lost its place: a code to draw without its logits")
                if entries:
                    decide(d, entries, [_guess(D[d.rows[k]][col], P[d.rows[k]][col - 1] if col else UNKNOWN, n_codes)
                                        for k, col in entries], lambda rs: self.logits[rs])
            tokens, length = [[0] * T for _ in range(R)], [0] * R
            for r in range(R):  # that code, then known codes and drafts, while there is a draft
                for t in range(min(T, n - cur[r])):
                    col = cur[r] + t
                    tok = P[r][col] if P[r][col] != UNKNOWN else _guess(D[r][col], tokens[r][t - 1], n_codes)
                    if tok == UNKNOWN:  # (t > 0 here: column cur is known)
                        break
                    tokens[r][t], length[r] = tok, t + 1
            self._count("passes", [c < n for c in cur])
            self.calls += 1
            out, kv = self.model.verify(torch.tensor(tokens), self.state, pos)
            keep = list(length)
            for d in self.draws:  # the drafts, in order, kept until one is replaced; then the code after the pass
                entries = [(k, cur[r] + t) for k, r in enumerate(d.rows) for t in range(1, length[r] + 1)
                           if cur[r] + t < n and P[r][cur[r] + t] == UNKNOWN]
                if not entries:
                    continue
                at = torch.tensor([col - cur[d.rows[k]] - 1 for k, col in entries])  # the logits that predict col
                drafts = []  # what the pass was fed; for the code after it, its guess
                for k, col in entries:
                    r, t = d.rows[k], col - cur[d.rows[k]]
                    drafts.append(tokens[r][t] if t < length[r] else _guess(D[r][col], tokens[r][t - 1], n_codes))
                codes = decide(d, entries, drafts, lambda rs: out[torch.tensor(rs), at])
                for (k, col), code, fed in zip(entries, codes, drafts):
                    r = d.rows[k]
                    if code is not None and code != fed and col - cur[r] < length[r]:  # replaced: the row keeps
                        for row in [r] + ([d.twins[k]] if d.twins is not None else []):  # what came before it
                            keep[row] = col - cur[r]  # the replaced code is fed first in the next pass
            self.state = self.model.keep(self.state, kv, keep)
            last = out[torch.arange(R), torch.tensor([max(k - 1, 0) for k in keep])]  # predicts column cur + keep
            held = [0 < k == length[r] for r, k in enumerate(keep)]
            fresh = [h or (f and k == 0) for h, f, k in zip(held, fresh, keep)]
            self.logits = last if self.logits is None else torch.where(torch.tensor(held)[:, None], last, self.logits)
            cur = [c + k for c, k in zip(cur, keep)]
            pos = [p + k for p, k in zip(pos, keep)]
        self.pos = _shared(pos) if isinstance(self.pos, int) else pos
        return plan

    def _draw(self, d: _Draw, plan: torch.Tensor, i: int, unknown: list) -> None:
        """Sample position i of the draw's rows that sample there; their twins are fed the same codes. With a draft
        (a batch too big for drafted passes), each code is decided from its draft as a pass decides it, so a row
        draws the same codes whether its batch checks drafts a pass at a time or not."""
        pick = [k for k, r in enumerate(d.rows) if unknown[r]]
        if not pick:
            return
        logits = self.logits[d.at] if d.twins is None else guide(self.logits[d.at], self.logits[d.twins_at], d.scale)
        rows = [d.rows[k] for k in pick]
        if self.draft is not None:
            n_codes = self.model.config.n_codes
            guesses = [_guess(int(self.draft[r, i]), int(plan[r, i - 1]) if i else UNKNOWN, n_codes) for r in rows]
            codes = torch.tensor(d.sampler.speculate(logits[pick], guesses, pick))
        else:
            codes = d.sampler(logits) if len(pick) == len(d.rows) else d.sampler(logits[pick], pick)
        plan[rows, i] = codes
        if d.twins is not None:
            plan[d.twins_at, i] = plan[d.at, i]  # the twin is fed the code its row sampled

    @classmethod
    def together(cls, decoders: list) -> "Decoder":
        """One decoder over the rows of several (concurrent requests, `flashvideo.serving`), each keeping its own
        generators, sampling settings and guidance; rows in the decoders' order, each decoder's rows in a block.
        Decode with `_feed` / `_run` on the blocks stacked alike, then hand the results back with `scatter`."""
        first = decoders[0]
        merged = cls(first.model, [], counts={}, chunked=first.chunked, threads=first.threads,
                     draft_len=first.draft_len)
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
        starts = [sum(dec.rows for dec in decoders[:k]) for k in range(len(decoders))]
        merged.parts = [(dec.counts, range(s, s + dec.rows)) for dec, s in zip(decoders, starts)]
        drafts = [dec.draft for dec in decoders]
        if any(d is not None for d in drafts):  # rows without one draft each code as the code before it
            n = next(d for d in drafts if d is not None).shape[1]
            merged.draft = torch.cat([torch.full((dec.rows, n), UNKNOWN) if d is None else d
                                      for dec, d in zip(decoders, drafts)])
        return merged

    def scatter(self, decoders: list) -> None:
        """Hand each decoder of `together` its rows' state, logits and position."""
        sizes = [dec.rows for dec in decoders]
        states = zip(*(layer.split(sizes) for layer in self.state))
        starts = [sum(sizes[:k]) for k in range(len(sizes))]
        for dec, state, logits, start in zip(decoders, states, self.logits.split(sizes), starts):
            dec.state, dec.logits, dec.pos = list(state), logits, self.pos[start]


SHIFTS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # whole-patch moves `frame_draft` tries


def frame_draft(frames: list) -> torch.Tensor | None:
    """The draft of the next key frame's codes (grid, grid), from the key frames before it (oldest first; only the
    last three are read): the last one, or the one before it moved by a whole patch where that move is how the
    frame three back became the last one and it matched the last one better than the frame just before did (an
    object that crosses a patch every two key frames, as the shapes world's moving objects do: drafts kept where the
    plain last frame would have missed at every patch the object covers). None: no frame yet."""
    if not frames:
        return None
    last = frames[-1]
    if len(frames) < 3:
        return last
    two, three = frames[-2], frames[-3]
    hits = {s: int((three.roll(s, (-2, -1)) == last).sum()) for s in SHIFTS}
    move = max(hits, key=hits.get)
    return two.roll(move, (-2, -1)) if hits[move] > int((two == last).sum()) else last


def _guess(draft: int, before: int, n_codes: int) -> int:
    """The draft of a code to sample: the given draft, else the code before it again (a plain background repeats),
    else none (-1)."""
    if draft >= 0:
        return draft
    return before if 0 <= before < n_codes else UNKNOWN


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
