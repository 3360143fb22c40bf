"""Splits that share no text: whole sentences held out, and every row cut from them removed.

SST-2's train.tsv holds about 67,000 rows that are the constituents of the parse trees of
about 6,900 review sentences: the sentences themselves and every phrase cut from them. A
random row split puts a held-out phrase's parent sentence and its sibling phrases in
training, so the held-out figure measures memory, not generalisation (issue 14: 90.8% on
such a split, 86.0% on the official dev set of whole sentences).

Here the sentences are the rows that are no span of another row; a split holds out whole
sentences and drops from training every row that is a span of one of them. Spans are taken
on word boundaries (the rows are PTB-tokenised: a phrase is a run of a sentence's tokens), so
"art" is not a span of "a work of artifice". Pure Python, no torch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


def normalise(text: str) -> str:
    """Single spaces between words: the form spans are compared in."""
    return " ".join(text.split())


def word_spans(text: str) -> Iterator[str]:
    """Every run of consecutive words of `text`, itself included (n words: n(n+1)/2 runs)."""
    words = text.split()
    for start in range(len(words)):
        for end in range(start + 1, len(words) + 1):
            yield " ".join(words[start:end])


def find_sentences(texts: Sequence[str]) -> list[int]:
    """Indices of the rows that are a span of no other row, in input order.

    Longest rows first: a row that is a span of any longer row is also a span of a sentence
    (the longer row is a sentence, or a span of one), so only the sentences' spans need to be
    enumerated. Of rows that are equal after normalising, the first counts.
    """
    normalised = [normalise(text) for text in texts]
    index: dict[str, int] = {}
    for i, text in enumerate(normalised):
        index.setdefault(text, i)
    covered = [index[text] != i for i, text in enumerate(normalised)]  # repeats of earlier rows
    sentences: list[int] = []
    for i in sorted(range(len(texts)), key=lambda k: (-len(texts[k].split()), k)):
        if covered[i]:
            continue
        sentences.append(i)
        for span in word_spans(texts[i]):
            j = index.get(span)
            if j is not None and j != i:
                covered[j] = True
    return sorted(sentences)


@dataclass(frozen=True)
class SentenceSplit:
    """Row indices. `held_out` and `validation` are whole sentences; `train` holds no row that
    is a span of either; `removed` are the rows dropped from training for that reason."""

    held_out: list[int]
    validation: list[int]
    train: list[int]
    removed: list[int]
    sentences: int


def sentence_level_split(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    held_out_sentences: int,
    validation_sentences: int,
    seed: int,
) -> SentenceSplit:
    """Hold out whole sentences (stratified by label, the same seed gives the same split)
    and keep for training only rows that share no span with them."""
    sentences = find_sentences(texts)
    if held_out_sentences + validation_sentences > len(sentences):
        raise ValueError(
            f"{held_out_sentences} + {validation_sentences} sentences asked for,"
            f" {len(sentences)} found"
        )
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i in sentences:
        by_label.setdefault(labels[i], []).append(i)
    share = (held_out_sentences + validation_sentences) / len(sentences)
    drawn: list[int] = []
    for label in sorted(by_label):
        members = by_label[label]
        rng.shuffle(members)
        drawn += members[: round(len(members) * share)]
    rng.shuffle(drawn)
    # rounding per label can miss the total by a row or two: top up or cut from the rest
    already = set(drawn)
    rest = [i for i in sentences if i not in already]
    rng.shuffle(rest)
    drawn = (drawn + rest)[: held_out_sentences + validation_sentences]
    held_out, validation = drawn[:held_out_sentences], drawn[held_out_sentences:]

    kept_apart = set(drawn)
    # a few hundred thousand strings for ~1,500 sentences: cheap, and it catches repeats too
    spans_of_kept = {span for i in drawn for span in word_spans(texts[i])}
    removed: list[int] = []
    train: list[int] = []
    for i, text in enumerate(texts):
        if i not in kept_apart:
            (removed if normalise(text) in spans_of_kept else train).append(i)
    return SentenceSplit(
        held_out=sorted(held_out),
        validation=sorted(validation),
        train=train,
        removed=removed,
        sentences=len(sentences),
    )
