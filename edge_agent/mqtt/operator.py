"""Short-lived MQTT clients for the workstation side of OTA (`edge-agent model push`,
`model status` and `model unpush`): publish a batch of retained QoS 1 messages and wait for
every PUBACK, or read back the retained messages under a filter. No reconnect logic: a
command fails loudly instead of retrying behind the operator's back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

OPERATOR_MAX_INFLIGHT: Final = 32


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    client_id: str = ""


class BrokerError(Exception):
    """The broker could not be reached or refused us; the message says which and why."""


def _connected_client(broker: BrokerAddress, timeout_s: float) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=broker.client_id, protocol=paho.MQTTv5
    )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.ca_file is not None:
        client.tls_set(ca_certs=broker.ca_file)
    client.max_inflight_messages_set(OPERATOR_MAX_INFLIGHT)
    connected = threading.Event()
    outcome: list[str] = []

    def on_connect(
        _client: paho.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        outcome.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port)
    except OSError as exc:
        raise BrokerError(f"cannot connect to {broker.host}:{broker.port}: {exc}") from None
    client.loop_start()
    if not connected.wait(timeout_s) or outcome[0] != "Success":
        client.loop_stop()
        reason = outcome[0] if outcome else "no CONNACK"
        raise BrokerError(f"broker {broker.host}:{broker.port} refused the connection: {reason}")
    return client


def publish_messages(
    broker: BrokerAddress,
    messages: Sequence[tuple[str, bytes, bool]],
    *,
    timeout_s: float = 120.0,
    on_acked: Callable[[int, int], None] | None = None,
) -> None:
    """Publish (topic, payload, retain) at QoS 1 in order; return once all are acknowledged."""
    client = _connected_client(broker, timeout_s)
    try:
        deadline = time.monotonic() + timeout_s
        infos = [
            client.publish(topic, payload, qos=1, retain=retain)
            for topic, payload, retain in messages
        ]
        for done, info in enumerate(infos, start=1):
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise BrokerError(f"broker did not acknowledge message {done} of {len(infos)}")
            if on_acked is not None:
                on_acked(done, len(infos))
    finally:
        client.disconnect()
        client.loop_stop()


def collect_retained(
    broker: BrokerAddress, topic_filter: str, *, settle_s: float = 1.0, timeout_s: float = 10.0
) -> dict[str, bytes]:
    """The retained messages under a filter: gathered until none arrives for `settle_s`."""
    client = _connected_client(broker, timeout_s)
    found: dict[str, bytes] = {}
    last_arrival = [time.monotonic()]
    lock = threading.Lock()

    def on_message(_client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        if message.retain:
            with lock:
                found[message.topic] = bytes(message.payload)
                last_arrival[0] = time.monotonic()

    client.on_message = on_message
    try:
        client.subscribe(topic_filter, qos=1)
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            time.sleep(0.05)
            with lock:
                if time.monotonic() - last_arrival[0] >= settle_s:
                    break
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return dict(found)
