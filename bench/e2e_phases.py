"""One measured phase of an end-to-end bench: publish at a rate, read every result, diff.

mosquitto_pub sends and mosquitto_sub stamps (C clients: on a 2-core machine a Python
collector would compete with the subject for the cores); `measure` starts a subject,
saturates it and runs its paced phases.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.e2e_setup import log
from bench.stage_breakdown import Totals, mean_ms
from tests.support.broker import Broker
from tests.support.traffic import BulkPublisher, NotifyListener, rss_kib


@dataclass
class Phase:
    rate: float  # messages/s achieved (saturation) or offered (paced)
    latencies_ms: list[float]
    missing: int
    duplicates: int


class ResultReader:
    """mosquitto_sub on the results topic, each line stamped with its arrival time (-F %U):
    a C client, so that on a 2-core machine the latency measured is the subject's and not
    that of a Python collector competing with it for the cores."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self._process = subprocess.Popen(
            [
                "mosquitto_sub",
                *("-h", broker.host, "-p", str(broker.port), "-V", "mqttv5", "-q", "1"),
                *("-t", topic, "-F", "%U %p"),
            ],
            stdout=subprocess.PIPE,
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.first_seen: dict[str, float] = {}  # id -> arrival (unix seconds)
        self.copies: dict[str, int] = {}
        # Read from the start: a full stdout pipe would stall mosquitto_sub and its stamps.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        time.sleep(0.5)  # subscribed before the first result exists

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            stamp, _, payload = line.partition(b" ")
            key = str(json.loads(payload).get("id"))
            with self._changed:
                self.copies[key] = self.copies.get(key, 0) + 1
                self.first_seen.setdefault(key, float(stamp))
                self._changed.notify_all()

    def wait_for(self, keys: set[str], timeout_s: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: keys <= self.first_seen.keys(), timeout_s)

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        self._reader.join(10)  # stdout has closed: nothing more is appended while we count


def run_phase(
    broker: Broker,
    topic: str,
    texts: Sequence[str],
    *,
    tag: str,
    count: int,
    rate: float | None,
    timeout_s: float = 300,
) -> Phase:
    """Publish `count` messages with ids `<tag>-<n>` through mosquitto_pub (QoS 1), paced at
    `rate` or all at once (rate None: saturation), wait for their labels, diff sent against
    labelled. Latency: the line handed to mosquitto_pub -> the result's arrival at
    mosquitto_sub, both on this machine's wall clock."""
    keys = [f"{tag}-{n}" for n in range(count)]
    payloads = [
        json.dumps({"text": texts[n % len(texts)], "id": key}).encode()
        for n, key in enumerate(keys)
    ]
    results = ResultReader(broker, topic + "/label")
    publisher = BulkPublisher(broker.host, broker.port, topic)
    if rate is not None:
        time.sleep(0.5)  # connected before the first timed line (else it carries the CONNECT)
    sent_at: dict[str, float] = {}
    started = time.time()
    if rate is None:
        publisher.send(payloads)
    else:
        for n, (key, payload) in enumerate(zip(keys, payloads, strict=True)):
            delay = started + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            sent_at[key] = time.time()
            publisher.send([payload])
    publisher.finish(timeout_s=120)
    results.wait_for(set(keys), timeout_s)
    results.close()
    wanted = set(keys)
    arrivals = {key: results.first_seen[key] for key in keys if key in results.first_seen}
    duplicates = sum(results.copies[key] - 1 for key in arrivals)
    latencies = [1000 * (arrivals[key] - sent_at[key]) for key in sent_at if key in arrivals]
    # Saturation: first publish to last result.
    elapsed = max(arrivals.values(), default=started) - started
    achieved = len(arrivals) / max(1e-9, elapsed) if rate is None else rate
    return Phase(achieved, latencies, len(wanted - arrivals.keys()), duplicates)


