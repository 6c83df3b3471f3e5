"""Prompt words <-> ids: the text half of the "vq" tokenizer (`flashvideo.tokenizer.VQTokenizer`)."""
from __future__ import annotations

import re


def _words(text: str) -> list[str]:
    """Lower-case, punctuation -> space, split on whitespace."""
    return re.sub(r"[^\w\s]|_", " ", text.lower()).split()


class WordTokenizer:
    """Word-level tokenizer over a fixed vocabulary: word i of `vocab` has id i+1, id 0 is padding.

    With ``slots`` (a grammar, e.g. ``{"colour": ["red", ...], "shape": [...], "motion": ["moves left",
    ..., "grows"]}``) a prompt must name exactly one phrase of every slot, in any order, and is encoded
    in the slot order: "circle right red moves" reads as "red circle moves right", and "a circle moves
    right" is refused with a message naming the missing colour and the choices. Without slots the
    words are encoded as given."""

    def __init__(self, vocab: list[str], ignore: tuple[str, ...] = ("a", "an", "the"),
                 slots: dict[str, list[str]] | None = None):
        vocab, ignore = list(vocab), tuple(ignore)
        bad = [w for w in vocab if not isinstance(w, str) or _words(w) != [w]]
        if bad:
            raise ValueError(f"vocabulary words must be single lower-case words without punctuation, got {bad}")
        dup = sorted({w for w in vocab if vocab.count(w) > 1})
        if dup:
            raise ValueError(f"vocabulary has duplicate words {dup}")
        clash = sorted(set(vocab) & set(ignore))
        if clash:
            raise ValueError(f"words {clash} are both in the vocabulary and ignored")
        if not vocab:
            raise ValueError("vocabulary is empty")
        self.vocab, self.ignore = vocab, ignore
        self._ids = {w: i + 1 for i, w in enumerate(vocab)}
        self.slots = {str(k): [str(p) for p in v] for k, v in (slots or {}).items()}
        outside = sorted({w for v in self.slots.values() for p in v for w in _words(p)} - set(vocab))
        if outside:
            raise ValueError(f"grammar phrases use words {outside} that are not in the vocabulary")

    @property
    def n_text(self) -> int:
        return len(self.vocab) + 1

    def encode(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        words = [w for w in _words(prompt) if w not in self.ignore]
        if not words:
            raise ValueError(f"empty prompt {prompt!r}: it has no words besides {list(self.ignore)}")
        unknown = [w for w in dict.fromkeys(words) if w not in self._ids]
        if unknown:
            raise ValueError(f"unknown words {unknown} in prompt {prompt!r}; known words: {', '.join(self.vocab)}")
        if self.slots:
            words = self._canonical(prompt, words)
        return [self._ids[w] for w in words]

    def _canonical(self, prompt: str, words: list[str]) -> list[str]:
        """The prompt's phrases in slot order; ValueError naming a missing, repeated or stray part."""
        left, found = list(words), {}
        for slot, phrases in self.slots.items():
            for phrase in sorted(phrases, key=lambda p: -len(p.split())):  # "moves left" before "moves"
                parts = phrase.split()
                if all(w in left for w in parts):
                    found.setdefault(slot, []).append(phrase)
                    for w in parts:
                        left.remove(w)
        missing = [slot for slot in self.slots if slot not in found]
        if missing:
            choices = "; ".join(f"{slot}: {', '.join(self.slots[slot])}" for slot in missing)
            raise ValueError(f"prompt {prompt!r} has no {' and no '.join(missing)}; name one ({choices}), "
                             f"e.g. 'a red circle moves right'")
        twice = {slot: v for slot, v in found.items() if len(v) > 1}
        if twice:
            raise ValueError(f"prompt {prompt!r} names more than one {' and '.join(twice)}: "
                             f"{'; '.join(', '.join(v) for v in twice.values())}; name one of each")
        if left:
            raise ValueError(f"prompt {prompt!r}: the word(s) {left} do not fit its description; "
                             f"expected one {', one '.join(self.slots)}, e.g. 'a red circle moves right'")
        return [w for slot in self.slots for w in found[slot][0].split()]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.n_text]
        if bad:
            raise ValueError(f"text ids {bad} are outside [0, {self.n_text})")
        return " ".join(self.vocab[i - 1] for i in ids if i != 0)

    def to_dict(self) -> dict:
        return {"vocab": list(self.vocab), "ignore": list(self.ignore), **({"slots": self.slots} if self.slots else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "WordTokenizer":
        return cls(d["vocab"], tuple(d.get("ignore", ("a", "an", "the"))), d.get("slots"))
