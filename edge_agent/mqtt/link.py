"""The agent's MQTT connection: session, manual acks, publishing.

paho's types stop here. Deliveries become `Inbound` values at the boundary (like aiomqtt's
`Message._from_paho_message`), so the rest of the agent is testable without paho.

What this module guarantees:
- persistent session (MQTT 5 clean_start=False + Session Expiry; 3.1.1 clean_session=False),
  QoS 1 subscriptions re-made on every successful connect, Receive Maximum = queue bound;
- manual acknowledgement (`Client(manual_ack=True)`): nothing is acknowledged here on
  its own; `ack` is called by the AckLedger once a delivery's results are confirmed;
- every publish can carry an `on_done` callback fired on its PUBACK, race-free even when
  the PUBACK beats `publish()` back to the caller;
- a refused CONNACK is logged with its reason code and not treated as connected;
- reconnects back off exponentially with full jitter, capped, through paho's own loop;
- the network thread is never blocked: callbacks only convert, count and hand off;
- paho's log lines go to our logger (and double as the network thread's heartbeat).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.config.settings import BrokerConfig
from edge_agent.mqtt.paho_glue import (
    PahoLogBridge,
    backoff_delay,
    new_properties,
    send_packets_at_once,
)
from edge_agent.pipeline.inbound import Inbound
from edge_agent.telemetry.logs import get_logger

OFFLINE_PAYLOAD: Final = json.dumps({"state": "offline"}).encode()

log = get_logger(__name__)


class LinkHandler(Protocol):
    """What the daemon does with the link's events; called on paho's network thread, so
    none of these may block."""

    def on_inbound(self, inbound: Inbound) -> None: ...

    def on_connected(self, generation: int, session_present: bool) -> None: ...

    def on_disconnected(self) -> None: ...


@dataclass(frozen=True)
class Subscription:
    topic_filter: str  # may be $share/<group>/<filter>
    identifier: int  # MQTT 5 Subscription Identifier (route index + 1)
    shared: bool


class MqttLink:
    _handler: LinkHandler  # set by start(), before any callback can fire

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        subscriptions: list[Subscription],
        status_topic: str,
    ) -> None:
        self._broker = broker
        self._subscriptions = subscriptions
        self._status_topic = status_topic
        self._v5 = broker.protocol == 5
        self._lock = threading.Lock()
        self._pending: dict[int, Callable[[], None] | None] = {}
        self._confirmed_early: set[int] = set()
        self._connected = threading.Event()
        self._generation = 0
        self._failures = 0
        self._accepting = True
        self._network_thread: threading.Thread | None = None
        self.last_network_activity = time.monotonic()
        self._client = self._make_client()
        self._set_next_delay()

    # ---- set-up -------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        broker = self._broker
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=broker.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._v5 else False,
            manual_ack=True,
        )
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls is not None:
            client.tls_set(
                ca_certs=broker.tls.ca_file,
                certfile=broker.tls.cert_file,
                keyfile=broker.tls.key_file,
            )
        client.will_set(self._status_topic, OFFLINE_PAYLOAD, qos=1, retain=True)
        # Unlimited local queue: results published while disconnected wait in paho's
        # session and are sent on reconnect; the broker-side Receive Maximum bounds them.
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        client.on_subscribe = self._handle_subscribe
        client.on_socket_open = send_packets_at_once
        # paho's DEBUG lines (several per message, formatted never) only beat the heartbeat;
        # INFO and up go through our structlog renderer. (on_log would format every
        # packet's line: a third of the throughput.)
        client.enable_logger(PahoLogBridge(f"paho.{self._broker.client_id}", self._beat))
        return client

    def start(self, handler: LinkHandler, receive_maximum: int) -> None:
        """Connect in the background (retrying with backoff) and start the network thread;
        from now on deliveries and connection changes go to `handler`."""
        self._handler = handler
        properties: Properties | None = None
        if self._v5:
            properties = new_properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self._broker.session_expiry_s
            properties.ReceiveMaximum = receive_maximum
            if self._broker.maximum_packet_size:
                properties.MaximumPacketSize = self._broker.maximum_packet_size
        self._client.connect_async(
            self._broker.host,
            self._broker.port,
            keepalive=self._broker.keepalive_s,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    # ---- paho callbacks (network thread: convert, count, hand off; never block) -------

    def _beat(self) -> None:
        self.last_network_activity = time.monotonic()
        self._network_thread = threading.current_thread()

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._beat()
        if reason.is_failure:
            # Refused (bad credentials, banned client id, ...): paho retries with our
            # backoff; we are not connected and say why.
            log.error(
                "connect_refused", reason=str(reason), code=reason.value, host=self._broker.host
            )
            self._set_next_delay()
            return
        self._failures = 0
        self._set_next_delay()
        with self._lock:
            self._generation += 1
            generation = self._generation
        self._subscribe(client)
        self._connected.set()
        log.info(
            "broker_connected",
            host=self._broker.host,
            port=self._broker.port,
            session_present=flags.session_present,
            generation=generation,
        )
        self._handler.on_connected(generation, flags.session_present)

    def _subscribe(self, client: paho.Client) -> None:
        for subscription in self._subscriptions:
            if self._v5:
                properties = new_properties(PacketTypes.SUBSCRIBE)
                properties.SubscriptionIdentifier = subscription.identifier
                # No Local stops a route from hearing its own results; MQTT 5 forbids it on
                # shared subscriptions. Retained messages only with a new subscription: the
                # re-subscription on every reconnect would replay them (a retained poison or
                # oversized message on every reconnect, and duplicates of every other).
                options = SubscribeOptions(
                    qos=1,
                    noLocal=not subscription.shared,
                    retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB,
                )
                client.subscribe(subscription.topic_filter, options=options, properties=properties)
            else:
                client.subscribe(subscription.topic_filter, qos=1)

    def _handle_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._beat()
        for code in reason_codes:
            if code.is_failure:
                log.error("subscribe_refused", reason=str(code), code=code.value)

    def _handle_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._beat()
        delay = self._set_next_delay()
        log.warning(
            "broker_unreachable",
            host=self._broker.host,
            port=self._broker.port,
            retry_in_s=round(delay, 2),
        )

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._beat()
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected:
            self._handler.on_disconnected()
        if self._accepting:
            delay = self._set_next_delay()
            log.warning("broker_disconnected", reason=str(reason), retry_in_s=round(delay, 2))

    def _handle_message(
        self, client: paho.Client, userdata: Any, message: paho.MQTTMessage
    ) -> None:
        self._beat()
        properties = message.properties
        try:
            topic = message.topic
        except UnicodeDecodeError:
            # MQTT forbids it and brokers check it; acknowledge so it cannot wedge the session.
            log.error("message_dropped", reason="topic is not valid UTF-8", mid=message.mid)
            if message.qos > 0:
                client.ack(message.mid, message.qos)
            return
        response_topic = getattr(properties, "ResponseTopic", None) if properties else None
        correlation = getattr(properties, "CorrelationData", None) if properties else None
        identifiers = getattr(properties, "SubscriptionIdentifier", None) if properties else None
        if isinstance(identifiers, int):
            identifiers = [identifiers]
        with self._lock:
            generation = self._generation
            accepting = self._accepting
        if not accepting:
            # Draining: not acknowledged, so the broker redelivers it after the restart.
            return
        self._handler.on_inbound(
            Inbound(
                topic=topic,
                payload=bytes(message.payload),
                mid=message.mid,
                qos=message.qos,
                generation=generation,
                received_at=time.monotonic(),
                redelivered=bool(message.dup),
                response_topic=response_topic if isinstance(response_topic, str) else None,
                correlation_data=bytes(correlation)
                if isinstance(correlation, bytes | bytearray)
                else None,
                subscription_ids=tuple(int(number) for number in identifiers or ()),
            )
        )

    def _handle_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        self._beat()
        if reason.is_failure:
            # The broker refused the result (e.g. ACL). Retrying would fail the same way;
            # it is logged and counted as done so later messages are not held behind it.
            log.error("publish_refused", reason=str(reason), code=reason.value, mid=mid)
        with self._lock:
            if mid in self._pending:
                done = self._pending.pop(mid)
            else:
                self._confirmed_early.add(mid)
                return
        if done is not None:
            done()

    def _set_next_delay(self) -> float:
        """Full-jitter exponential backoff, applied through paho's reconnect loop: the
        delay paho waits next is exactly this one (min = max)."""
        delay = backoff_delay(
            self._failures, self._broker.reconnect_min_s, self._broker.reconnect_max_s
        )
        self._failures += 1
        # paho annotates the delays as int but computes with them as numbers; fractions of
        # a second matter for the first retries.
        seconds = cast(int, delay)
        self._client.reconnect_delay_set(min_delay=seconds, max_delay=seconds)
        return delay

    # ---- used by the service (any thread) -------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation_data: bytes | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> bool:
        """Queue a publish; `on_done` runs (on the network thread) when the broker has it.
        Returns False when paho refused to queue it (the caller decides what that means)."""
        properties: Properties | None = None
        if self._v5 and correlation_data is not None:
            properties = new_properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation_data
        try:
            info = self._client.publish(
                topic, payload, qos=qos, retain=retain, properties=properties
            )
        except ValueError as error:
            log.error("publish_failed", topic=topic, reason=str(error))
            return False
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.error("publish_failed", topic=topic, reason=paho.error_string(info.rc))
            return False
        with self._lock:
            if info.mid in self._confirmed_early:
                self._confirmed_early.discard(info.mid)
            else:
                self._pending[info.mid] = on_done
                return True
        if on_done is not None:
            on_done()
        return True

    def subscribe(self, topics: Sequence[str]) -> None:
        """Extra QoS 1 subscriptions at runtime (OTA). Not remembered across connects: the
        caller re-subscribes from its on_connected (the OTA worker does)."""
        if topics:
            self._client.subscribe([(topic, 1) for topic in topics])  # one SUBSCRIBE packet

    def unsubscribe(self, topics: Sequence[str]) -> None:
        if topics:
            self._client.unsubscribe(list(topics))

    def ack(self, mid: int) -> None:
        self._client.ack(mid, 1)

    def stop_accepting(self) -> None:
        """Drain starts: new deliveries are left unacknowledged for the next run."""
        with self._lock:
            self._accepting = False

    def unconfirmed(self) -> int:
        with self._lock:
            return len(self._pending)

    def network_alive(self) -> bool:
        thread = self._network_thread
        return thread is None or thread.is_alive()

    def close(self, offline_wait_s: float, abandon: Callable[[], bool] = lambda: False) -> None:
        """Publish the offline status (when connected), disconnect, stop the network thread.
        A clean DISCONNECT keeps the persistent session and does not fire the last will.
        `abandon` (a second signal) cuts the wait for the offline status short."""
        self.stop_accepting()
        if self.connected:
            sent = threading.Event()
            self.publish(self._status_topic, OFFLINE_PAYLOAD, qos=1, retain=True, on_done=sent.set)
            deadline = time.monotonic() + offline_wait_s
            while not sent.wait(0.05):
                if abandon() or time.monotonic() >= deadline:
                    log.warning("offline_status_unconfirmed", waited_s=offline_wait_s)
                    break
        self._client.disconnect()
        self._client.loop_stop()
