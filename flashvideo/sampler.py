"""One code per row from next-token logits, for a whole batch in one call.

    settings = SamplingSettings(temperature=0.8, top_k=50, top_p=0.95, guidance_scale=3.0)
    sampler = Sampler(generators, settings)          # one seeded torch.Generator per row
    codes = sampler(logits)                           # logits (B, n_codes) -> codes (B,)

The draw is inverse-CDF sampling: for each row the weights exp((logit - max) / temperature), with
top-k and top-p applied, are summed cumulatively, and a uniform number u from the row's own
generator picks the first code whose cumulative weight exceeds u times the total (`searchsorted`).
Every row draws exactly one uniform number per sampled code (none when greedy), from its own
generator, and every operation works row by row, so a row's codes do not depend on which other rows
share its batch: batched and one-at-a-time decoding give the same video. Drafted decoding decides each code
from a draft instead (`Sampler.speculate`: keep the draft with its probability, else draw without it), with
exactly two uniform numbers per code, likewise row by row.

Classifier-free guidance is not a sampling step but a logit step: `guide(cond, uncond, scale)`
(`flashvideo.sampling.Decoder` runs both rows and samples once from the guided logits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch

MAX_TEMPERATURE = 10.0
_TINY = 1e-100  # below this temperature, logits / t could overflow float64: the max-shifted form is used
MAX_GUIDANCE = 20.0
MAX_LEAD_IN = 4
MAX_FIRST_CANDIDATES = 8


def _is_real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) or type(x).__name__.startswith(("int", "uint"))


@dataclass(frozen=True)
class SamplingSettings:
    """How codes are drawn. The defaults sample from the model's own distribution, unguided."""
    temperature: float = 1.0       # 0 = greedy (argmax); any positive value, however small, samples without NaN
    top_k: int | None = None       # keep the k most likely codes (ties with the k-th kept); None = off
    top_p: float | None = None     # nucleus: keep the most likely codes until their mass reaches p; None = off
    guidance_scale: float = 1.0    # classifier-free guidance s: uncond + s (cond - uncond); 1 = off (one pass)
    guide_interp: bool = True      # False: in-between frames unguided (their key frames pin them; half the rows)
    lead_in: int = 0               # key frames drawn before the first one shown, and dropped (`Layout.key_sns`)
    first_candidates: int = 1      # the first key frame drawn this many times side by side, the likeliest kept
                                   # (`flashvideo.rerank`); 1 = drawn once
    centre_first: bool = False     # the first key frame rolled so its object sits away from the frame's edges, the
                                   # video going on from there (`flashvideo.centring`; tokenizers that wrap only)

    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ValueError(msg)

        t, k, p, s = self.temperature, self.top_k, self.top_p, self.guidance_scale
        need(_is_real(t) and 0.0 <= t <= MAX_TEMPERATURE,
             f"temperature must be a number in [0, {MAX_TEMPERATURE:g}] (0 = greedy), got {t!r}")
        need(k is None or (_is_int(k) and k >= 1),
             f"top_k must be None (off) or an integer >= 1, got {k!r}" + ("; use None to turn top-k off" if k == 0 else ""))
        need(p is None or (_is_real(p) and 0.0 < p <= 1.0),
             f"top_p must be None (off) or a number in (0, 1], got {p!r}")
        need(_is_real(s) and 0.0 <= s <= MAX_GUIDANCE,
             f"guidance_scale must be a number in [0, {MAX_GUIDANCE:g}] (1 = no guidance), got {s!r}")
        need(isinstance(self.guide_interp, bool), f"guide_interp must be true or false, got {self.guide_interp!r}")
        need(isinstance(self.centre_first, bool), f"centre_first must be true or false, got {self.centre_first!r}")
        need(_is_int(self.lead_in) and 0 <= self.lead_in <= MAX_LEAD_IN,
             f"lead_in must be an integer in 0..{MAX_LEAD_IN}, got {self.lead_in!r}")
        object.__setattr__(self, "temperature", float(t))
        object.__setattr__(self, "guidance_scale", float(s))
        if k is not None:
            object.__setattr__(self, "top_k", int(k))
        need(_is_int(self.first_candidates) and 1 <= self.first_candidates <= MAX_FIRST_CANDIDATES,
             f"first_candidates must be an integer in 1..{MAX_FIRST_CANDIDATES}, got {self.first_candidates!r}")
        object.__setattr__(self, "lead_in", int(self.lead_in))
        object.__setattr__(self, "first_candidates", int(self.first_candidates))

    @classmethod
    def resolve(cls, sampling: "SamplingSettings | None" = None, defaults: dict | None = None,
                **keywords) -> "SamplingSettings":
        """Settings from `sampling=` or from keywords (None = not given), what is not given taken from
        `defaults` (a model's `config.sampling`); `sampling=` and keywords at once only if they agree."""
        unknown = sorted(set(keywords) - {"temperature", "top_k", "top_p", "guidance_scale", "guide_interp", "lead_in",
                                      "first_candidates", "centre_first"})
        if unknown:
            raise TypeError(f"unknown sampling keywords {unknown}")
        given = {k: v for k, v in keywords.items() if v is not None}
        if sampling is None:
            return cls(**{**(defaults or {}), **given})
        if not isinstance(sampling, cls):
            raise ValueError(f"sampling must be a SamplingSettings, got {type(sampling).__name__}")
        clash = sorted(k for k, v in given.items() if getattr(sampling, k) != v)
        if clash:
            raise ValueError(f"{', '.join(clash)} given both as a keyword and in sampling=, with different values")
        return sampling

    def check_codes(self, n_codes: int) -> "SamplingSettings":
        if self.top_k is not None and self.top_k > n_codes:
            raise ValueError(f"top_k must be None or an integer in 1..{n_codes} (the codebook size), got {self.top_k}")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1.0

    def for_interp(self) -> "SamplingSettings":
        """The settings in-between frames are drawn with: these, unguided if `guide_interp` is off."""
        return self if self.guide_interp else replace(self, guidance_scale=1.0)


