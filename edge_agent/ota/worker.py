"""Runs the OTA receiver on its own thread and carries out its actions through the MQTT link.

The daemon's whole OTA integration is: build an `OtaWorker`, call `connected()` from the
link's on-connect callback, hand it every delivery whose topic starts with the OTA prefix
(`submit`), pass the model store's verdicts (`swap_result`), and `stop()` at shutdown.
Hashing and disk writes happen here, never on paho's network thread or the inference worker.
A delivery is acknowledged only after the receiver has handled it (its chunk is on disk), so
a crash means redelivery, not loss.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from edge_agent.ota.actions import Action, Installed, Report, Subscribe, Unsubscribe
from edge_agent.ota.receiver import OtaReceiver
from edge_agent.telemetry.logs import get_logger

log = get_logger(__name__)

STOP_TIMEOUT_S: Final = 10.0
# What makes two reports the same news (the time they were made is not).
_REPORT_IDENTITY: Final = ("state", "update_id", "name", "version", "received", "total", "reason")


class OtaLink(Protocol):
    """What the worker needs from the MQTT link (edge_agent.mqtt.link.MqttLink)."""

    def subscribe(self, topics: Sequence[str]) -> None: ...  # QoS 1

    def unsubscribe(self, topics: Sequence[str]) -> None: ...

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> bool: ...


@dataclass(frozen=True)
class _Delivery:
    topic: str
    payload: bytes
    ack: Callable[[], None] | None


@dataclass(frozen=True)
class _SwapResult:
    name: str
    version: str
    error: str | None


class _Connected:
    pass


_Job = _Delivery | _SwapResult | _Connected | None


class OtaWorker:
    def __init__(
        self,
        receiver: OtaReceiver,
        link: OtaLink,
        *,
        on_installed: Callable[[Installed], None] = lambda installed: None,
        on_report: Callable[[Report], None] = lambda report: None,
    ) -> None:
        self._receiver = receiver
        self._link = link
        self._on_installed = on_installed
        self._on_report = on_report
        # Unbounded on purpose: the broker's Receive Maximum and the receiver's chunk window
        # bound what can be in flight, and blocking here would stall paho's network thread.
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._last_report: tuple[object, ...] | None = None
        self._repeats = 0  # reports equal to the last one, not published again
        self._thread = threading.Thread(target=self._run, name="ota", daemon=True)
        self._thread.start()

    def connected(self) -> None:
        """Call on every (re)connect: subscriptions are (re)made, staged transfers resume."""
        self._jobs.put(_Connected())

    def submit(self, topic: str, payload: bytes, ack: Callable[[], None] | None = None) -> None:
        """`ack` runs once the delivery is handled: the link's acknowledgement, bound to the
        connection that delivered it (a message id means nothing on the next connection)."""
        self._jobs.put(_Delivery(topic, payload, ack))

    def backlog(self) -> int:
        """Jobs waiting (approximate: another thread may be adding or taking one)."""
        return self._jobs.qsize()

    def swap_result(self, name: str, version: str, error: str | None) -> None:
        self._jobs.put(_SwapResult(name, version, error))

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        self._jobs.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._execute(self._handle(job))
            except OSError as error:
                # Disk full, read-only filesystem...: say so and keep serving. The delivery
                # is acknowledged all the same: acknowledgements go out in arrival order, so
                # one held back would stall every later one, inference results included. A
                # chunk lost this way is still retained on the broker and still missing here:
                # the next (re)subscription fetches it again.
                log.error("ota_io_failed", reason=str(error))
            except Exception:
                # A bug must not end OTA for the life of the process, nor loop on one message:
                # log it with its traceback and acknowledge the delivery below.
                log.exception("ota_message_failed", topic=getattr(job, "topic", None))
            if isinstance(job, _Delivery) and job.ack is not None:
                job.ack()

    def _handle(self, job: _Delivery | _SwapResult | _Connected) -> list[Action]:
        if isinstance(job, _Connected):
            return self._receiver.start()
        if isinstance(job, _SwapResult):
            return self._receiver.on_swap_result(job.name, job.version, job.error)
        return self._receiver.on_message(job.topic, job.payload)

    def _repeats_last(self, report: Report) -> bool:
        """Whether `report` says what the last one said (its time aside). A flood of the same
        bad update (anyone allowed to publish on the OTA topics can send one) made a retained
        report, an event and a log line per message: QoS 1 publishes that took paho's
        in-flight window from the results, so labels waited behind the junk. The retained
        report already says it; repeats are counted, logged at 1, 2, 4, 8... of them."""
        document = report.document
        key = (report.topic, *(document.get(field) for field in _REPORT_IDENTITY))
        if key != self._last_report:
            self._last_report, self._repeats = key, 0
            return False
        self._repeats += 1
        if self._repeats & (self._repeats - 1) == 0:
            log.warning(
                "ota_report_repeated",
                state=report.state,
                update_id=document.get("update_id"),
                reason=document.get("reason"),
                times=self._repeats,
            )
        return True

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Subscribe):
                self._link.subscribe(action.topics)
            elif isinstance(action, Unsubscribe):
                self._link.unsubscribe(action.topics)
            elif isinstance(action, Report):
                if self._repeats_last(action):
                    continue
                self._link.publish(action.topic, action.payload, qos=1, retain=True)
                log.info(
                    "ota_" + action.state,
                    update_id=action.document.get("update_id"),
                    model=action.document.get("name"),
                    version=action.document.get("version"),
                    received=action.document.get("received"),
                    total=action.document.get("total"),
                    reason=action.document.get("reason"),
                )
                self._on_report(action)
            else:
                log.info("ota_bundle_installed", model=action.name, version=action.version)
                self._on_installed(action)
