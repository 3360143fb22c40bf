"""Network faults between agent and broker: the agent connects through a proxy in the test
that resets, stalls, black-holes and slices its connection at seeded random moments while
a steady stream goes on. At-least-once must hold, and service must come back quickly.

Recovery of a fault = from the moment the fault ends (reset done, stall lifted, black hole
begun) until the first result for a message published after that moment. Resets, stalls and
slices must recover within 1.5x keepalive. A black hole (the peer silently gone, the classic
half-open connection) can only be noticed by MQTT keepalive: paho sends PINGREQ after one
keepalive of silence and gives up after another, so its bound is 2x keepalive + backoff.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.support.agent_process import AgentMaker
from tests.support.broker import Broker
from tests.support.proxy import FaultyProxy
from tests.support.traffic import Collector, Publisher, numbered

KEEPALIVE_S = 2
RECONNECT_MAX_S = 0.5
SEED = 20261123
FAULTS = ("reset", "stall", "slice", "reset", "black_hole", "stall", "reset", "slice")
RATE_PER_S = 100


@pytest.mark.slow
def test_resets_stalls_and_slices_lose_nothing_and_recover_fast(
    broker: Broker, make_agent: AgentMaker
) -> None:
    chooser = random.Random(SEED)
    proxy = FaultyProxy(broker.port, seed=SEED)
    name = "net"
    agent = make_agent(
        proxy.port,
        client_id=name,
        broker={
            "keepalive_s": KEEPALIVE_S,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": RECONNECT_MAX_S,
        },
    )
    status = f"edge-agent/{name}/status"
    collector = Collector(broker.host, broker.port, f"{name}/in/+/label", status)
    publisher = Publisher(broker.host, broker.port)
    stop = threading.Event()
    published: list[int] = []

    def steady() -> None:
        number = 0
        while not stop.is_set():
            publisher.publish(f"{name}/in/n", numbered(number), str(number))
            published.append(number)
            number += 1
            time.sleep(1 / RATE_PER_S)

    sender = threading.Thread(target=steady)
    try:
        collector.wait_online(status)
        sender.start()
        time.sleep(1.0)
        ends: list[tuple[str, float]] = []
        for fault in FAULTS:
            time.sleep(chooser.uniform(0.5, 2.0))
            if fault == "reset":
                proxy.reset()
                ends.append((fault, time.monotonic()))
            elif fault == "stall":  # shorter than keepalive: the connection survives it
                seconds = chooser.uniform(0.3, KEEPALIVE_S * 0.8)
                proxy.stall(seconds)
                ends.append((fault, time.monotonic() + seconds))
                time.sleep(KEEPALIVE_S)
            elif fault == "black_hole":
                proxy.stall(3600)
                ends.append((fault, time.monotonic()))
                time.sleep(3 * KEEPALIVE_S)
            else:
                proxy.slice(True)
                time.sleep(chooser.uniform(1.0, 2.0))
                proxy.slice(False)
                ends.append((fault, time.monotonic()))
        time.sleep(2 * KEEPALIVE_S)
        stop.set()
        sender.join(5)
        wanted = {str(number) for number in published}
        seen = collector.wait_ids(wanted, f"{name}/in/n/label", timeout_s=60)
        missing = sorted(wanted - seen.keys(), key=int)
        assert not missing, f"{len(missing)} never labelled, e.g. {missing[:10]}"
        assert agent.process is not None and agent.process.poll() is None

        results = collector.snapshot()
        recoveries: list[tuple[str, float]] = []
        for fault, ended in ends:
            fresh = [
                result.received_at - ended
                for result in results
                if result.topic.endswith("/label")
                and publisher.sent_at.get(str(result.body.get("id")), 0.0) >= ended
            ]
            recoveries.append((fault, min(fresh)))
        duplicates = sum(seen.values()) - len(seen)
        print(
            f"\nnetwork faults: {len(seen)} labelled, {duplicates} duplicates, "
            f"{proxy.connections} connections; recovery (s): "
            + ", ".join(f"{fault} {seconds:.2f}" for fault, seconds in recoveries)
        )
        for fault, seconds in recoveries:
            bound = (
                2 * KEEPALIVE_S + RECONNECT_MAX_S if fault == "black_hole" else 1.5 * KEEPALIVE_S
            )
            assert seconds <= bound, f"{fault} took {seconds:.2f} s to recover (bound {bound} s)"
        assert proxy.connections >= 1 + FAULTS.count("reset") + FAULTS.count("black_hole")
    finally:
        stop.set()
        collector.close()
        publisher.close()
        proxy.close()
