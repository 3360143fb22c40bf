"""Word overlap with each label's examples (labels/lexical.py) and how the rule uses it."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.labels.lexical import fit_lexical, terms
from edge_agent.labels.rule import OTHER, fit_rule, leave_one_out, normalised

EXAMPLES = [
    "battery low on the hallway sensor",
    "sensor battery almost empty",
    "disk usage above 90 percent",
    "disk almost full on node 4",
    "good morning everyone",
    "hello there, how are you",
]
CLASSES = np.array([0, 0, 1, 1, 2, 2])


def test_terms_are_lower_cased_words_and_adjacent_pairs() -> None:
    assert terms("Disk FULL, node_4!") == ["disk", "full", "node_4", "disk full", "full node_4"]
    assert terms("Füllstand niedrig") == ["füllstand", "niedrig", "füllstand niedrig"]
    assert terms("...") == []


def test_a_message_scores_highest_with_the_label_whose_words_it_shares() -> None:
    index = fit_lexical(EXAMPLES, CLASSES, 3)
    scores = index.scores(["the kitchen sensor battery is low", "disk usage on node 7"])
    assert scores.argmax(axis=1).tolist() == [0, 1]
    assert np.all(scores >= 0) and np.all(scores <= 1 + 1e-6)
    # Words no example has carry no evidence: zero for every label, not an error.
    assert not index.scores(["zzz qqq"]).any()


def test_leave_one_out_is_the_cosine_with_the_rest_of_its_label() -> None:
    index = fit_lexical(EXAMPLES, CLASSES, 3)
    rows = np.zeros((len(EXAMPLES), len(index.vocabulary)), dtype=np.float32)
    for i, text in enumerate(EXAMPLES):
        sparse = index.row(text)
        rows[i, sparse.columns] = sparse.weights
    held_out = index.leave_one_out(EXAMPLES, CLASSES)
    for i in range(len(EXAMPLES)):
        others = np.flatnonzero(np.equal(CLASSES, CLASSES[i]))
        rest = rows[others[others != i]].sum(axis=0)
        expected = float(rows[i] @ rest / np.linalg.norm(rest))
        assert held_out[i] == pytest.approx(expected, abs=1e-5)


def test_word_overlap_decides_between_labels_the_embedding_cannot_tell_apart() -> None:
    # Every example and message has the same embedding: only the words differ.
    same = normalised(np.ones((len(EXAMPLES), 8), dtype=np.float32))
    rule = fit_rule(same, CLASSES, 3, threshold=-1.0, texts=EXAMPLES)
    messages = ["battery of the door sensor", "disk full again", "good morning"]
    decided, probabilities = rule.decide(same[:3], messages)
    assert decided.tolist() == [0, 1, 2]
    assert probabilities.argmax(axis=1).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="text"):
        rule.decide(same[:3])


def test_negative_examples_have_words_too() -> None:
    same = normalised(np.ones((3, 8), dtype=np.float32))
    rule = fit_rule(
        same[:2],
        np.array([0, 0]),
        1,
        negatives=same[2:],
        threshold=-1.0,
        texts=["door opened", "front door open"],
        negative_texts=["door test run"],
    )
    decided, _ = rule.decide(same[:2], ["the door test run again", "front door opened"])
    assert decided.tolist() == [OTHER, 0]


def test_the_auto_threshold_counts_word_overlap_on_the_same_scale_as_decide() -> None:
    rng = np.random.default_rng(5)
    centres = normalised(rng.standard_normal((3, 16)))
    embeddings = normalised(centres[CLASSES] + 0.1 * rng.standard_normal((len(CLASSES), 16)))
    dense_only = fit_rule(embeddings, CLASSES, 3)
    with_words = fit_rule(embeddings, CLASSES, 3, texts=EXAMPLES)
    # Examples of a label share words, so their similarity, and the threshold, rise.
    assert with_words.threshold > dense_only.threshold
    _, _, similarity = with_words.explain(embeddings, EXAMPLES)
    assert (similarity >= with_words.threshold).mean() >= 0.8


def test_labels_check_counts_the_words_an_example_shares_with_its_label() -> None:
    # With one embedding for all, only words can put a left-out example back under its label.
    texts = [
        "smoke alarm in the kitchen",
        "smoke alarm in the hallway",
        "disk full on node 4",
        "disk full on node 7",
        "good morning everyone",
        "good morning team",
    ]
    same = normalised(np.ones((len(texts), 8), dtype=np.float32))
    words = fit_lexical(texts, CLASSES, 3)
    held_out = leave_one_out(same, CLASSES, 3, words, texts)
    assert held_out.nearest.tolist() == CLASSES.tolist()
    assert np.all(held_out.similarity > leave_one_out(same, CLASSES, 3).similarity)
