"""The reject rule's two scores on logits built to tell them apart."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.engine.out_of_scope import in_scope_scores, out_of_scope_rows

LABELS = ("alarm", "weather", "oos")


def test_probability_is_the_top_softmax_probability() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, -30.0]], dtype=np.float32)
    expected = np.exp(logits).max(axis=1) / np.exp(logits).sum(axis=1)
    scores = in_scope_scores(logits, LABELS, "oos", "probability")
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_energy_keeps_how_strongly_the_model_responds() -> None:
    # Same softmax (logits differ by a constant), so the same probability; the weak
    # response is what energy sees: log(e^1 + e^0) vs log(e^9 + e^8).
    strong = [9.0, 8.0, 0.0]
    weak = [1.0, 0.0, -8.0]
    logits = np.array([strong, weak], dtype=np.float32)
    probability = in_scope_scores(logits, LABELS, "oos", "probability")
    assert probability[0] == pytest.approx(probability[1])
    energy = in_scope_scores(logits, LABELS, "oos", "energy")
    np.testing.assert_allclose(energy, np.log(np.exp([9, 1]) + np.exp([8, 0])), rtol=1e-6)
    assert list(out_of_scope_rows(logits, LABELS, "oos", "energy", 5.0)) == [False, True]


def test_top_label_being_the_reject_label_is_rejected_at_any_threshold() -> None:
    logits = np.array([[30.0, 29.0, 31.0]], dtype=np.float32)
    for kind in ("probability", "energy"):
        assert out_of_scope_rows(logits, LABELS, "oos", kind, -1e9).tolist() == [True]
    # a reject label the model has no class for: only the score decides
    assert out_of_scope_rows(logits, LABELS[:2], "oos", "energy", 0.0).tolist() == [False]


def test_unknown_score_is_refused() -> None:
    with pytest.raises(ValueError, match="'margin'"):
        in_scope_scores(np.zeros((1, 3), dtype=np.float32), LABELS, "oos", "margin")
