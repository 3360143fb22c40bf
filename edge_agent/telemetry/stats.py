"""Counters and a latency histogram shared by the stats topic and the Prometheus endpoint.

Pure bookkeeping: the worker thread records, readers take an immutable snapshot. A lock
guards the few mutations because the MQTT network thread, the worker and the metrics
server all touch it; every operation is O(1) so the lock is never held for long.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

# Upper bounds in milliseconds (Prometheus "le" buckets); +Inf is implicit.
LATENCY_BUCKETS_MS: Final[tuple[float, ...]] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
)  # fmt: skip


# Where a message's time goes, in the order it passes (docs/benchmarks.md, "Where the time
# goes"): waiting in the queue (from paho's network thread to its batch starting), the
# batch's preparation (attempt journal, decoding, routing), the tokenizer, onnxruntime,
# building the results, handing each to paho, and from paho to the broker's PUBACK.
# prepare/tokenize/infer/encode are per batch: every message in a batch waits for all of it.
STAGES: Final = ("queue", "prepare", "tokenize", "infer", "encode", "handoff", "puback")
# Stages are sub-millisecond on a fast CPU: finer buckets than end-to-end latency.
STAGE_BUCKETS_MS: Final[tuple[float, ...]] = (
    0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000,
)  # fmt: skip


@dataclass(frozen=True)
class StageSnapshot:
    bucket_counts: tuple[int, ...]  # one per STAGE_BUCKETS_MS entry, then +Inf
    sum_ms: float
    count: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class StatsSnapshot:
    messages_in: int
    messages_out: int
    # (route subscribe filter, outcome) -> count; outcome is "labelled" or an error code
    outcomes: dict[tuple[str, str], int]
    errors_by_code: dict[str, int]
    latency_bucket_counts: tuple[int, ...]  # one per LATENCY_BUCKETS_MS entry, then +Inf
    latency_sum_ms: float
    latency_count: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    batch_sizes: dict[int, int]
    queue_depth: int
    connected: bool
    models: dict[str, str]  # model name -> active version
    shed_qos0: int = 0  # QoS 0 messages dropped because the queue was at its bound
    stages: dict[str, StageSnapshot] = field(default_factory=dict)  # STAGES, in order


@dataclass
class Stats:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _messages_in: int = 0
    _messages_out: int = 0
    _outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    _errors: Counter[str] = field(default_factory=Counter)
    _buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    _latency_sum_ms: float = 0.0
    _latency_count: int = 0
    _batch_sizes: Counter[int] = field(default_factory=Counter)
    _queue_depth: int = 0
    _connected: bool = False
    _models: dict[str, str] = field(default_factory=dict)
    _shed_qos0: int = 0
    _rate_mark: tuple[float, int] | None = None  # (time, messages_in) at the last rate read
    _stage_buckets: dict[str, list[int]] = field(
        default_factory=lambda: {stage: [0] * (len(STAGE_BUCKETS_MS) + 1) for stage in STAGES}
    )
    _stage_sums_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def stage_took(self, stage: str, ms: float, messages: int = 1) -> None:
        """`messages` messages spent `ms` each in `stage` (one of STAGES)."""
        with self._lock:
            self._stage_buckets[stage][bisect.bisect_left(STAGE_BUCKETS_MS, ms)] += messages
            self._stage_sums_ms[stage] += ms * messages

    def qos0_shed(self) -> int:
        """One more QoS 0 message shed at the full queue; returns how many so far."""
        with self._lock:
            self._shed_qos0 += 1
            return self._shed_qos0

    def message_received(self) -> None:
        with self._lock:
            self._messages_in += 1

    def result_published(self, route: str, outcome: str, latency_ms: float | None) -> None:
        """Record one finished message: outcome "labelled" or the error code it got."""
        with self._lock:
            self._messages_out += 1
            self._outcomes[(route, outcome)] += 1
            if outcome != "labelled":
                self._errors[outcome] += 1
            if latency_ms is not None:
                self._buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
                self._latency_sum_ms += latency_ms
                self._latency_count += 1

    def batch_done(self, size: int) -> None:
        with self._lock:
            self._batch_sizes[size] += 1

    def set_queue_depth(self, depth: int) -> None:
        with self._lock:
            self._queue_depth = depth

    def set_connected(self, connected: bool) -> None:
        with self._lock:
            self._connected = connected

    def set_model(self, name: str, version: str) -> None:
        with self._lock:
            self._models[name] = version

    def messages_per_s(self, now: float) -> float:
        """Messages received per second since the previous call (one stats interval);
        since the first message on the first call."""
        with self._lock:
            mark, self._rate_mark = self._rate_mark, (now, self._messages_in)
            if mark is None:
                return 0.0
            elapsed = now - mark[0]
            return round((self._messages_in - mark[1]) / elapsed, 3) if elapsed > 0 else 0.0

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            buckets = tuple(self._buckets)
            return StatsSnapshot(
                messages_in=self._messages_in,
                messages_out=self._messages_out,
                outcomes=dict(self._outcomes),
                errors_by_code=dict(self._errors),
                latency_bucket_counts=buckets,
                latency_sum_ms=self._latency_sum_ms,
                latency_count=self._latency_count,
                latency_p50_ms=_quantile_from_buckets(buckets, 0.50),
                latency_p99_ms=_quantile_from_buckets(buckets, 0.99),
                batch_sizes=dict(self._batch_sizes),
                queue_depth=self._queue_depth,
                connected=self._connected,
                models=dict(self._models),
                shed_qos0=self._shed_qos0,
                stages={stage: self._stage_snapshot(stage) for stage in STAGES},
            )

    def _stage_snapshot(self, stage: str) -> StageSnapshot:
        buckets = tuple(self._stage_buckets[stage])
        return StageSnapshot(
            bucket_counts=buckets,
            sum_ms=self._stage_sums_ms[stage],
            count=sum(buckets),
            p50_ms=_quantile_from_buckets(buckets, 0.50, STAGE_BUCKETS_MS),
            p99_ms=_quantile_from_buckets(buckets, 0.99, STAGE_BUCKETS_MS),
        )


def _quantile_from_buckets(
    buckets: tuple[int, ...], q: float, bounds: tuple[float, ...] = LATENCY_BUCKETS_MS
) -> float | None:
    """Upper bound of the bucket holding quantile q; None before any observation.

    Bucket bounds, not exact values: a histogram keeps memory constant over months of
    uptime, which matters more on a Pi than a sub-millisecond-precise p99.
    """
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    running = 0
    for index, count in enumerate(buckets):
        running += count
        if running >= rank:
            return bounds[index] if index < len(bounds) else float("inf")
    return float("inf")


def stats_document(
    snapshot: StatsSnapshot, *, queue_depth: int, messages_per_s: float | None
) -> dict[str, object]:
    """What the stats topic publishes (schema in docs/design.md)."""
    return {
        "messages_in": snapshot.messages_in,
        "messages_out": snapshot.messages_out,
        "errors_by_code": snapshot.errors_by_code,
        "latency_p50_ms": snapshot.latency_p50_ms,
        "latency_p99_ms": snapshot.latency_p99_ms,
        "batch_sizes": {str(size): count for size, count in sorted(snapshot.batch_sizes.items())},
        "queue_depth": queue_depth,
        "shed_qos0": snapshot.shed_qos0,
        "models": snapshot.models,
        "stages_ms": {
            stage: {"p50": figures.p50_ms, "p99": figures.p99_ms, "count": figures.count}
            for stage, figures in snapshot.stages.items()
        },
        "messages_per_s": messages_per_s,
    }