def guide(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on logits: uncond + scale * (cond - uncond)."""
    return torch.lerp(uncond, cond, scale)


def _inverse_cdf(w: torch.Tensor, uniforms: list, greedy: list | None = None):
    """Codes (N,) for unnormalised weights w (N, n_codes) and one uniform number per row, and the cumulative weights:
    the target t = u * total, kept below the total after rounding, picks the first code whose cumulative weight
    exceeds t. Rows marked greedy are not checked (their caller takes the likeliest code)."""
    cdf = w.cumsum(-1)
    totals = cdf[:, -1].tolist()
    if not all(0.0 < t < math.inf for t, g in zip(totals, greedy or [False] * len(totals)) if not g):
        raise ValueError("logits are NaN or all -inf: there is no distribution to sample from")
    targets = [min(u * t, math.nextafter(t, 0.0)) for u, t in zip(uniforms, totals)]
    return torch.searchsorted(cdf, torch.tensor(targets, dtype=torch.float64)[:, None], right=True)[:, 0], cdf


class Sampler:
    """Draws one code per row for a batch, row r from generators[r] with settings[r].

    settings: one SamplingSettings for every row, or one per row (batched requests may differ).
    Rows that share one generator object draw their uniform numbers from it in row order."""

    def __init__(self, generators: Sequence[torch.Generator],
                 settings: SamplingSettings | Sequence[SamplingSettings] = SamplingSettings()):
        self.generators = list(generators)
        self.uniform = isinstance(settings, SamplingSettings)
        if not self.uniform and len(settings) != len(self.generators):
            raise ValueError(f"{len(settings)} sampling settings for {len(self.generators)} rows")
        self.settings = settings
        rows = [settings] if self.uniform else list(settings)  # per-row parameters, or one row that broadcasts
        temps = [s.temperature for s in rows]
        self._temp = torch.tensor([t or 1.0 for t in temps], dtype=torch.float64)[:, None]  # (R, 1)
        self._greedy = torch.tensor([t == 0 for t in temps])                                # (R,)
        self._k = torch.tensor([s.top_k or 0 for s in rows])                                # (R,), 0 = off
        self._p = torch.tensor([s.top_p or 1.0 for s in rows], dtype=torch.float64)[:, None]  # (R, 1), 1 = off
        self._any_k = any(s.top_k for s in rows)
        self._any_p = any(s.top_p is not None and s.top_p < 1.0 for s in rows)
        self._any_greedy = any(t == 0 for t in temps)
        self._all_greedy = all(t == 0 for t in temps)

    def __call__(self, logits: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
        """logits (N, n_codes) of `rows` (None: all rows, N = B) -> codes (N,) long."""
        return self.sample(logits, rows)[0]

    def sample(self, logits: torch.Tensor, rows: Sequence[int] | None = None, with_probs: bool = False):
        """Codes (N,) and, with with_probs, the probability each code had in the distribution it was
        drawn from (greedy rows: the untempered softmax), else None."""
        rows = range(len(self.generators)) if rows is None else rows
        w, raw, greedy = self._weights(logits, rows)
        if w is None:  # every row greedy
            codes = raw.argmax(-1)  # the first maximum
            return codes, (torch.softmax(raw, -1).gather(1, codes[:, None])[:, 0] if with_probs else None)
        codes, cdf = _inverse_cdf(w, self._uniforms(rows, greedy))
        if greedy is not None:
            codes = torch.where(torch.tensor(greedy), raw.argmax(-1), codes)
        probs = None
        if with_probs:
            probs = (w / cdf[:, -1:]).gather(1, codes[:, None])[:, 0]
            if greedy is not None:
                probs = torch.where(torch.tensor(greedy), torch.softmax(raw, -1).gather(1, codes[:, None])[:, 0], probs)
        return codes, probs

    def speculate(self, logits: torch.Tensor, drafts: Sequence[int], rows: Sequence[int]) -> list:
        """Speculative sampling (`flashvideo.sampling`): entries are consecutive codes of their rows, in order (a row's
        entries together), each with the logits it is drawn from (N, n_codes) and a draft code (-1: none). An entry
        keeps its draft with the probability the distribution gives it, else takes a draw from the distribution
        without the draft (undrafted: a plain draw), and its row stops there: later entries of the row are None.
        Each decided entry takes exactly two uniform numbers from its row's generator (greedy rows: none, and the
        likeliest code), so a code's draw does not depend on which entries share the call. Keeping or replacing the
        draft draws every code from exactly the distribution, whatever the draft."""
        w, raw, greedy = self._weights(logits, rows)
        best = raw.argmax(-1).tolist()
        greedy = greedy or [w is None] * len(rows)
        if w is None:  # every row greedy
            w = raw.softmax(-1)
        p = (w.gather(1, torch.tensor([max(d, 0) for d in drafts])[:, None])[:, 0] / w.sum(-1)).tolist()
        out, stopped, redraw, targets = [None] * len(rows), set(), [], []
        for e, (r, d) in enumerate(zip(rows, drafts)):
            if r in stopped:
                continue
            if greedy[e]:  # the draft is kept exactly when it is the likeliest code
                keep, u = d == best[e], 0.0
            else:
                u1, u2 = torch.rand(2, generator=self.generators[r], dtype=torch.float64).tolist()
                keep, u = d >= 0 and u1 < p[e], (u2 if d >= 0 else u1)
            if keep:
                out[e] = d
                continue
            stopped.add(r)
            redraw.append(e)
            targets.append(u)
        if redraw:
            ww = w[redraw]
            without = [(i, drafts[e]) for i, e in enumerate(redraw) if drafts[e] >= 0]
            if without:  # the distribution without the rejected draft
                ww = ww.index_put((torch.tensor([i for i, _ in without]), torch.tensor([d for _, d in without])),
                                  torch.zeros(len(without), dtype=ww.dtype))
            for e, c in zip(redraw, _inverse_cdf(ww, targets, greedy=[greedy[e] for e in redraw])[0].tolist()):
                out[e] = best[e] if greedy[e] else c
        return out

    def _weights(self, logits: torch.Tensor, rows: Sequence[int]):
        """The unnormalised distribution of each entry after temperature, top-k and top-p (float64; None when every
        row is greedy), the raw logits, and which entries are greedy (None: none is)."""
        if logits.dim() != 2 or logits.shape[0] != len(rows):
            raise ValueError(f"logits of shape {tuple(logits.shape)} for {len(rows)} rows: expected ({len(rows)}, n_codes)")
        x = logits.detach().to("cpu", torch.float64)  # float64: (x - max) / t stays finite for any t > 0
        if self._all_greedy:
            return None, x, None
        sel = slice(None) if self.uniform else torch.as_tensor(list(rows), dtype=torch.long)
        raw = x
        if self.uniform and self._any_k:  # top-k on the raw logits (a temperature keeps the order)
            kth = torch.topk(x, min(self.settings.top_k, x.shape[-1]), dim=-1).values[:, -1:]
            x = x.masked_fill(x < kth, float("-inf"))  # ties with the k-th code stay
        elif self._any_k and int((k := self._k[sel]).max()) > 0:  # per-row k, 0 = off
            kth = torch.topk(x, int(k.max()), dim=-1).values.gather(1, (k.clamp(min=1) - 1)[:, None])
            x = x.masked_fill((x < kth) & (k > 0)[:, None], float("-inf"))  # ties with the k-th code stay
        if self.uniform and self.settings.temperature >= _TINY:
            w = torch.softmax(x if self.settings.temperature == 1.0 else x / self.settings.temperature, -1)
        else:  # (x - max) / t <= 0 with max 0: finite or -inf for any t > 0, never 0/0 or overflow
            z = x - x.amax(-1, keepdim=True)
            w = (z / self._temp[sel]).exp_()
        if self._any_p:
            sw = w.sort(-1, descending=True).values
            before = sw.cumsum(-1) - sw  # mass of the more likely codes
            n_keep = (before < self._p[sel] * sw.sum(-1, keepdim=True)).sum(-1, keepdim=True).clamp(min=1)
            w = w.masked_fill(w < sw.gather(1, n_keep - 1), 0.0)  # ties with the last kept code stay
        greedy = self._greedy[sel].expand(len(rows)).tolist() if self._any_greedy else None
        return w, raw, greedy

    def _uniforms(self, rows, greedy) -> list[float]:
        """One uniform number in [0, 1) per non-greedy row, from its own generator (greedy rows draw none: 0)."""
        gens = [self.generators[r] for r in rows]
        if greedy is None and len(gens) > 1 and all(g is gens[0] for g in gens):
            return torch.rand(len(gens), generator=gens[0], dtype=torch.float64).tolist()  # one shared generator
        skip = greedy or [False] * len(gens)
        return [0.0 if s else torch.rand((), generator=g, dtype=torch.float64).item() for g, s in zip(gens, skip)]


