"""Micro-batching hand-off: continuous by default (what is queued goes at once), full
batches at once, lone items within max_wait when one is set, close drains; what is taken
split into consecutive parts of similar cost for idle threads."""

from __future__ import annotations

import threading
import time

from edge_agent.pipeline.batcher import Batcher, split_evenly


def test_full_batch_returns_without_waiting() -> None:
    batcher: Batcher[int] = Batcher(bound=100, max_batch=4, max_wait_s=5.0)
    for item in range(10):
        batcher.put(item)
    started = time.monotonic()
    assert batcher.next_batch(1.0) == [0, 1, 2, 3]
    assert batcher.next_batch(1.0) == [4, 5, 6, 7]
    assert time.monotonic() - started < 1.0


def test_continuous_batching_hands_over_what_is_queued_without_waiting() -> None:
    batcher: Batcher[int] = Batcher(bound=100, max_batch=4, max_wait_s=0.0)
    batcher.put(1)
    # A wait for company would take the whole 5 s: the lone item comes back at once.
    started = time.monotonic()
    assert batcher.next_batch(5.0) == [1]
    for item in range(2, 8):  # what queued while the previous batch ran
        batcher.put(item)
    assert batcher.next_batch(5.0) == [2, 3, 4, 5]
    assert batcher.next_batch(5.0) == [6, 7]
    assert time.monotonic() - started < 2.5


def test_lone_item_waits_at_most_max_wait() -> None:
    batcher: Batcher[int] = Batcher(bound=100, max_batch=16, max_wait_s=0.05)
    batcher.put(1)
    started = time.monotonic()
    assert batcher.next_batch(1.0) == [1]
    assert 0.03 <= time.monotonic() - started < 0.5


def test_items_arriving_during_the_wait_join_the_batch() -> None:
    batcher: Batcher[int] = Batcher(bound=100, max_batch=3, max_wait_s=2.0)
    batcher.put(1)
    threading.Timer(0.05, lambda: (batcher.put(2), batcher.put(3))).start()
    started = time.monotonic()
    assert batcher.next_batch(5.0) == [1, 2, 3]
    assert time.monotonic() - started < 1.5


def test_empty_timeout_and_close() -> None:
    batcher: Batcher[int] = Batcher(bound=2, max_batch=8, max_wait_s=10.0)
    assert batcher.next_batch(0.01) == []
    for item in range(3):
        batcher.put(item)  # never blocks, even past the bound
    assert batcher.over_bound == 1
    batcher.close()
    started = time.monotonic()
    assert batcher.next_batch(5.0) == [0, 1, 2]  # closing stops the wait for a fuller batch
    assert batcher.next_batch(5.0) == []
    assert time.monotonic() - started < 1.0


def test_remove_where() -> None:
    batcher: Batcher[int] = Batcher(bound=10, max_batch=10, max_wait_s=0.0)
    for item in range(6):
        batcher.put(item)
    assert batcher.remove_where(lambda item: item % 2 == 0) == [0, 2, 4]
    assert batcher.next_batch(0.1) == [1, 3, 5]


def test_a_wake_with_its_condition_met_ends_the_wait_for_work() -> None:
    # The worker waits for new work or for a batch in flight to finish, whichever is first.
    batcher: Batcher[int] = Batcher(bound=100, max_batch=4, max_wait_s=0.0)
    finished = threading.Event()

    def finish_in_flight() -> None:
        time.sleep(0.1)
        finished.set()
        batcher.wake()

    threading.Thread(target=finish_in_flight).start()
    started = time.monotonic()
    assert batcher.next_batch(5.0, until=finished.is_set) == []
    assert time.monotonic() - started < 2.5
    batcher.put(1)
    assert batcher.next_batch(5.0, until=finished.is_set) == [1]  # work beats the condition


def test_a_wake_during_the_wait_for_company_leaves_the_items_queued() -> None:
    batcher: Batcher[int] = Batcher(bound=100, max_batch=4, max_wait_s=5.0)
    batcher.put(1)
    finished = threading.Event()
    threading.Timer(0.1, lambda: (finished.set(), batcher.wake())).start()
    assert batcher.next_batch(1.0, until=finished.is_set) == []
    assert len(batcher) == 1
    for item in (2, 3, 4):
        batcher.put(item)
    assert batcher.next_batch(1.0) == [1, 2, 3, 4]


def _parts(sizes: list[int], parts: int) -> list[list[int]]:
    return [sizes[part] for part in split_evenly(sizes, parts)]


def test_split_evenly_keeps_order_and_every_item_once() -> None:
    sizes = [30, 5, 80, 12, 12, 40, 7, 300, 9, 15]
    for parts in range(1, 13):
        pieces = _parts(sizes, parts)
        assert [size for piece in pieces for size in piece] == sizes
        assert all(pieces) and len(pieces) == min(parts, len(sizes))


def test_split_evenly_balances_the_parts() -> None:
    assert _parts([10] * 16, 2) == [[10] * 8, [10] * 8]
    # One long text: it runs alone while the short ones share the other thread.
    assert _parts([10, 10, 10, 200], 2) == [[10, 10, 10], [200]]
    assert _parts([200, 10, 10, 10], 2) == [[200], [10, 10, 10]]


def test_split_evenly_small_cases() -> None:
    assert split_evenly([], 2) == []
    assert _parts([5], 3) == [[5]]
    assert _parts([5, 6], 0) == [[5, 6]]  # no idle thread: one part, waiting for the first
    assert _parts([1, 2, 3], 3) == [[1], [2], [3]]
