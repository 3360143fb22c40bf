"""The example rule on synthetic embeddings whose geometry is known: clusters around random
directions in 64 dimensions, so which label a point belongs to is decided by construction."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.labels.rule import OTHER, auto_threshold, fit_rule, leave_one_out, normalised

DIM = 64


def _clusters(
    rng: np.random.Generator, centres: np.ndarray, per_label: int, spread: float
) -> tuple[np.ndarray, np.ndarray]:
    targets = np.repeat(np.arange(len(centres)), per_label)
    points = centres[targets] + spread * rng.standard_normal((len(targets), DIM))
    return normalised(points), targets


def test_points_near_a_label_get_it_and_points_near_none_get_other() -> None:
    rng = np.random.default_rng(0)
    centres = normalised(rng.standard_normal((5, DIM)))
    examples, targets = _clusters(rng, centres, per_label=6, spread=0.08)
    rule = fit_rule(examples, targets, 5)
    queries, truth = _clusters(rng, centres, per_label=20, spread=0.08)
    decided, probabilities = rule.decide(queries)
    assert (decided == truth).mean() >= 0.95
    assert probabilities.shape == (100, 5)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    unrelated = normalised(rng.standard_normal((50, DIM)))  # far from every centre
    assert (rule.decide(unrelated)[0] == OTHER).mean() >= 0.95


def test_a_message_nearest_the_negatives_is_other() -> None:
    rng = np.random.default_rng(1)
    centres = normalised(rng.standard_normal((3, DIM)))
    examples, targets = _clusters(rng, centres[:2], per_label=5, spread=0.05)
    negatives, _ = _clusters(rng, centres[2:], per_label=5, spread=0.05)
    rule = fit_rule(examples, targets, 2, negatives, threshold=-1.0)
    near_negatives, _ = _clusters(rng, centres[2:], per_label=10, spread=0.05)
    assert (rule.decide(near_negatives)[0] == OTHER).all()
    near_first, _ = _clusters(rng, centres[:1], per_label=10, spread=0.05)
    assert (rule.decide(near_first)[0] == 0).all()


def test_the_auto_threshold_rejects_about_one_example_in_twenty() -> None:
    rng = np.random.default_rng(2)
    centres = normalised(rng.standard_normal((10, DIM)))
    examples, targets = _clusters(rng, centres, per_label=20, spread=0.1)
    threshold = auto_threshold(examples, targets, 10)
    similarity = leave_one_out(examples, targets, 10).similarity
    assert 0.03 <= (similarity < threshold).mean() <= 0.07
    # Fresh points from the same clusters are rejected at about the same rate.
    queries, _ = _clusters(rng, centres, per_label=200, spread=0.1)
    rule = fit_rule(examples, targets, 10)
    assert (rule.decide(queries)[0] == OTHER).mean() <= 0.12


def test_leave_one_out_finds_the_example_that_sits_with_another_label() -> None:
    rng = np.random.default_rng(3)
    centres = normalised(rng.standard_normal((2, DIM)))
    examples, targets = _clusters(rng, centres, per_label=4, spread=0.05)
    targets[0] = 1  # an example of label 0 filed under label 1
    held_out = leave_one_out(examples, targets, 2)
    assert held_out.nearest[0] == 0
    assert (held_out.nearest[1:] == targets[1:]).all()


def test_a_label_with_one_example_cannot_be_left_out() -> None:
    rng = np.random.default_rng(4)
    centres = normalised(rng.standard_normal((2, DIM)))
    examples, targets = _clusters(rng, centres, per_label=1, spread=0.05)
    held_out = leave_one_out(examples, targets, 2)
    assert np.isnan(held_out.similarity).all()
    assert auto_threshold(examples, targets, 2) == 0.3  # the documented fallback


def test_a_tie_goes_to_the_label_with_more_examples_however_alike_they_are() -> None:
    # Identical embeddings under labels of 2 and 1 examples: the regression can only learn the
    # labels' sizes. At the full learning rate gradient descent overshot that balance and
    # handed the tie to the smaller label by 26 logits.
    same = normalised(np.ones((3, DIM)))
    rule = fit_rule(same[:2], np.array([0, 0]), 1, negatives=same[2:], threshold=-1.0)
    decided, _ = rule.decide(same[:1])
    assert decided.tolist() == [0]
    logits = 10.0 * same[:1] @ rule.weights.T + rule.bias
    assert logits[0, 0] - logits[0, 1] == pytest.approx(np.log(2), abs=0.05)
