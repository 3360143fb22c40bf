"""One MQTT delivery in the agent's own terms: what the network edge (edge_agent.mqtt)
hands to the pure core, so routing and processing never see paho's types."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Inbound:
    """One delivery, in our own terms."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection delivered it (acks are only valid on that one)
    received_at: float  # time.monotonic()
    redelivered: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_ids: tuple[int, ...] = ()
