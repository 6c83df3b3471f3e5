"""The Serial Number layout (paper section 3.2): repeated text plus a learnable SN token per frame.

Every frame is preceded by the same header, so a frame slot is always `frame_len` tokens:

    [task] [text_1 .. text_len] [SN_k] [code_1 .. code_(grid*grid)]

* Key frames (task KEY):            slot k holds key frame k with SN k, k = 1..K.
* Interpolation (task INTERP), n frames between key frames A and B:
      slot 1: A with SN 1,  slot 2: B with SN n+2,  slot j+1: in-between frame j with SN j+1 (j = 1..n)
  and the frames are put back in time order afterwards: A, F_2 .. F_(n+1), B.

One model serves both tasks; the task token (repeated in every header, so the retention decay never
forgets it) tells it which sequence it is in. With the config's `interp_count_token` an interpolation's task
token also names n (`interp_task`): without it, n is only in B's serial number, frames back, and the model
placed in-between frame j by j more than by n (at n = 7 the seventh frame already sat at B).
Prompts are padded to `text_len` words with id 0.

Token sequences use -1 for a code that is not known yet (to be sampled). All sizes come from the config.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import validation
from .config import FlashVideoConfig

KEY, INTERP = 0, 1  # task ids (interpolation with n frames: INTERP + n - 1 under `interp_count_token`)
UNKNOWN = -1


@dataclass(frozen=True)
class Layout:
    config: FlashVideoConfig

    @property
    def header_len(self) -> int:
        return 1 + self.config.text_len + 1  # task, text, SN

    @property
    def frame_len(self) -> int:
        return self.header_len + self.config.frame_tokens

    def text_block(self, text_ids) -> torch.Tensor:
        """Prompt word ids (1..n_text-1) -> (text_len,) unified ids, padded."""
        c = self.config
        text_ids = validation.check_text_ids(text_ids)
        if len(text_ids) > c.text_len:
            raise ValueError(f"prompt has {len(text_ids)} words; this model reads at most {c.text_len}")
        if not all(1 <= t < c.n_text for t in text_ids):
            raise ValueError(f"text ids must lie in [1, {c.n_text})")
        padded = text_ids + [0] * (c.text_len - len(text_ids))
        return torch.tensor(padded, dtype=torch.long) + c.text_offset

    def null_text(self) -> torch.Tensor:
        """(text_len,) all-padding text block: the "no prompt" condition of classifier-free guidance
        (training drops prompts to it; decoding with a guidance scale runs it beside the prompt)."""
        return torch.zeros(self.config.text_len, dtype=torch.long) + self.config.text_offset

    def header(self, task: int, text: torch.Tensor, sn: int) -> torch.Tensor:
        """(header_len,) tokens: task, padded text (from `text_block`), SN_sn."""
        c = self.config
        if not 1 <= sn <= c.n_sn:
            raise ValueError(f"serial number {sn} outside 1..{c.n_sn}")
        return torch.cat([torch.tensor([c.task_offset + task]), text, torch.tensor([c.sn_offset + sn - 1])])

    def _slots(self, task, text, sns, frames) -> torch.Tensor:
        """Concatenate header(sn) + frame codes for each slot. frames (S, grid, grid), -1 = unknown;
        text (text_len,) for every slot, or (S, text_len): one per slot (a prompt schedule)."""
        texts = text if text.ndim == 2 else [text] * len(frames)
        return torch.cat([torch.cat([self.header(task, t, sn), f.reshape(-1).long()])
                          for t, sn, f in zip(texts, sns, frames)])

    # ---- key frames ------------------------------------------------------------------------
    def key_sns(self, n_frames: int, lead_in: int = 0) -> list[int]:
        """Serial numbers of a video's n_frames key frames, 1..n_frames; with `lead_in` (`SamplingSettings.lead_in`)
        those of the lead-in key frames first (1..lead_in, drawn and dropped), the video's following from lead_in + 1.
        A first frame drawn from the prompt alone is the likeliest to be wrong; the next continues its object and
        mends it more often than not."""
        if not 1 <= n_frames <= self.config.max_key_frames:
            raise ValueError(f"key_frames={n_frames} outside 1..{self.config.max_key_frames}")
        return [self.key_sn(k) for k in range(1, lead_in + n_frames + 1)]

    def key_sn(self, k: int) -> int:
        """Serial number of key frame k (1-based) of a stream of any length: 1..n_sn, then round again.
        Retention forgets frames long before n_sn of them have passed, so a cycling counter is all a
        long stream needs; training starts sequences at random points of the cycle (`key_sequence`)."""
        return (k - 1) % self.config.n_sn + 1

    def key_sequence(self, text: torch.Tensor, frames: torch.Tensor, first: int = 1) -> torch.Tensor:
        """frames (K, grid, grid) codes, -1 where unknown -> (K * frame_len,) tokens. Key frame i has
        serial number key_sn(first + i); text is one prompt, or one per frame (K, text_len)."""
        if first == 1:
            self.key_sns(len(frames))  # a video (not a stream) is bounded by max_key_frames
        return self._slots(KEY, text, [self.key_sn(first + i) for i in range(len(frames))], frames)

    # ---- interpolation ---------------------------------------------------------------------
    def interp_sns(self, n: int) -> list[int]:
        """SN per slot: A gets 1, B gets n+2, the in-between frames 2..n+1."""
        if not 1 <= n <= self.config.max_interp_frames:
            raise ValueError(f"interp_frames={n} outside 1..{self.config.max_interp_frames}")
        return [1, n + 2] + list(range(2, n + 2))

    def interp_task(self, n: int) -> int:
        """Task id of an interpolation with n in-between frames."""
        return INTERP + (n - 1 if self.config.interp_count_token else 0)

    def interp_sequence(self, text: torch.Tensor, a, b, middle: torch.Tensor) -> torch.Tensor:
        """a, b (grid, grid); middle (n, grid, grid), -1 where unknown -> ((n+2) * frame_len,)."""
        frames = torch.cat([a[None], b[None], middle])
        return self._slots(self.interp_task(len(middle)), text, self.interp_sns(len(middle)), frames)

    def draft(self, codes: torch.Tensor) -> torch.Tensor:
        """A frame slot's draft for drafted decoding (`sampling.Decoder.run`): no guess for its header, then `codes`
        (..., grid, grid) -> (..., frame_len)."""
        codes = codes.flatten(-2).long()
        return torch.cat([torch.full((*codes.shape[:-1], self.header_len), UNKNOWN), codes], -1)

    # ---- positions and teacher forcing -----------------------------------------------------
    def code_positions(self, slot: int) -> slice:
        """Positions of slot's image codes in a sequence (slot is 0-based)."""
        start = slot * self.frame_len + self.header_len
        return slice(start, start + self.config.frame_tokens)

    def targets(self, tokens: torch.Tensor, generated_slots) -> torch.Tensor:
        """Teacher-forcing labels for the parallel form: targets[p] = tokens[p+1] when p+1 is an
        image code of a slot the model must generate, else -100. Text, SN tokens, headers and
        given frames never carry a loss. tokens (..., L) -> (..., L)."""
        mask = torch.zeros(tokens.shape[-1], dtype=torch.bool)
        for s in generated_slots:
            mask[self.code_positions(s)] = True
        targets = torch.full_like(tokens, -100)
        targets[..., :-1] = torch.where(mask[1:], tokens[..., 1:], torch.full_like(tokens[..., 1:], -100))
        return targets
