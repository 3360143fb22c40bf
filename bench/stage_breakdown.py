"""Where a phase's time went inside the agent: its stage histograms read from /metrics.

The agent's Prometheus endpoint keeps cumulative sums and counts per stage (queue, prepare,
tokenize, infer, encode, handoff; telemetry/stats.py) and of each result's `latency_ms`
(received on paho's thread to the result built, before the hand-off back to paho). Read
before and after a phase, their differences give the mean milliseconds a labelled message
spent in each during that phase.
Means and not percentiles, because means add up: what the stages do not account for of the
bench's own end-to-end mean is the time outside the agent's measure (mosquitto_pub to the
broker to paho's network thread; the hand-off to paho and its network thread's write back
through the broker to mosquitto_sub), which the echo floor bounds from below.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Mapping
from typing import Final

# In the order a message passes them; "puback" is left out: it follows the result's publish
# and is not on the path the bench times.
STAGES: Final = ("queue", "prepare", "tokenize", "infer", "encode", "handoff")
AGENT: Final = "agent"  # latency_ms: received on paho's thread -> the result built

_SERIES: Final = re.compile(
    r'^edge_agent_(?:stage_seconds_(?P<stat>sum|count)\{stage="(?P<stage>\w+)"\}'
    r"|message_latency_seconds_(?P<whole>sum|count))\s+(?P<value>\S+)$"
)

Totals = dict[str, tuple[float, int]]  # stage -> (seconds summed, messages)


def parse_totals(exposition: str) -> Totals:
    """Sums and counts of the stage and message-latency histograms in Prometheus text."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for line in exposition.splitlines():
        match = _SERIES.match(line)
        if match is None:
            continue
        stage = match["stage"] or AGENT
        if (match["stat"] or match["whole"]) == "sum":
            sums[stage] = float(match["value"])
        else:
            counts[stage] = int(float(match["value"]))
    return {stage: (sums.get(stage, 0.0), counts.get(stage, 0)) for stage in {*sums, *counts}}


def read_totals(port: int, host: str = "127.0.0.1") -> Totals:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        return parse_totals(response.read().decode())


def mean_ms(before: Totals, after: Totals) -> dict[str, float]:
    """Mean ms per message of each stage between two readings (stages with no messages in
    between are left out)."""
    means = {}
    for stage, (seconds, count) in after.items():
        seconds_before, count_before = before.get(stage, (0.0, 0))
        if count > count_before:
            means[stage] = 1000 * (seconds - seconds_before) / (count - count_before)
    return means


def breakdown_rows(
    phases: Mapping[str, Mapping[str, float]],
    end_to_end_ms: Mapping[str, float],
    echo_ms: Mapping[str, float],
) -> list[str]:
    """A Markdown table: one row per phase, the stages' means, the agent's `latency_ms`, the
    bench's end-to-end mean and what is left outside `latency_ms`, beside the echo floor's."""
    rows = [
        "| phase | " + " | ".join(STAGES) + " | agent's latency_ms "
        "| end to end (bench) | outside latency_ms | echo floor, end to end |",
        "|---" * (len(STAGES) + 5) + "|",
    ]
    for phase, means in phases.items():
        if AGENT not in means or phase not in end_to_end_ms:
            continue
        cells = [f"{means[stage]:.2f}" if stage in means else "" for stage in STAGES]
        outside = end_to_end_ms[phase] - means[AGENT]
        echo = f"{echo_ms[phase]:.2f}" if phase in echo_ms else ""
        rows.append(
            f"| {phase} | {' | '.join(cells)} | {means[AGENT]:.2f} | "
            f"{end_to_end_ms[phase]:.2f} | {outside:.2f} | {echo} |"
        )
    return rows
