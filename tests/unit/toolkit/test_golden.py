"""Which texts become a bundle's golden examples (pure: predictions in, examples out)."""

from __future__ import annotations

from edge_agent.engine.prediction import LabelScore, Prediction
from edge_agent.toolkit.export.pack import choose_golden


def _prediction(label: str, score: float, runner_up: str = "other") -> Prediction:
    top_k = (LabelScore(label, score), LabelScore(runner_up, 1.0 - score))
    return Prediction(label, score, top_k, (label,), False, "tiny", "1.0.0")


def test_goldens_come_from_the_most_confident_labels_first() -> None:
    # Labels in alphabetical order have only unsure examples; picking them would let a
    # rounding difference between CPUs move a golden score past the tolerance.
    predictions = [
        _prediction("alarm", 0.55),
        _prediction("balance", 0.58),
        _prediction("weather", 0.995),
        _prediction("weather", 0.97),
        _prediction("timer", 0.99),
    ]
    texts = [f"text {i}" for i in range(len(predictions))]
    golden = choose_golden(texts, predictions, None, 3)
    assert [(g.label, g.score) for g in golden] == [
        ("weather", 0.995),
        ("timer", 0.99),
        ("balance", 0.58),
    ]


def test_texts_near_the_reject_threshold_and_disagreements_are_never_golden() -> None:
    predictions = [_prediction("alarm", 0.99), _prediction("timer", 0.98), _prediction("x", 0.9)]
    fp32 = [_prediction("alarm", 0.99), _prediction("timer", 0.98), _prediction("y", 0.9)]
    texts = ["set an alarm", "start a timer", "flip"]
    golden = choose_golden(texts, predictions, fp32, 3, near_reject_threshold=frozenset({0}))
    assert [g.text for g in golden] == ["start a timer"]


def test_texts_whose_score_moves_without_saturation_come_last() -> None:
    # `unsaturated`: the same INT8 integers in a kernel that cannot saturate (ARM, VNNI);
    # a golden must reproduce there as well as on the x86 CPU that packed it.
    predictions = [_prediction("alarm", 0.995), _prediction("timer", 0.99), _prediction("x", 0.9)]
    unsaturated = [
        _prediction("alarm", 0.9925),  # moved by 2.5e-3: would fail on ARM
        _prediction("timer", 0.9901),  # moved by 1e-4: within rounding
        _prediction("y", 0.9),  # another label
    ]
    texts = ["set an alarm", "start a timer", "flip"]
    assert [
        g.text for g in choose_golden(texts, predictions, None, 1, unsaturated=unsaturated)
    ] == ["start a timer"]
    # too few portable texts: the one that moves least fills up; a changed label never does
    golden = choose_golden(texts, predictions, None, 3, unsaturated=unsaturated)
    assert [g.text for g in golden] == ["start a timer", "set an alarm"]
