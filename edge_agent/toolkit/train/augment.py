"""New texts made from training texts, for distillation: the teacher labels them, softly.

A student copies its teacher well where it has seen the teacher answer. Near the training
texts, but off them, is where the two drift apart, and that is exactly where out-of-scope
queries lie: "what is my credit score for the flight" is neither `credit_score` nor a
booking. Recombining the words of two training texts gives such inputs (TinyBERT's
augmentation step does the same with a masked language model; word-level recombination
needs no extra model and stays reproducible from a seed).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Final

MAX_SPAN: Final = 3  # words replaced or dropped at a time


def recombined_texts(texts: Sequence[str], count: int, seed: int) -> list[str]:
    """`count` texts, each one training text changed by one of three edits: a span of it
    replaced by a span of another text, its start joined to another text's end, or one or
    two of its words dropped. Texts of fewer than two words are only used as donors."""
    words = [text.split() for text in texts]
    bases = [w for w in words if len(w) >= 2]
    donors = [w for w in words if w]
    if not bases:
        raise ValueError("recombination needs texts of at least two words")
    rng = random.Random(seed)
    edits: tuple[Callable[[random.Random, list[str], list[str]], list[str]], ...] = (
        _swap_span,
        _splice,
        _drop_words,
    )
    made: list[str] = []
    while len(made) < count:
        edit = rng.choice(edits)
        made.append(" ".join(edit(rng, rng.choice(bases), rng.choice(donors))))
    return made


def _span(rng: random.Random, words: list[str]) -> tuple[int, int]:
    length = rng.randint(1, min(MAX_SPAN, len(words)))
    start = rng.randint(0, len(words) - length)
    return start, start + length


def _swap_span(rng: random.Random, base: list[str], donor: list[str]) -> list[str]:
    start, end = _span(rng, base)
    donor_start, donor_end = _span(rng, donor)
    return [*base[:start], *donor[donor_start:donor_end], *base[end:]]


def _splice(rng: random.Random, base: list[str], donor: list[str]) -> list[str]:
    cut = rng.randint(1, len(base) - 1)
    donor_cut = rng.randint(0, len(donor) - 1)
    return [*base[:cut], *donor[donor_cut:]]


def _drop_words(rng: random.Random, base: list[str], _donor: list[str]) -> list[str]:
    start, end = _span(rng, base[:-1] if len(base) > 2 else base[:1])
    end = min(end, start + 2)
    return [*base[:start], *base[end:]]
