"""The watchdog's decision: ping only while worker and network thread are alive and moving."""

from __future__ import annotations

from edge_agent.daemon.health import WORKER_STALL_S, assess_health

NOW = 1000.0


def health(**changes: object) -> tuple[bool, bool]:
    facts: dict[str, object] = {
        "worker_alive": True,
        "worker_beat": NOW - 0.4,
        "batch_started": None,
        "network_alive": True,
        "network_beat": NOW - 20,
        "network_stall_s": 70.0,
    }
    facts.update(changes)
    result = assess_health(NOW, **facts)  # type: ignore[arg-type]
    return result.worker, result.network


def test_idle_healthy_agent_keeps_pinging() -> None:
    assert health() == (True, True)
    assert health(batch_started=NOW - 1) == (True, True)  # a normal batch in progress


def test_stuck_batch_stops_the_pings() -> None:
    assert (
        health(batch_started=NOW - WORKER_STALL_S - 1, worker_beat=NOW - WORKER_STALL_S - 1)[0]
        is False
    )
    assert health(batch_started=NOW - WORKER_STALL_S - 1)[0] is False


def test_dead_worker_or_network_thread_stops_the_pings() -> None:
    assert health(worker_alive=False)[0] is False
    assert health(network_alive=False)[1] is False
    assert health(network_beat=NOW - 71)[1] is False  # network thread stopped looping
