"""Attempt counts are what stop a poison message from crash-looping a device, so they must
survive the crash itself: kill -9 the agent mid-stream, read its journal from disk, restart
it and check the counted messages were redelivered, labelled and then forgotten.
(tests/agent covers dead-lettering once the count is reached.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edge_agent.pipeline.attempts import JOURNAL_NAME
from tests.support.agent_process import AgentMaker, AgentProcess
from tests.support.broker import Broker
from tests.support.traffic import Collector, Publisher, numbered


def _journal(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, number = line.partition(" ")
        if number.isdigit():
            counts[key] = int(number)
    return {key: count for key, count in counts.items() if count > 0}


def _kill_with_batch_in_flight(
    agent: AgentProcess, journal: Path, timeout_s: float
) -> dict[str, int]:
    """SIGKILL the agent at a moment its journal holds counts, and return them.

    A plain kill can land between two batches, when the journal is legitimately empty.
    Freezing the agent (SIGSTOP, waited on until every thread has stopped) makes what we
    read exactly the state it dies in; when it is caught between batches it is thawed and
    tried again a few milliseconds later.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        agent.freeze()
        in_flight = _journal(journal)
        if in_flight:
            agent.kill()
            return in_flight
        agent.thaw()
        assert time.monotonic() < deadline, (
            f"never caught a batch in flight: {journal.read_text()[-300:]!r}"
        )
        time.sleep(0.003)


@pytest.mark.slow
def test_attempt_counts_survive_kill_9_and_clear_after_redelivery(
    broker: Broker, make_agent: AgentMaker, tmp_path: Path
) -> None:
    name = "crashy"
    settings = {"limits": {"max_attempts": 3}, "batching": {"max_batch": 16, "max_wait_ms": 5}}
    agent = make_agent(broker.port, client_id=name, **settings)
    status = f"edge-agent/{name}/status"
    collector = Collector(broker.host, broker.port, f"{name}/in/+/label", status)
    publisher = Publisher(broker.host, broker.port)
    journal = tmp_path / f"state-{name}" / JOURNAL_NAME
    try:
        collector.wait_online(status)
        total = 2000

        def publish_all() -> None:
            for number in range(total):
                publisher.publish(f"{name}/in/s", numbered(number), str(number))

        # Publish from a thread so the kill lands while the stream is still arriving:
        # waiting for the publisher first let a fast agent finish everything before it.
        feeder = threading.Thread(target=publish_all)
        feeder.start()
        deadline = time.monotonic() + 30
        while len(collector.ids(f"{name}/in/s/label")) < 50:
            assert time.monotonic() < deadline, agent.log_tail()
            time.sleep(0.01)
        in_flight = _kill_with_batch_in_flight(agent, journal, timeout_s=10)
        assert _journal(journal) == in_flight, "the counts on disk are the ones it died with"
        feeder.join(timeout=60)
        assert set(in_flight.values()) == {1}
        restarted = make_agent(broker.port, client_id=name, **settings)
        seen = collector.wait_ids({str(n) for n in range(total)}, f"{name}/in/s/label", 60)
        assert len(seen) == total
        assert restarted.stop() == 0
        left = _journal(journal)
        print(
            f"\nkill -9 with {len(in_flight)} messages counted in the journal; after the "
            f"restart all {total} labelled, {sum(seen.values()) - total} duplicates, "
            f"{len(left)} counts left"
        )
        assert not left
        assert not any(line["event"] == "message_dead_lettered" for line in restarted.log_lines())
    finally:
        collector.close()
        publisher.close()
