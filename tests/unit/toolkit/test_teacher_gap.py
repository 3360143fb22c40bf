"""What `model train` says when its student trails the dense teacher (pure)."""

from __future__ import annotations

from edge_agent.toolkit.train.pipeline import teacher_gap_note


def test_a_gap_over_one_and_a_half_points_is_named_and_a_smaller_one_is_not() -> None:
    assert teacher_gap_note(0.9400, 0.9300) is None
    assert teacher_gap_note(0.9400, 0.9250) is None  # exactly 1.5 points
    note = teacher_gap_note(0.9400, 0.9100)
    assert note is not None
    assert "0.9100" in note and "3.0 points below" in note and "(0.9400)" in note
