"""Clients and probes for the chaos tests: a bulk publisher that knows which messages the
broker confirmed, a collector that timestamps every result, RSS of a process, and a
systemd notify socket listener. Real MQTT (paho) on loopback, nothing mocked."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.proc import status_kib

SESSION_EXPIRY_S: Final = 300


def _client(client_id: str, host: str, port: int) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]  # paho computes in floats
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(100)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY_S  # outlives broker restarts
    client.connect_async(host, port, keepalive=10, clean_start=False, properties=properties)
    return client


@dataclass(frozen=True)
class Result:
    topic: str
    body: dict[str, Any]
    received_at: float  # time.monotonic()


class Collector:
    """Subscribes (QoS 1, persistent session) and keeps every result with its arrival time."""

    def __init__(self, host: str, port: int, *topics: str) -> None:
        self._topics = topics
        self._lock = threading.Lock()
        self.results: list[Result] = []
        self.connects = 0
        self._connected = threading.Event()
        self._client = _client(f"collector-{uuid.uuid4().hex[:8]}", host, port)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("collector could not connect")

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        for topic in self._topics:
            client.subscribe(topic, qos=1)
        self.connects += 1
        self._connected.set()
        time.sleep(0)  # subscriptions are sent before the first wait_subscribed returns

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            body = {"unparsed": message.payload.decode("utf-8", "replace")}
        with self._lock:
            self.results.append(Result(message.topic, body, time.monotonic()))

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def ids(self, topic_prefix: str = "") -> Counter[str]:
        return Counter(
            str(r.body.get("id")) for r in self.snapshot() if r.topic.startswith(topic_prefix)
        )

    def wait_ids(self, wanted: set[str], topic_prefix: str, timeout_s: float) -> Counter[str]:
        """Until every wanted id has a result (or the deadline): the Counter of ids seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self.ids(topic_prefix)
            if wanted <= seen.keys() or time.monotonic() > deadline:
                return seen
            time.sleep(0.1)

    def wait_online(self, status_topic: str, timeout_s: float = 60.0) -> float:
        """Until the agent's status topic says online (the collector must subscribe to it);
        returns when that was seen."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for result in self.snapshot():
                if result.topic == status_topic and result.body.get("state") == "online":
                    return result.received_at
            time.sleep(0.05)
        raise AssertionError(f"no online status on {status_topic} in {timeout_s} s")

    def pause(self) -> None:
        """Disconnect cleanly; the session (and results queued for it) stays at the broker."""
        self._connected.clear()
        self._client.disconnect()
        self._client.loop_stop()

    def resume(self) -> None:
        self._client.reconnect()
        self._client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("collector could not reconnect")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Publisher:
    """QoS 1 publisher that records when the broker confirmed (PUBACK) each message."""

    def __init__(self, host: str, port: int) -> None:
        self._lock = threading.Lock()
        self._mid_to_key: dict[int, str] = {}
        self._early: dict[int, float] = {}
        self.sent_at: dict[str, float] = {}
        self.acked_at: dict[str, float] = {}
        self._connected = threading.Event()
        self._client = _client(f"publisher-{uuid.uuid4().hex[:8]}", host, port)
        self._client.on_connect = lambda *args: self._connected.set()
        self._client.on_publish = self._on_publish
        self._client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("publisher could not connect")

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, *args: Any) -> None:
        # paho calls this holding its own lock, which publish() also takes: never call paho
        # while holding ours (deadlock), and accept a PUBACK that beats the mid's record.
        now = time.monotonic()
        with self._lock:
            key = self._mid_to_key.pop(mid, None)
            if key is None:
                self._early[mid] = now
            else:
                self.acked_at[key] = now

    def publish(self, topic: str, payload: bytes | str, key: str) -> None:
        """Queue one message (never blocks on the broker; paho resends after reconnects)."""
        sent = time.monotonic()
        info = self._client.publish(topic, payload, qos=1)
        with self._lock:
            self.sent_at[key] = sent
            if info.mid in self._early:
                self.acked_at[key] = self._early.pop(info.mid)
            else:
                self._mid_to_key[info.mid] = key

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class BulkPublisher:
    """mosquitto_pub reading lines on stdin (one QoS 1 message per line): a C client that
    offers tens of thousands of messages a second and takes a few percent of a core, where
    a Python client on 2 shared cores manages about 2,000 and competes with the agent."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        binary = shutil.which("mosquitto_pub")
        if binary is None:
            raise RuntimeError("mosquitto_pub is missing (apt-get install mosquitto-clients)")
        common = ["-h", host, "-p", str(port), "-V", "mqttv5", "-q", "1", "-M", "1000"]
        self._process = subprocess.Popen(
            [binary, *common, "-t", topic, "-l"], stdin=subprocess.PIPE
        )
        assert self._process.stdin is not None
        self._stdin = self._process.stdin

    def send(self, payloads: Iterable[bytes]) -> None:
        """Payloads must not contain newlines (JSON from json.dumps never does)."""
        self._stdin.write(b"".join(payload + b"\n" for payload in payloads))
        self._stdin.flush()

    def finish(self, timeout_s: float) -> int:
        """Close stdin; mosquitto_pub exits once the broker has acknowledged every line."""
        self._stdin.close()
        return self._process.wait(timeout_s)


def numbered(number: int) -> bytes:
    return json.dumps(
        {"text": f"message number {number} for the sensor", "id": str(number)}
    ).encode()


def rss_kib(pid: int) -> int:
    """Resident set size from /proc (kB, as the kernel reports it)."""
    return status_kib(pid, "VmRSS")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class NotifyListener:
    """A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        path.unlink(missing_ok=True)  # a stale socket file from an earlier run
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.path)
        self._socket.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []

    def drain(self) -> list[tuple[float, str]]:
        """Read what has arrived so far; returns all messages (time received, text)."""
        while True:
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                return self.messages
            self.messages.append((time.monotonic(), data.decode()))

    def ready_at(self) -> float | None:
        return next((at for at, text in self.drain() if "READY=1" in text.split("\n")), None)

    def close(self) -> None:
        self._socket.close()
