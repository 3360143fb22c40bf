"""Drive the OTA protocol in one process: build an update, play the broker's retained store.

`Device` is a real `OtaReceiver` plus a record of what it asked the MQTT link to do;
`deliver` plays the broker's part for retained messages: each topic the device subscribes
to gets its retained payload once, in subscription order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.bundle.signer import Signer
from edge_agent.ota.actions import Action, Report, Subscribe, Unsubscribe
from edge_agent.ota.manifest import Target
from edge_agent.ota.push import Update, build_update
from edge_agent.ota.receiver import OtaReceiver
from tests.support.keys import Operator

NOW = datetime(2026, 11, 23, 9, 40, tzinfo=UTC)
PREFIX = "test/ota"
DEVICE = "pi-7"
FLEET = "kitchen"
CHUNK = 1024


@dataclass
class Device:
    """An OTA receiver plus a record of what it asked the MQTT link to do."""

    models_dir: Path
    state_dir: Path
    receiver: OtaReceiver
    subscribed: set[str]
    reports: list[Report]
    asked: list[str] = field(default_factory=list)  # every topic ever subscribed, in order

    def apply(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, Subscribe):
                self.subscribed.update(action.topics)
                self.asked.extend(action.topics)
            elif isinstance(action, Unsubscribe):
                self.subscribed.difference_update(action.topics)
            elif isinstance(action, Report):
                self.reports.append(action)
        return actions

    @property
    def last_state(self) -> str:
        return self.reports[-1].state

    @property
    def last_reason(self) -> str:
        return str(self.reports[-1].document.get("reason"))


DeviceFactory = Callable[..., Device]


def push(
    operator: Operator,
    files: dict[str, bytes],
    *,
    target: Target | None = None,
    signer: Signer | None = None,
    now: datetime = NOW,
    **options: object,
) -> Update:
    return build_update(
        files,
        signer or operator.signer,
        target or Target(device=DEVICE),
        prefix=PREFIX,
        now=now,
        chunk_size=CHUNK,
        **options,  # type: ignore[arg-type]
    )


def retained(update: Update) -> dict[str, bytes]:
    return {message.topic: message.payload for message in update.messages}


def deliver(
    device: Device, store: dict[str, bytes], *, max_chunks: int | None = None
) -> list[object]:
    """Send each subscribed topic its retained message once; stop after `max_chunks` chunks."""
    actions: list[object] = []
    queue = deque(sorted(device.subscribed))
    delivered_chunks = 0
    while queue:
        topic = queue.popleft()
        if topic not in store or topic not in device.subscribed:
            continue
        if "/blob/" in topic:
            if max_chunks is not None and delivered_chunks >= max_chunks:
                break
            delivered_chunks += 1
        before = set(device.subscribed)
        actions += device.apply(device.receiver.on_message(topic, store[topic]))
        queue.extend(sorted(device.subscribed - before))
    return actions
