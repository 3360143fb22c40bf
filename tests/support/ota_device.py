"""A device's OTA side over a real broker, without the rest of the daemon.

`DeviceLink` plays the daemon's MQTT link for the real `OtaWorker` (which drives the real
`OtaReceiver`): subscribe, unsubscribe, publish, ack. Used by
tests/integration/ota/test_push_mqtt.py and bench/ota_transfer.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.ota.actions import Report
from edge_agent.ota.receiver import OtaReceiver
from edge_agent.ota.worker import OtaWorker


class DeviceLink:
    """A device's MQTT side for OTA: a real client (manual acks) serving as the `OtaLink` of
    the real `OtaWorker`. `max_chunks` simulates a crash: later chunks are never handled."""

    def __init__(self, port: int, receiver: OtaReceiver, *, max_chunks: int | None = None) -> None:
        self.states: list[str] = []
        self.chunks_submitted = 0
        self._max_chunks = max_chunks
        self._changed = threading.Condition()
        self._published: list[mqtt.MQTTMessageInfo] = []
        self.worker = OtaWorker(receiver, self, on_report=self._record)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True
        )
        self.client.on_connect = lambda *_args: self.worker.connected()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        if "/blob/" in message.topic:
            with self._changed:
                if self._max_chunks is not None and self.chunks_submitted >= self._max_chunks:
                    return
                self.chunks_submitted += 1
                self._changed.notify_all()
        mid = message.mid

        def ack() -> None:
            self.client.ack(mid, 1)

        self.worker.submit(message.topic, bytes(message.payload), ack)

    def _record(self, report: Report) -> None:
        with self._changed:
            self.states.append(report.state)
            self._changed.notify_all()

    # OtaLink
    def subscribe(self, topics: Sequence[str]) -> None:
        self.client.subscribe([(topic, 1) for topic in topics])

    def unsubscribe(self, topics: Sequence[str]) -> None:
        self.client.unsubscribe(list(topics))

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        self._published.append(self.client.publish(topic, payload, qos=qos, retain=retain))
        return True

    def wait_for(self, condition: Callable[[DeviceLink], bool], timeout_s: float = 30) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self), timeout_s):
                raise TimeoutError(f"device states so far: {self.states}")

    def close(self) -> None:
        self.worker.stop()
        for info in self._published:
            info.wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()
