"""When to acknowledge an inbound delivery: after its results are confirmed, in arrival order.

At-least-once end to end means the broker forgets a message only once its result is safe
at the broker, so each delivery is acknowledged only after every publish it caused
(result, error, dead letter) got its PUBACK. MQTT also requires PUBACKs in the order the
PUBLISH packets arrived, so a delivery that finishes early waits behind older ones.

Deliveries belong to one connection. After a reconnect the broker redelivers whatever was
not acknowledged, possibly reusing packet ids, so entries of an older connection are
dropped and never acknowledged on the new one (that would acknowledge a different
message). Pure bookkeeping plus one `send_ack` callable; thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryRef:
    generation: int  # which connection delivered it
    mid: int


@dataclass
class _Entry:
    outstanding: int | None = None  # None until the worker says how many publishes to await


class AckLedger:
    def __init__(self, send_ack: Callable[[int], None]) -> None:
        # send_ack queues a PUBACK; it is called with the ledger lock held so that acks
        # from the worker and the network thread cannot overtake each other.
        self._send_ack = send_ack
        self._lock = threading.Lock()
        self._entries: OrderedDict[DeliveryRef, _Entry] = OrderedDict()
        self._generation = 0
        self._acked = 0

    def new_connection(self, generation: int) -> int:
        """Forget deliveries of older connections; returns how many were forgotten."""
        with self._lock:
            self._generation = generation
            stale = [ref for ref in self._entries if ref.generation != generation]
            for ref in stale:
                del self._entries[ref]
            return len(stale)

    def arrived(self, ref: DeliveryRef) -> None:
        """Called on the network thread in the order deliveries arrive."""
        with self._lock:
            if ref.generation == self._generation:
                self._entries[ref] = _Entry()

    def expect(self, ref: DeliveryRef, publishes: int) -> None:
        """The worker is about to make `publishes` publishes for this delivery (0: ack as
        soon as older deliveries are acknowledged)."""
        with self._lock:
            entry = self._entries.get(ref)
            if entry is None:
                return  # its connection is gone; the broker will redeliver it
            entry.outstanding = (entry.outstanding or 0) + publishes
            self._release_ready()

    def confirmed(self, ref: DeliveryRef) -> None:
        """One publish made for this delivery was acknowledged by the broker."""
        with self._lock:
            entry = self._entries.get(ref)
            if entry is None or entry.outstanding is None:
                return
            entry.outstanding -= 1
            self._release_ready()

    def settle(self, ref: DeliveryRef) -> None:
        """Acknowledge this delivery in its turn whatever it still waits for (its handling
        failed half-way: counting on publishes that will never be made would stall every
        later acknowledgement)."""
        with self._lock:
            entry = self._entries.get(ref)
            if entry is None:
                return
            entry.outstanding = 0
            self._release_ready()

    def pending(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def acked(self) -> int:
        return self._acked

    def _release_ready(self) -> None:
        while self._entries:
            ref, entry = next(iter(self._entries.items()))
            if entry.outstanding is None or entry.outstanding > 0:
                return
            del self._entries[ref]
            self._send_ack(ref.mid)
            self._acked += 1
