"""Topics the daemon serves beside the routes: Home Assistant's status topic and the control
topic. Their deliveries never enter the inference queue; they are handled on the network
thread (cheap, bounded work) and acknowledged through the same ack ledger as results, so
MQTT's in-order PUBACK rule holds across both.
"""

from __future__ import annotations

from typing import Protocol

from edge_agent.models.store import Swapped
from edge_agent.pipeline.acks import AckLedger, DeliveryRef
from edge_agent.pipeline.inbound import Inbound


class SideChannel(Protocol):
    def takes(self, topic: str) -> bool:
        """True for deliveries this channel handles instead of the routes."""
        ...

    def deliver(self, inbound: Inbound) -> None:
        """Network thread; must not block."""
        ...

    def connected(self) -> None:
        """Network thread, after every successful connect: subscribe, (re)publish."""
        ...

    def swapped(self, swapped: Swapped) -> None:
        """Worker thread, after a model swap."""
        ...


def acknowledge(ledger: AckLedger, inbound: Inbound) -> None:
    """Acknowledge a handled side-channel delivery in its turn (it caused no result)."""
    if inbound.qos > 0:
        ref = DeliveryRef(inbound.generation, inbound.mid)
        ledger.arrived(ref)
        ledger.expect(ref, 0)
