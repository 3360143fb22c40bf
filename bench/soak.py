"""Soak: the agent at a steady fraction of its capacity for a long time (default one hour
at 50 %), reporting RSS growth after warm-up and latency drift, window by window.

    PYTHONPATH=. nice python bench/soak.py [--duration-s 3600] [--window-s 60] [--rate R]

Same stack as bench/e2e_bench.py (own mosquitto, the agent with the shipped model or a
random one of its shape, real MQTT clients on loopback). Capacity is measured first unless
--rate is given. Targets: RSS growth under 5 % after the first (warm-up) window; no latency
drift (last window's p50/p99 against the first window after warm-up).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.e2e_phases import run_phase
from bench.e2e_setup import TOPIC, agent_starter, log, prepare_bundle, sentences, write_agent_config
from tests.support.broker import Broker
from tests.support.traffic import NotifyListener, percentile, rss_kib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "soak")
    parser.add_argument("--duration-s", type=float, default=3600)
    parser.add_argument("--window-s", type=float, default=60)
    parser.add_argument("--load", type=float, default=0.5, help="fraction of capacity")
    parser.add_argument("--rate", type=float, help="messages/s (skips the capacity run)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    texts, _ = sentences()
    bundle, source = prepare_bundle(args.bundle, args.work, texts)
    broker = Broker(args.work / "broker").start()
    config = write_agent_config(args.work, broker, bundle)
    notify = NotifyListener(args.work / "soak.notify")
    agent = agent_starter(args.work, config)({"NOTIFY_SOCKET": notify.path})
    try:
        while notify.ready_at() is None:
            if agent.poll() is not None:
                raise RuntimeError("agent exited; see " + str(args.work / "agent.log"))
        notify.close()
        rate = args.rate
        if rate is None:
            capacity = run_phase(broker, TOPIC, texts, tag="cap", count=1500, rate=None).rate
            rate = args.load * capacity
            log(f"capacity {capacity:.0f}/s: soaking at {rate:.0f}/s")
        windows = []
        started = time.monotonic()
        index = 0
        while time.monotonic() - started < args.duration_s:
            count = max(1, int(rate * args.window_s))
            phase = run_phase(broker, TOPIC, texts, tag=f"w{index}", count=count, rate=rate)
            window = {
                "window": index,
                "minutes": round((time.monotonic() - started) / 60, 2),
                "rss_mb": round(rss_kib(agent.pid) / 1024, 1),
                "p50_ms": round(percentile(phase.latencies_ms, 0.5), 2),
                "p99_ms": round(percentile(phase.latencies_ms, 0.99), 2),
                "missing": phase.missing,
                "duplicates": phase.duplicates,
            }
            log(json.dumps(window))
            windows.append(window)
            index += 1
    finally:
        agent.terminate()
        agent.wait(30)
        broker.kill()
    print(report(windows, rate, source, args.duration_s))
    return 0


def report(windows: list[dict[str, float]], rate: float, source: str, duration_s: float) -> str:
    if len(windows) < 3:
        return "too short: need at least 3 windows (warm-up, first, last)"
    warm, first, last = windows[0], windows[1], windows[-1]
    growth = (last["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"]
    return "\n".join(
        [
            f"soak: {duration_s / 60:.0f} min at {rate:.0f} msg/s, {len(windows)} windows, "
            f"model: {source}",
            f"RSS after warm-up {warm['rss_mb']} MB -> end {last['rss_mb']} MB "
            f"(growth {growth:+.1%}, target < 5%; max {max(w['rss_mb'] for w in windows)} MB)",
            f"latency p50 {first['p50_ms']} -> {last['p50_ms']} ms, "
            f"p99 {first['p99_ms']} -> {last['p99_ms']} ms (first window after warm-up -> last)",
            f"lost {sum(w['missing'] for w in windows)}, "
            f"duplicates {sum(w['duplicates'] for w in windows)}",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