@dataclass
class Subject:
    name: str
    throughput: float  # median saturation round; 0 when not saturated (the echo floor)
    rounds: list[float]  # every saturation round, in order
    loads: dict[str, Phase]  # by phase name: "light", "50%", "90%", "naive 50%"
    rss_mb: float
    cores_at_half_load: float  # CPU seconds per second of the subject during the 50% phase
    cold_start_s: float
    missing: int
    duplicates: int
    # by phase: mean ms per labelled message in each of the agent's stages (stage_breakdown)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    def mean_latencies_ms(self) -> dict[str, float]:
        """By paced phase: the mean end-to-end latency, which the stages' means add up to
        (stage_breakdown.breakdown_rows)."""
        return {phase: statistics.fmean(load.latencies_ms) for phase, load in self.loads.items()}


def measure(
    name: str,
    start: Callable[[dict[str, str]], subprocess.Popen[bytes]],
    broker: Broker,
    topic: str,
    texts: Sequence[str],
    *,
    saturate_count: int,
    saturate_rounds: int = 1,
    before_round: Callable[[], None] | None = None,
    phases: Callable[[float], list[tuple[str, float]]],
    paced_s: float,
    work: Path,
    stage_totals: Callable[[], Totals] | None = None,
) -> Subject:
    """Start the subject, saturate it (unless saturate_count is 0), then run the paced
    phases `phases(saturation rate)` returns as (name, offered msg/s); with `stage_totals`
    (the agent's /metrics), where each paced phase's time went inside the subject."""
    notify = NotifyListener(work / f"{name}.notify")
    started = time.monotonic()
    process = start({"NOTIFY_SOCKET": notify.path})
    try:
        while (ready := notify.ready_at()) is None:
            if process.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError(f"{name} did not become ready")
        cold = ready - started
        notify.close()  # later notifications are refused, not queued
        log(f"{name}: ready in {cold:.2f} s; saturating with {saturate_count} messages")
        run_phase(broker, topic, texts, tag="warm", count=50, rate=None)
        # Several rounds and their median: on a shared machine the cores are slower for
        # minutes at a time (one run measured 689, 1,062 and 649 msg/s), and the paced
        # phases below are fractions of this rate, which should be one the subject sustains.
        rounds = []
        for n in range(saturate_rounds if saturate_count else 0):
            if before_round is not None:
                before_round()  # the model-only ceiling, right before, in the same phase
            rounds.append(
                run_phase(broker, topic, texts, tag=f"sat{n}", count=saturate_count, rate=None)
            )
        if rounds:
            log(f"{name}: saturation rounds " + ", ".join(f"{r.rate:.0f}" for r in rounds))
        saturation = Phase(
            statistics.median_high(r.rate for r in rounds) if rounds else 0.0,
            [],
            sum(r.missing for r in rounds),
            sum(r.duplicates for r in rounds),
        )
        loads: dict[str, Phase] = {}
        stages: dict[str, dict[str, float]] = {}
        rss = cores = 0.0
        for index, (phase, rate) in enumerate(phases(saturation.rate)):
            count = max(40, int(rate * paced_s))
            log(f"{name}: {phase} = {rate:.1f}/s for {count} messages")
            cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
            totals_before = stage_totals() if stage_totals else None
            loads[phase] = run_phase(
                broker, topic, texts, tag=f"phase{index}", count=count, rate=rate
            )
            if stage_totals and totals_before is not None:
                time.sleep(0.2)  # the last batch's stages are recorded after its publishes
                stages[phase] = mean_ms(totals_before, stage_totals())
            if phase == "50%":
                rss = rss_kib(process.pid) / 1024
                cores = (cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - wall_before)
        measured = [saturation, *loads.values()]
        return Subject(
            name,
            saturation.rate,
            [r.rate for r in rounds],
            loads,
            rss,
            cores,
            cold,
            sum(p.missing for p in measured),
            sum(p.duplicates for p in measured),
            stages,
        )
    finally:
        process.terminate()
        process.wait(30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
