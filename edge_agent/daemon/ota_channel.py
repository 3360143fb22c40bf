"""The OTA worker's place in the daemon: its deliveries, acknowledgements and verdicts.

With `ota.enabled`, deliveries under `ota.prefix` go to the OTA worker, never into the
inference queue, and are acknowledged through the same ack ledger as results (in arrival
order, only on the connection that delivered them) once handled, e.g. once a chunk is on
disk: a crash before that means redelivery, not loss. The model store's verdicts on what
the worker installed come back through `swap_result`, which the worker reports.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.ota.worker import OtaWorker
from edge_agent.pipeline.acks import AckLedger, DeliveryRef
from edge_agent.pipeline.inbound import Inbound
from edge_agent.telemetry.logs import get_logger

log = get_logger(__name__)


class OtaChannel:
    def __init__(
        self,
        prefix: str,
        worker: OtaWorker,
        ledger: AckLedger,
        *,
        qos0_bound: int,
        on_shed: Callable[[], int],
    ) -> None:
        self._prefix = prefix.rstrip("/") + "/"
        self._worker = worker
        self._ledger = ledger
        self._qos0_bound = qos0_bound
        self._on_shed = on_shed

    def takes(self, topic: str) -> bool:
        return topic.startswith(self._prefix)

    def deliver(self, inbound: Inbound) -> None:
        """Network thread; never blocks (the worker has its own queue)."""
        if inbound.qos == 0 and self._worker.backlog() >= self._qos0_bound:
            # Receive Maximum bounds QoS 1 deliveries only: a QoS 0 flood on the OTA topics
            # would grow the worker's queue without limit. Updates and chunks are retained
            # and re-fetched, so a shed one costs a retry, not an update.
            shed = self._on_shed()
            if shed & (shed - 1) == 0:
                log.warning("qos0_shed", topic=inbound.topic[:200], times=shed)
            return
        ack = None
        if inbound.qos > 0:
            ref = DeliveryRef(inbound.generation, inbound.mid)
            self._ledger.arrived(ref)

            def ack() -> None:
                self._ledger.expect(ref, 0)  # no results to wait for: acknowledge in turn

        self._worker.submit(inbound.topic, inbound.payload, ack=ack)

    def connected(self) -> None:
        self._worker.connected()  # re-subscribe, resume staged transfers

    def swap_result(self, name: str, version: str, error: str | None) -> None:
        self._worker.swap_result(name, version, error)

    def stop(self, timeout_s: float) -> None:
        self._worker.stop(timeout_s=timeout_s)
