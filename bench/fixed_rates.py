"""The agent's latency at offered rates you choose, for comparing two versions of the code.

    PYTHONPATH=. python bench/fixed_rates.py --bundle models/sentiment/1.1.4 100 180 250

bench/e2e_bench.py sets its paced phases as fractions of the subject's own saturation, so a
faster agent is measured at higher rates. This runs the same parts (a mosquitto on a free
port, mosquitto_pub pacing QoS 1 messages, mosquitto_sub stamping results) at the same
rates for whichever checkout it is run from: run it from each (a `git worktree` for the
older one, with EDGE_AGENT_DATASETS pointing at the same texts) and interleave the runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.e2e_phases import measure  # noqa: E402
from bench.e2e_setup import TOPIC, agent_starter, sentences, write_agent_config  # noqa: E402
from bench.stage_breakdown import breakdown_rows, read_totals  # noqa: E402
from tests.support.broker import Broker, free_port  # noqa: E402
from tests.support.traffic import percentile  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rates", type=float, nargs="+", help="offered messages/s, in order")
    parser.add_argument("--bundle", type=Path, required=True, help="<models>/<name>/<version>")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fixed-rates")
    parser.add_argument("--paced-s", type=float, default=8.0, help="seconds per rate")
    parser.add_argument("--max-batch", type=int, help="the agent's batching.max_batch")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    texts, source = sentences()
    broker = Broker(args.work / "broker").start()
    batching = {"max_batch": args.max_batch} if args.max_batch else None
    metrics_port = free_port()
    config = write_agent_config(
        args.work, broker, args.bundle.resolve(), batching, metrics_port=metrics_port
    )
    try:
        agent = measure(
            "agent",
            agent_starter(args.work, config),
            broker,
            TOPIC,
            texts,
            saturate_count=0,
            phases=lambda _: [(f"{rate:g}/s", rate) for rate in args.rates],
            paced_s=args.paced_s,
            work=args.work,
            stage_totals=lambda: read_totals(metrics_port),
        )
    finally:
        broker.stop()
    print(f"{REPO.name} ({source}): latency p50 / p95 / p99 ms, lost, duplicated")
    for name, phase in agent.loads.items():
        p50, p95, p99 = (percentile(phase.latencies_ms, q) for q in (0.5, 0.95, 0.99))
        print(f"{name}: {p50:.1f} / {p95:.1f} / {p99:.1f}, {phase.missing}, {phase.duplicates}")
    print("\nmean ms per labelled message (the agent's /metrics; end to end: this bench's)")
    print("\n".join(breakdown_rows(agent.stages, agent.mean_latencies_ms(), {})))
    return 0 if agent.missing == agent.duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
