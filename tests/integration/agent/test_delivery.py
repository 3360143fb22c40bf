"""Delivery under faults, with the real agent, broker and client: nothing lost.

Each message carries a unique id; a test passes when every id got a result at least once.
Duplicates are allowed by at-least-once delivery; they are counted and printed (run with
-s to see the figures).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.agent_process import AgentProcess, write_config
from tests.support.agent_process import StartAgent as AgentFactory
from tests.support.broker import Broker, free_port
from tests.support.mqtt_client import TestClient


def publish_numbered(client: TestClient, topic: str, ids: range) -> None:
    for number in ids:
        client.publish(topic, json.dumps({"text": f"message number {number}", "id": str(number)}))


def labelled_ids(client: TestClient, prefix: str) -> Counter[str]:
    return Counter(message.json()["id"] for message in client.messages(prefix))


def wait_all_labelled(
    client: TestClient, prefix: str, total: int, timeout_s: float
) -> Counter[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = labelled_ids(client, prefix)
        if len(seen) >= total:
            return seen
        time.sleep(0.1)
    seen = labelled_ids(client, prefix)
    missing = sorted(set(map(str, range(total))) - set(seen), key=int)
    raise AssertionError(f"{len(missing)} of {total} never labelled, e.g. {missing[:10]}")


def report(name: str, seen: Counter[str]) -> None:
    duplicates = {key: count for key, count in seen.items() if count > 1}
    print(
        f"\n{name}: {len(seen)} labelled, {sum(seen.values()) - len(seen)} duplicates "
        f"{sorted(duplicates, key=int)[:20]}"
    )


def test_broker_restart_mid_stream_loses_nothing(
    start_agent: AgentFactory, client: TestClient, broker: Broker
) -> None:
    agent, name = start_agent()
    client.subscribe(f"{name}/in/+/label")
    topic, prefix, total = f"{name}/in/s", f"{name}/in/s/label", 600
    publish_numbered(client, topic, range(0, 300))
    # The test's own client has every result of the first half before it steps out: a
    # result in flight to a subscriber that disconnects (or is connected) when mosquitto
    # 2.0.11 restarts was lost now and then (3 runs in 15 here, always the last result
    # before the restart) although the agent's publish had been acknowledged by the broker,
    # and a subscriber offline through the restart lost the first 22 results queued for
    # it. That is the broker's loss, not the agent's, which stays connected until the
    # broker goes away and must label everything published after it comes back.
    wait_all_labelled(client, prefix, 300, timeout_s=40)
    client.pause()
    broker.stop()  # SIGTERM: mosquitto saves its persistence file, sessions included
    broker.start()
    client.resume()
    publish_numbered(client, topic, range(300, total))
    seen = wait_all_labelled(client, prefix, total, timeout_s=40)
    report("broker restart", seen)
    assert agent.process is not None and agent.process.poll() is None  # reconnected, no restart
    events = [line["event"] for line in agent.log_lines()]
    assert events.count("broker_connected") >= 2


@pytest.mark.parametrize("protocol", [5, "3.1.1"])
def test_agent_kill_9_mid_stream_then_restart_labels_everything(
    start_agent: AgentFactory, client: TestClient, protocol: int | str
) -> None:
    broker_settings = {"protocol": protocol}
    agent, _ = start_agent(client_id="victim", broker=broker_settings)
    client.subscribe("victim/in/+/label")
    topic, prefix, total = "victim/in/k", "victim/in/k/label", 1000
    # Publishing goes on while the agent dies and restarts: the broker keeps those
    # messages in the agent's persistent session.
    publisher = threading.Thread(target=publish_numbered, args=(client, topic, range(total)))
    publisher.start()
    client.wait_for(100, topic_prefix=prefix, timeout_s=30)
    agent.kill()  # SIGKILL: no drain, no acks for what was in flight
    labelled_before = len(labelled_ids(client, prefix))
    # Same client id: same persistent session (MQTT 5 session expiry, 3.1.1 clean_session=0).
    restarted, _ = start_agent(client_id="victim", broker=broker_settings)
    publisher.join(60)
    seen = wait_all_labelled(client, prefix, total, timeout_s=60)
    report(f"kill -9 (MQTT {protocol}) after {labelled_before} labelled", seen)
    assert labelled_before < total, "the kill should land mid-stream"
    offline = [m.json() for m in client.messages("edge-agent/victim/status")]
    assert {"state": "offline"} in offline  # the last will fired
    assert restarted.stop() == 0


def test_graceful_shutdown_drains_and_the_rest_waits_in_the_session(
    start_agent: AgentFactory, client: TestClient
) -> None:
    agent, _ = start_agent(client_id="drain")
    client.subscribe("drain/in/+/label")
    topic, prefix, total = "drain/in/d", "drain/in/d/label", 400
    publish_numbered(client, topic, range(total))
    client.wait_for(20, topic_prefix=prefix, timeout_s=30)
    assert agent.stop(signal.SIGTERM) == 0
    stopped = [line for line in agent.log_lines() if line["event"] == "agent_stopped"]
    assert stopped and stopped[0]["unacknowledged"] == 0 and not stopped[0]["forced"]
    status = [m.json() for m in client.messages("edge-agent/drain/status")]
    assert status[-1] == {"state": "offline"}
    labelled_at_stop = len(labelled_ids(client, prefix))
    start_agent(client_id="drain")
    seen = wait_all_labelled(client, prefix, total, timeout_s=60)
    report(f"graceful stop after {labelled_at_stop} labelled", seen)
    # A drained stop acknowledges only what it published, so nothing needs redoing.
    assert sum(seen.values()) == total


def test_two_agents_on_a_shared_subscription_split_the_stream(
    start_agent: AgentFactory, client: TestClient
) -> None:
    route = [{"subscribe": "fleet/in/+", "model": "tiny", "group": "workers"}]
    first, _ = start_agent(client_id="worker-a", routes=route)
    second, _ = start_agent(client_id="worker-b", routes=route)
    client.subscribe("fleet/in/+/label")
    total = 400
    publish_numbered(client, "fleet/in/s", range(total))
    seen = wait_all_labelled(client, "fleet/in/s/label", total, timeout_s=60)
    assert sum(seen.values()) == total  # each message labelled exactly once
    shares = []
    for agent in (first, second):
        agent.stop()
        shares.append(
            sum(line["labelled"] for line in agent.log_lines() if line["event"] == "batch_done")
        )
    print(f"\nshared subscription shares: {shares}")
    assert all(share > 0 for share in shares) and sum(shares) == total


def test_systemd_ready_watchdog_and_stopping(
    start_agent: AgentFactory, client: TestClient, tmp_path: Path
) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        agent, _ = start_agent(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"})
        received: list[str] = []
        deadline = time.monotonic() + 3  # idle: pings every 0.3 s must keep coming
        while time.monotonic() < deadline:
            received.append(server.recv(4096).decode())
        assert any(message.startswith("READY=1") for message in received)
        assert sum(message == "WATCHDOG=1" for message in received) >= 5
        agent.stop()
        tail: list[str] = []
        try:
            while True:
                tail.append(server.recv(4096).decode())
        except TimeoutError:
            pass
        assert any(message.startswith("STOPPING=1") for message in tail)


def test_broker_unreachable_at_start_then_appears(tmp_path: Path, models_dir: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "late.yaml", broker_port=port, models_dir=models_dir, client_id="late"
    )
    agent = AgentProcess(config, tmp_path / "late.log").start()
    broker = None
    try:
        # Wait for several failed attempts with backoff (not a fixed sleep: on a loaded
        # machine model loading alone can take longer than a couple of seconds).
        deadline = time.monotonic() + 30
        while [line["event"] for line in agent.log_lines()].count("broker_unreachable") < 2:
            assert time.monotonic() < deadline, agent.log_tail()
            assert agent.process is not None and agent.process.poll() is None
            time.sleep(0.1)
        broker = Broker(tmp_path / "late-broker", port=port).start()
        client = TestClient(broker.host, broker.port)
        client.subscribe("edge-agent/late/status", "late/in/+/label")
        # Subscribed after the broker came up: the agent's online status may already be
        # there as the retained message.
        status = client.wait_for(1, topic_prefix="edge-agent/late/status", timeout_s=15)
        deadline = time.monotonic() + 15
        while status[-1].json() != {**status[-1].json(), "state": "online"}:
            assert time.monotonic() < deadline, agent.log_tail()
            time.sleep(0.1)
            status = client.messages("edge-agent/late/status")
        client.publish("late/in/a", "finally")
        assert client.wait_for(1, topic_prefix="late/in/a/label")
        client.close()
        assert agent.stop() == 0
        events = [line["event"] for line in agent.log_lines()]
        assert events.count("broker_unreachable") >= 2
    finally:
        agent.stop(signal.SIGKILL)
        if broker is not None:
            broker.kill()


def test_refused_connack_is_logged_and_not_treated_as_connected(
    tmp_path: Path, models_dir: Path
) -> None:
    broker = Broker(tmp_path / "strict-broker", allow_anonymous=False).start()
    config = write_config(
        tmp_path / "r.yaml", broker_port=broker.port, models_dir=models_dir, client_id="r"
    )
    notify = str(tmp_path / "notify.sock")
    agent = AgentProcess(config, tmp_path / "r.log")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(notify)
            server.settimeout(0.2)
            agent.start(env={"NOTIFY_SOCKET": notify})
            time.sleep(3)
            received: list[str] = []
            try:
                while True:
                    received.append(server.recv(4096).decode())
            except TimeoutError:
                pass
        assert not any(message.startswith("READY=1") for message in received)
        refused = [line for line in agent.log_lines() if line["event"] == "connect_refused"]
        assert len(refused) >= 2 and refused[0]["code"] == 135  # Not authorized, retried
        assert not any(line["event"] == "broker_connected" for line in agent.log_lines())
        assert agent.stop() == 0
    finally:
        agent.stop(signal.SIGKILL)
        broker.kill()


def test_second_signal_skips_the_drain(
    start_agent: AgentFactory, client: TestClient, broker: Broker
) -> None:
    agent, _ = start_agent(client_id="impatient")
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)  # nothing the agent sends will be confirmed
    try:
        assert agent.process is not None
        started = time.monotonic()
        agent.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        agent.process.send_signal(signal.SIGTERM)
        assert agent.stop(timeout_s=10) == 0
        elapsed = time.monotonic() - started
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    stopped = [line for line in agent.log_lines() if line["event"] == "agent_stopped"]
    assert stopped and stopped[0]["forced"] is True
    assert any(line["event"] == "shutdown_forced" for line in agent.log_lines())
    # Without the second signal the offline status alone is waited for up to 2 s.
    assert elapsed < 2.0
