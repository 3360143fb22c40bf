"""The tests' own MQTT client (the agent's side of paho lives only in edge_agent/mqtt/).

`TestClient` publishes at QoS 1 and waits for PUBACKs, and collects everything arriving on
its subscriptions so a test can wait for "N results" with a deadline instead of sleeping.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation_data: bytes | None
    at: float = field(default_factory=time.monotonic)  # arrival, for pause measurements

    def json(self) -> Any:
        return json.loads(self.payload)


class TestClient:
    __test__ = False  # not a pytest test class

    def __init__(self, host: str, port: int, *, client_id: str | None = None) -> None:
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._lock = threading.Condition()
        self.received: list[Received] = []
        self.subscriptions: list[str] = []
        self._connected = threading.Event()
        # A session that outlives a broker restart, so results published while this client
        # reconnects are kept for it (the reliability tests restart the broker).
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 300
        self._client.reconnect_delay_set(1, 1)
        self._client.connect(host, port, keepalive=30, properties=properties)
        self._client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError(f"test client could not connect to {host}:{port}")

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self._connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        with self._lock:
            self.received.append(
                Received(message.topic, bytes(message.payload), bool(message.retain), correlation)
            )
            self._lock.notify_all()

    def subscribe(self, *topics: str) -> None:
        for topic in topics:
            self.subscriptions.append(topic)
            self._client.subscribe(topic, qos=1)
        time.sleep(0.2)  # SUBACK round trip on loopback; later publishes must be seen

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        wait: bool = True,
    ) -> None:
        properties = None
        if response_topic is not None or correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if response_topic is not None:
                properties.ResponseTopic = response_topic
            if correlation_data is not None:
                properties.CorrelationData = correlation_data
        info = self._client.publish(topic, payload, qos=qos, properties=properties)
        if wait and qos > 0:
            info.wait_for_publish(10)

    def wait_for(
        self, count: int, *, topic_prefix: str = "", timeout_s: float = 20.0
    ) -> list[Received]:
        """At least `count` messages whose topic starts with topic_prefix, or AssertionError."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                matching = [m for m in self.received if m.topic.startswith(topic_prefix)]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"got {len(matching)} of {count} messages on {topic_prefix!r} "
                        f"in {timeout_s}s"
                    )
                self._lock.wait(remaining)

    def messages(self, topic_prefix: str = "") -> list[Received]:
        with self._lock:
            return [m for m in self.received if m.topic.startswith(topic_prefix)]

    def pause(self) -> None:
        """Disconnect cleanly, keeping the session: the broker queues results meanwhile."""
        self._connected.clear()
        self._client.disconnect()
        self._client.loop_stop()

    def resume(self, timeout_s: float = 10.0) -> None:
        self._client.reconnect()
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            raise RuntimeError("test client could not reconnect")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
