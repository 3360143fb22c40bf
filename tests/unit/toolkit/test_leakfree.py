"""Sentence-level splits: held-out sentences share no span with any training row."""

from __future__ import annotations

import random

import pytest

from edge_agent.toolkit.train.leakfree import (
    find_sentences,
    normalise,
    sentence_level_split,
    word_spans,
)


def test_word_spans_are_every_run_of_consecutive_words() -> None:
    assert sorted(word_spans("a fine  movie")) == sorted(
        ["a", "fine", "movie", "a fine", "fine movie", "a fine movie"]
    )


def test_sentences_are_the_rows_no_other_row_contains() -> None:
    rows = ["fine movie", "a fine movie", "dull plot , sadly", "a fine", "sadly", "dull plot"]
    assert [rows[i] for i in find_sentences(rows)] == ["a fine movie", "dull plot , sadly"]


def test_spans_are_taken_on_word_boundaries_and_repeats_count_once() -> None:
    rows = ["art", "a work of artifice", "art", "a  work"]
    # "art" is inside "artifice" only as characters; its repeat is not a second sentence
    assert [rows[i] for i in find_sentences(rows)] == ["art", "a work of artifice"]


def _phrase_bank(seed: int) -> tuple[list[str], list[str]]:
    """Sentences of random words, every sentence's phrases as further rows (as in SST-2),
    shuffled; labels alternate by sentence and phrases inherit their sentence's."""
    rng = random.Random(seed)
    words = [f"w{k}" for k in range(40)]
    texts: list[str] = []
    labels: list[str] = []
    for n in range(60):
        sentence = [rng.choice(words) for _ in range(rng.randint(3, 9))]
        label = "positive" if n % 2 else "negative"
        texts.append(" ".join(sentence))
        labels.append(label)
        for _ in range(6):
            start = rng.randrange(len(sentence))
            end = rng.randint(start + 1, len(sentence))
            texts.append(" ".join(sentence[start:end]))
            labels.append(label)
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order], [labels[i] for i in order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_training_row_is_a_span_of_a_held_out_or_validation_sentence(seed: int) -> None:
    texts, labels = _phrase_bank(seed)
    split = sentence_level_split(
        texts, labels, held_out_sentences=10, validation_sentences=5, seed=seed
    )
    assert (len(split.held_out), len(split.validation)) == (10, 5)
    sentences = set(find_sentences(texts))
    assert set(split.held_out) | set(split.validation) <= sentences
    kept_apart = {span for i in split.held_out + split.validation for span in word_spans(texts[i])}
    assert all(normalise(texts[i]) not in kept_apart for i in split.train)
    assert all(normalise(texts[i]) in kept_apart for i in split.removed)
    every = split.held_out + split.validation + split.train + split.removed
    assert sorted(every) == list(range(len(texts)))
    assert split.removed, "the phrases cut from held-out sentences must have been found"


def test_the_split_is_stratified_and_the_same_for_the_same_seed() -> None:
    texts, labels = _phrase_bank(7)
    first = sentence_level_split(
        texts, labels, held_out_sentences=20, validation_sentences=10, seed=3
    )
    again = sentence_level_split(
        texts, labels, held_out_sentences=20, validation_sentences=10, seed=3
    )
    assert first == again
    held_labels = [labels[i] for i in first.held_out + first.validation]
    assert abs(held_labels.count("positive") - held_labels.count("negative")) <= 2


def test_asking_for_more_sentences_than_there_are_is_an_error() -> None:
    with pytest.raises(ValueError, match="found"):
        sentence_level_split(
            ["a b", "a"], ["x", "x"], held_out_sentences=1, validation_sentences=1, seed=0
        )
