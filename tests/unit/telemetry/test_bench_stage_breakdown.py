"""bench/stage_breakdown.py reads the agent's /metrics text. Pinned here to what
render_prometheus writes, so that a renamed series fails a test instead of leaving the
benches' breakdown table silently empty."""

from __future__ import annotations

import pytest

from bench.stage_breakdown import AGENT, mean_ms, parse_totals
from edge_agent.telemetry.metrics import render_prometheus
from edge_agent.telemetry.stats import Stats


def _totals(stats: Stats) -> dict[str, tuple[float, int]]:
    return parse_totals(render_prometheus(stats.snapshot()))


def test_means_between_two_readings_are_per_message_and_per_stage() -> None:
    stats = Stats()
    stats.stage_took("infer", 3.0, messages=2)
    stats.result_published("r", "labelled", 4.0)
    before = _totals(stats)

    stats.stage_took("infer", 1.0, messages=4)  # one batch of four, 1 ms each
    stats.stage_took("queue", 0.5)
    stats.stage_took("queue", 1.5)
    stats.result_published("r", "labelled", 6.0)
    stats.result_published("r", "labelled", 8.0)
    stats.result_published("r", "invalid_utf8", None)  # no latency: not in the mean
    means = mean_ms(before, _totals(stats))

    assert means["infer"] == pytest.approx(1.0)
    assert means["queue"] == pytest.approx(1.0)
    assert means[AGENT] == pytest.approx(7.0)
    assert "encode" not in means  # nothing recorded between the readings


def test_every_stage_and_the_whole_are_read() -> None:
    totals = _totals(Stats())
    assert {"queue", "prepare", "tokenize", "infer", "encode", "handoff", AGENT} <= set(totals)
    assert all(count == 0 for _, count in totals.values())
