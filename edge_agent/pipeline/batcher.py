"""Hand-off from the MQTT network thread to the worker, in micro-batches.

`put` never blocks and never drops: blocking would stall paho's network thread (no
PINGs, no PUBACKs, a dead connection), and dropping would lose a message we have not
acknowledged. The bound is enforced upstream instead: it is sent to the broker as MQTT 5
Receive Maximum, so the broker holds the backlog. A redelivery burst after a reconnect
can briefly exceed it; that is counted, logged by the caller, and harmless.

Continuous batching: with `max_wait_s` 0 (the default) `next_batch` hands over at once
whatever is queued, up to `max_batch`. An idle worker runs a lone message immediately, and
a busy one gets, as its next batch, what arrived while the previous batch ran: batches grow
with the load by themselves, and no message waits for company that may never come. With a
wait, `next_batch` returns as soon as `max_batch` items are there, or when the oldest
waiting item has waited `max_wait_s` (larger batches at light load, for latency).

`split_evenly` cuts what was taken into consecutive parts of similar cost, one for each
idle classifying thread: a batch run on one thread while another has nothing to do takes
twice the time it needs (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Final, Generic, TypeVar

T = TypeVar("T")

# What a message costs beyond its bytes when weighing parts: its two special tokens and
# its share of the Python work around the model, about 4 tokens at ~4 bytes a token.
ITEM_COST_IN_BYTES: Final = 16


class Batcher(Generic[T]):
    def __init__(self, *, bound: int, max_batch: int, max_wait_s: float) -> None:
        self.bound = bound
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._items: deque[tuple[float, T]] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self.over_bound = 0  # puts that found the queue already at its bound

    def put(self, item: T) -> bool:
        """Queue an item; returns True when the queue was already at its bound."""
        with self._ready:
            over = len(self._items) >= self.bound
            if over:
                self.over_bound += 1
            self._items.append((time.monotonic(), item))
            self._ready.notify()
            return over

    def next_batch(self, timeout_s: float, until: Callable[[], bool] | None = None) -> list[T]:
        """Up to max_batch items; [] when nothing arrived within timeout_s, when closed
        and empty, or as soon as `until()` is true (checked at every `wake()`: the worker
        waits for new work or for a batch in flight to finish, whichever comes first). The
        worker calls this in a loop with a short timeout so it can show it is alive even
        when idle."""
        deadline = time.monotonic() + timeout_s
        with self._ready:
            while not self._items:
                if self._closed or (until is not None and until()):
                    return []
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._ready.wait(remaining)
            batch_deadline = self._items[0][0] + self._max_wait_s
            while len(self._items) < self._max_batch and not self._closed:
                remaining = batch_deadline - time.monotonic()
                if remaining <= 0:
                    break
                if until is not None and until():
                    return []  # the items keep their place and their deadline
                self._ready.wait(remaining)
            count = min(self._max_batch, len(self._items))
            return [self._items.popleft()[1] for _ in range(count)]

    def remove_where(self, predicate: Callable[[T], bool]) -> list[T]:
        """Take out waiting items that match (e.g. deliveries of a lost connection that
        the broker will send again); returns them."""
        with self._ready:
            kept: deque[tuple[float, T]] = deque()
            removed: list[T] = []
            for stamped in self._items:
                if predicate(stamped[1]):
                    removed.append(stamped[1])
                else:
                    kept.append(stamped)
            self._items = kept
            return removed

    def wake(self) -> None:
        """Make a waiting `next_batch` check its `until` again (any thread)."""
        with self._ready:
            self._ready.notify_all()

    def close(self) -> None:
        """No more items will come; wake the worker so it can finish what is queued."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)


def split_evenly(sizes: Sequence[int], parts: int) -> list[slice]:
    """Consecutive slices of `sizes`' indices, at most `parts` of them and none empty, with
    similar totals of size + ITEM_COST_IN_BYTES. Consecutive, so that results still leave
    in arrival order; each cut where the running total comes closest to its share."""
    count = len(sizes)
    parts = min(parts, count)
    if parts <= 1:
        return [slice(0, count)] if count else []
    running = [0]
    for size in sizes:
        running.append(running[-1] + size + ITEM_COST_IN_BYTES)
    cuts = [0]
    for part in range(1, parts):
        share = running[-1] * part / parts
        # At least one item in this part and in each part after it.
        candidates = range(cuts[-1] + 1, count - (parts - part) + 1)
        cuts.append(min(candidates, key=lambda cut: abs(running[cut] - share)))
    cuts.append(count)
    return [slice(start, end) for start, end in pairwise(cuts)]
