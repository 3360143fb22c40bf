"""Pressure on the agent: a broker missing at start, a burst far above capacity, and a
consumer of results that never reads. Memory is read from /proc/<pid>/status (VmRSS)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from tests.support.agent_process import AgentMaker
from tests.support.broker import Broker, free_port
from tests.support.traffic import (
    BulkPublisher,
    Collector,
    NotifyListener,
    Publisher,
    numbered,
    percentile,
    rss_kib,
)

RECEIVE_MAXIMUM = 32
# The full-length burst, for a manual run (minutes):
#   EDGE_AGENT_BURST_S=30 EDGE_AGENT_OVERLOAD=3 pytest -s tests/reliability -k overload
OVERLOAD = float(os.environ.get("EDGE_AGENT_OVERLOAD", "10"))  # times the measured capacity
BURST_S = float(os.environ.get("EDGE_AGENT_BURST_S", "2"))
TICK_S = 0.02


def test_broker_missing_at_start_not_ready_until_it_appears(
    make_agent: AgentMaker, tmp_path: Path
) -> None:
    port = free_port()
    notify = NotifyListener(tmp_path / "notify.sock")
    agent = make_agent(
        port,
        client_id="early",
        env={"NOTIFY_SOCKET": notify.path},
        broker={"reconnect_min_s": 0.1, "reconnect_max_s": 0.8},
    )
    broker = None
    try:
        time.sleep(3.0)
        assert agent.process is not None and agent.process.poll() is None
        assert notify.ready_at() is None, "READY=1 before any broker was reachable"
        retries = [line for line in agent.log_lines() if line["event"] == "broker_unreachable"]
        delays = [float(str(line["retry_in_s"])) for line in retries]
        assert len(retries) >= 3, agent.log_tail()
        assert max(delays) <= 0.8  # capped backoff
        broker_started = time.monotonic()
        broker = Broker(tmp_path / "late-broker", port=port).start()
        collector = Collector(broker.host, port, "early/in/+/label")
        deadline = time.monotonic() + 15
        while (ready := notify.ready_at()) is None:
            assert time.monotonic() < deadline, agent.log_tail()
            time.sleep(0.05)
        assert ready >= broker_started
        publisher = Publisher(broker.host, port)
        publisher.publish("early/in/a", numbered(1), "1")
        seen = collector.wait_ids({"1"}, "early/in/a/label", timeout_s=15)
        print(
            f"\nbroker missing at start: {len(retries)} retries, delays {delays[:6]}, READY "
            f"{ready - broker_started:.2f} s after the broker appeared"
        )
        assert seen["1"] >= 1
        publisher.close()
        collector.close()
        assert agent.stop() == 0
    finally:
        notify.close()
        if broker is not None:
            broker.kill()


def _latencies(
    publisher: Publisher, collector: Collector, topic: str, numbers: range, rate: float
) -> list[float]:
    for number in numbers:
        publisher.publish(topic, numbered(number), str(number))
        time.sleep(1 / rate)
    wanted = {str(number) for number in numbers}
    collector.wait_ids(wanted, topic + "/label", timeout_s=30)
    first: dict[str, float] = {}
    for result in collector.snapshot():
        key = str(result.body.get("id"))
        # Only this phase's topic: a long burst's ids can reach the calm phases' numbers.
        if result.topic == topic + "/label" and key in wanted and key not in first:
            first[key] = result.received_at
    return [1000 * (first[key] - publisher.sent_at[key]) for key in wanted]


def _capacity(broker: Broker, collector: Collector, topic: str, numbers: range) -> float:
    """Messages a second the agent labels while a backlog waits: all offered at once."""
    started = time.monotonic()
    bulk = BulkPublisher(broker.host, broker.port, topic)
    bulk.send(numbered(number) for number in numbers)
    assert bulk.finish(timeout_s=60) == 0
    seen = collector.wait_ids({str(n) for n in numbers}, topic + "/label", timeout_s=60)
    assert len(seen) == len(numbers)
    last = max(r.received_at for r in collector.snapshot() if r.topic == topic + "/label")
    return len(numbers) / (last - started)


@pytest.mark.slow
def test_overload_burst_drops_nothing_memory_bounded_latency_recovers(
    broker: Broker, make_agent: AgentMaker
) -> None:
    """A burst at OVERLOAD times the agent's measured capacity for BURST_S seconds. The
    issue's example is several times capacity for 30 s; CI runs 2 s at 10x because draining
    30 s at 3x takes about 80 s more, and because with mosquitto 2.0.11, which overshoots
    Receive Maximum, the agent's queue takes most of the burst, so the memory bound below
    holds for a short burst only (the 30 s run grew 52.6 MB; docs/benchmarks.md)."""
    name = "burst"
    agent = make_agent(
        broker.port,
        client_id=name,
        broker={"receive_maximum": RECEIVE_MAXIMUM},
        batching={"max_batch": 1, "max_wait_ms": 0},
    )
    status = f"edge-agent/{name}/status"
    collector = Collector(broker.host, broker.port, f"{name}/in/+/label", status)
    publisher = Publisher(broker.host, broker.port)
    try:
        collector.wait_online(status)
        assert agent.process is not None
        pid = agent.process.pid
        before = _latencies(publisher, collector, f"{name}/in/calm", range(0, 60), rate=30)
        # The warm-up measures capacity, and brings onnxruntime's arena and paho's buffers
        # to their working size once: what is measured below is growth beyond that.
        capacity = _capacity(broker, collector, f"{name}/in/warm", range(200, 2200))
        baseline_kib = rss_kib(pid)
        samples: list[int] = []
        stop_sampling = threading.Event()

        def sample() -> None:
            while not stop_sampling.is_set():
                samples.append(rss_kib(pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        topic, first = f"{name}/in/burst", 10_000
        per_tick = max(1, round(OVERLOAD * capacity * TICK_S))
        bulk = BulkPublisher(broker.host, broker.port, topic)
        started = time.monotonic()
        number = first
        while (elapsed := time.monotonic() - started) < BURST_S:
            due = first + round(OVERLOAD * capacity * elapsed) + per_tick
            bulk.send(numbered(n) for n in range(number, due))
            number = due
            time.sleep(TICK_S)
        assert bulk.finish(timeout_s=60 + BURST_S) == 0, "mosquitto_pub failed"
        burst_rate = (number - first) / (time.monotonic() - started)
        labelled_in_burst = len(collector.ids(topic + "/label"))
        wanted = {str(n) for n in range(first, number)}
        seen = collector.wait_ids(wanted, topic + "/label", timeout_s=120 + 20 * BURST_S)
        drained_s = time.monotonic() - started
        stop_sampling.set()
        sampler.join()
        missing = wanted - seen.keys()
        assert not missing, f"{len(missing)} of {len(wanted)} never labelled"
        after = _latencies(publisher, collector, f"{name}/in/calm2", range(100_000, 100_060), 30)
        growth_mb = (max(samples) - baseline_kib) / 1024
        depth = max(
            int(str(line.get("queue_depth", 0)))
            for line in agent.log_lines()
            if line["event"] == "batch_done"
        )
        print(
            f"\noverload: {len(wanted)} published at {burst_rate:.0f}/s for {BURST_S:.0f} s "
            f"({burst_rate / capacity:.1f}x the {capacity:.0f}/s the agent sustained; "
            f"{labelled_in_burst} labelled during the burst), drained in {drained_s:.1f} s; "
            f"agent queue max {depth} (Receive Maximum {RECEIVE_MAXIMUM}); "
            f"RSS {baseline_kib / 1024:.1f} MB -> max {max(samples) / 1024:.1f} MB; "
            f"latency p50/p95 before {percentile(before, 0.5):.1f}/{percentile(before, 0.95):.1f}"
            f" ms, after {percentile(after, 0.5):.1f}/{percentile(after, 0.95):.1f} ms"
        )
        assert burst_rate >= OVERLOAD / 2 * capacity, "the burst did not overload the agent"
        # Should be a few MB: the agent holds at most Receive Maximum deliveries. mosquitto
        # 2.0.11 overshoots that quota (see test_broker_honours_receive_maximum), so the
        # agent's queue takes most of the backlog (~0.8 kB a message): bounded by the burst.
        assert growth_mb < 40, "memory grew beyond the burst's backlog"
        assert percentile(after, 0.5) <= 3 * percentile(before, 0.5) + 20
    finally:
        collector.close()
        publisher.close()


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(header: int, body: bytes) -> bytes:
    length, encoded = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            return bytes([header]) + encoded + body


def stuck_subscriber(port: int, topic_filter: str) -> socket.socket:
    """An MQTT 5 client (Receive Maximum 1, QoS 1) that subscribes and never reads again:
    written by hand because a library client always drains its socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    properties = b"\x21" + struct.pack("!H", 1)  # Receive Maximum 1
    connect = (
        _mqtt_string("MQTT")
        + b"\x05\x02"
        + struct.pack("!H", 60)
        + bytes([len(properties)])
        + properties
        + _mqtt_string("stuck-consumer")
    )
    sock.sendall(_packet(0x10, connect))
    assert sock.recv(4)[0] == 0x20  # CONNACK
    sock.sendall(
        _packet(0x82, struct.pack("!H", 1) + b"\x00" + _mqtt_string(topic_filter) + b"\x01")
    )
    return sock


