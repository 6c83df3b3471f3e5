"""Input checks that every entry point shares (pipeline, layout, endless streams, CLI, app): one
message per mistake, written once.

A whole request is checked by `FlashVideoPipeline.check_settings` (frame counts, ratio, seed) and
`sampler.SamplingSettings` (temperature, top-k, top-p, guidance); the prompt's words by the
tokenizer (`WordTokenizer.encode`: unknown words, the grammar). What is left for this module is the
part none of them owns: a prompt that says nothing at all.
"""
from __future__ import annotations

EXAMPLE_PROMPT = "a red circle moves right"
EMPTY_PROMPT = f"empty prompt: describe the video, e.g. '{EXAMPLE_PROMPT}'"


def check_prompt(prompt) -> str:
    """The prompt, if it is text with something besides white space; ValueError(EMPTY_PROMPT) otherwise."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(EMPTY_PROMPT)
    return prompt


def check_text_ids(text_ids) -> list:
    """A tokenized prompt must hold at least one word id; ValueError(EMPTY_PROMPT) otherwise."""
    text_ids = list(text_ids)
    if not text_ids:
        raise ValueError(EMPTY_PROMPT)
    return text_ids
