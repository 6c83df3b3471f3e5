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
        self.sampler = Sampler(self.generators, self.sampling)

    @property
    def guided(self) -> bool:
        return self.sampling.guided

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
        with torch_threads(self.threads):
            self._feed(self._rows(tokens, negative))

    def _feed(self, tokens: torch.Tensor) -> None:
        self.counts["fed"] += tokens.numel()
        if not self.chunked:
            for i in range(tokens.shape[1]):
                self.logits, self.state = self.model.step(tokens[:, i], self.state, self.pos)
                self.pos += 1
                self.counts["steps"] += 1
            return
        self.logits, self.state = self.model.prefill(tokens, self.state, self.pos)
        self.pos += tokens.shape[1]
        self.counts["chunks"] += 1

    def run(self, plan: torch.Tensor, negative: torch.Tensor | None = None) -> torch.Tensor:
        """Fill the -1 entries of plan (B, n) by sampling; return the completed tokens (B, n).
        Guided: `negative` is the twins' plan (the same but for the text); it is completed alike."""
        with torch_threads(self.threads):
            return self._run(self._rows(plan, negative).clone())[:plan.shape[0]]

    def _run(self, plan: torch.Tensor) -> torch.Tensor:
        B = len(self.generators)
        unknown = (plan[:B] == UNKNOWN).T.tolist()  # per position: which rows sample there
        i, n = 0, plan.shape[1]
        while i < n:
            rows = [r for r, u in enumerate(unknown[i]) if u]
            if not rows:
                j = i
                while j < n and not any(unknown[j]):
                    j += 1
                self._feed(plan[:, i:j])
                i = j
                continue
            if self.logits is None:
                raise ValueError("a plan cannot start with a token to sample: give the model a header first")
            logits = guide(self.logits[:B], self.logits[B:], self.sampling.guidance_scale) if self.guided else self.logits
            if len(rows) == B:
                codes = self.sampler(logits)
                plan[:B, i] = codes
            else:
                codes = self.sampler(logits[rows], rows)
                plan[rows, i] = codes
            if self.guided:
                plan[B:, i] = plan[:B, i]  # the twin is fed the code its row sampled
            self.counts["sampled"] += len(rows)
            self.logits, self.state = self.model.step(plan[:, i], self.state, self.pos)
            self.pos += 1
            self.counts["steps"] += 1
            i += 1
        return plan