@pytest.mark.slow
def test_stuck_result_consumer_does_not_grow_agent_memory(
    broker: Broker, make_agent: AgentMaker
) -> None:
    name = "stuck"
    agent = make_agent(broker.port, client_id=name, broker={"receive_maximum": RECEIVE_MAXIMUM})
    status = f"edge-agent/{name}/status"
    collector = Collector(broker.host, broker.port, f"{name}/in/+/label", status)
    publisher = Publisher(broker.host, broker.port)
    stuck = stuck_subscriber(broker.port, f"{name}/in/+/label")
    try:
        collector.wait_online(status)
        assert agent.process is not None
        pid = agent.process.pid
        topic = f"{name}/in/s"
        for number in range(300):  # warm-up
            publisher.publish(topic, numbered(number), str(number))
        collector.wait_ids({str(n) for n in range(300)}, topic + "/label", timeout_s=30)
        warm_kib = rss_kib(pid)
        total = 3000
        for number in range(300, total):
            publisher.publish(topic, numbered(number), str(number))
        seen = collector.wait_ids({str(n) for n in range(total)}, topic + "/label", 60)
        end_kib = rss_kib(pid)
        print(
            f"\nstuck consumer: {len(seen)} labelled for the live collector; agent RSS "
            f"{warm_kib / 1024:.1f} MB after warm-up -> {end_kib / 1024:.1f} MB"
        )
        assert len(seen) == total
        assert (end_kib - warm_kib) / 1024 < 15
    finally:
        stuck.close()
        collector.close()
        publisher.close()


