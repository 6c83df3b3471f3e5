"""Decoding a token plan with a RetNet: known spans in one chunkwise pass, sampled tokens one
recurrent step each.

A plan is a (B, n) tensor of token ids with -1 where a code must be sampled. Rows are decoded in
lockstep: a position is a sampling step if any row samples there (rows that know the token there
just feed it), and runs of positions known in every row go through the chunkwise form at once.
Each row samples from its own seeded generator, so a row's tokens do not depend on which other
rows share its batch.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .layout import UNKNOWN


def sample_token(logits: torch.Tensor, generator: torch.Generator, temperature: float = 1.0,
                 top_k: int | None = None) -> int:
    """One code from logits (n_codes,): temperature, top-k, softmax, multinomial. temperature 0 = argmax."""
    if temperature == 0:
        return int(logits.argmax())  # the first maximum, on any device
    logits = logits.float().cpu() / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


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
    generators: list  # one torch.Generator per row
    temperature: float = 1.0
    top_k: int | None = None
    state: list | None = None
    pos: int = 0
    logits: torch.Tensor | None = None  # (B, n_codes): prediction for position `pos`
    counts: dict | None = None  # running totals, may be shared between decoders
    chunked: bool = True        # False: known tokens also take one recurrent step each (for comparison)
    threads: int | None = 1     # intra-op threads while decoding (None: torch's setting)

    def __post_init__(self):
        if self.counts is None:
            self.counts = {}
        for key in ("steps", "chunks", "sampled", "fed"):
            self.counts.setdefault(key, 0)

    def feed(self, tokens: torch.Tensor) -> None:
        """Known tokens (B, n) in one chunkwise pass."""
        with torch_threads(self.threads):
            self._feed(tokens)

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

    def run(self, plan: torch.Tensor) -> torch.Tensor:
        """Fill the -1 entries of plan (B, n) by sampling; return the completed tokens."""
        with torch_threads(self.threads):
            return self._run(plan.clone())

    def _run(self, plan: torch.Tensor) -> torch.Tensor:
        unknown = (plan == UNKNOWN).T.tolist()  # per position: which rows sample there
        i, n = 0, plan.shape[1]
        while i < n:
            if not any(unknown[i]):
                j = i
                while j < n and not any(unknown[j]):
                    j += 1
                self._feed(plan[:, i:j])
                i = j
                continue
            if self.logits is None:
                raise ValueError("a plan cannot start with a token to sample: give the model a header first")
            for r in (r for r, u in enumerate(unknown[i]) if u):
                plan[r, i] = sample_token(self.logits[r], self.generators[r], self.temperature, self.top_k)
                self.counts["sampled"] += 1
            self.logits, self.state = self.model.step(plan[:, i], self.state, self.pos)
            self.pos += 1
            self.counts["steps"] += 1
            i += 1
        return plan
