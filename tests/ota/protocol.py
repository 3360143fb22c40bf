"""Drive the OTA protocol in one process: build an update, play the broker's retained store.

`deliver` plays the broker's part for retained messages: each topic the device subscribes
to gets its retained payload once, in subscription order.
"""

from __future__ import annotations

from collections import deque

from edge_agent.bundle.signer import Signer
from edge_agent.ota.manifest import Target
from edge_agent.ota.push import Update, build_update
from tests.ota.conftest import DEVICE, NOW, PREFIX, Device, Operator

CHUNK = 1024


def push(
    operator: Operator,
    files: dict[str, bytes],
    *,
    target: Target | None = None,
    signer: Signer | None = None,
    **options: object,
) -> Update:
    return build_update(
        files,
        signer or operator.signer,
        target or Target(device=DEVICE),
        prefix=PREFIX,
        now=NOW,
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