@pytest.mark.xfail(
    strict=True,
    reason="mosquitto 2.0.11 sends more unacknowledged QoS 1 messages than the client's "
    "Receive Maximum once the client has acknowledged some; the agent's queue bound relies "
    "on it (edge_agent/pipeline/batcher.py)",
)
def test_broker_honours_receive_maximum(broker: Broker) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    received: list[int] = []
    consumer = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="slow-acker",
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=True,
    )
    consumer.on_message = lambda client, userdata, message: received.append(message.mid)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = 5
    consumer.on_connect = lambda client, *args: client.subscribe("rm/#", qos=1)
    consumer.connect(broker.host, broker.port, properties=properties)
    consumer.loop_start()
    publisher = Publisher(broker.host, broker.port)
    try:
        time.sleep(0.5)
        for number in range(100):
            publisher.publish("rm/a", b"x", str(number))
        time.sleep(1.0)
        first_window = len(received)
        for mid in received[:3]:
            consumer.ack(mid, 1)  # three acknowledged: three more may come
        time.sleep(1.0)
        print(f"\nreceive maximum 5: {first_window} unacked, then {len(received)} after 3 acks")
        assert first_window <= 5
        assert len(received) <= first_window + 3
    finally:
        consumer.disconnect()
        consumer.loop_stop()
        publisher.close()
