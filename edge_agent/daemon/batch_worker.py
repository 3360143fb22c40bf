"""The worker thread: batches from the queue to published results, in arrival order.

It takes micro-batches from the batcher, prepares them (attempts journalled, payloads
decoded, routes chosen), has them classified, shapes their results and hands them to paho,
one batch after another in the order they came. With `workers` > 1 the classifying (tokens
and onnxruntime, which releases the GIL) runs on a pool of that many threads, so several
batches are classified at once while this thread prepares the next one and publishes the
last. What is taken while several classifying threads are idle is split among them, and one
batch more than the pool has threads is kept waiting, so that a classifying thread that
finishes finds the next batch ready; a long batch at the head, whose results must leave
first, does not hold the others back. A batch with nothing else in flight or queued (a
light stream) is classified on this thread, without the hand-off. New models are
swapped in only when no batch is in flight, so each batch is labelled by one version. A
batch that raises is handled again message by message, and nothing that one message does
can stop this thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from edge_agent.models.store import ModelStore, Swapped
from edge_agent.mqtt.link import MqttLink
from edge_agent.pipeline.acks import AckLedger, DeliveryRef
from edge_agent.pipeline.attempts import AttemptLog
from edge_agent.pipeline.batcher import Batcher, split_evenly
from edge_agent.pipeline.inbound import Inbound
from edge_agent.pipeline.processing import (
    LABELLED,
    BatchResult,
    Classified,
    Outgoing,
    Prepared,
    Processor,
)
from edge_agent.telemetry.logs import get_logger
from edge_agent.telemetry.stats import Stats

POLL_S: Final = 0.5  # the longest wait for work, so that the thread shows it is alive

log = get_logger(__name__)


@dataclass(frozen=True)
class _InFlight:
    """A batch prepared on the worker thread whose classification runs on the pool."""

    prepared: Prepared
    classified: Future[Classified]


def _classifying(in_flight: deque[_InFlight]) -> int:
    """Batches in flight still being classified (or waiting for a classifying thread); the
    others wait only for an older batch to be published."""
    return sum(1 for item in in_flight if not item.classified.done())


class BatchWorker:
    def __init__(
        self,
        *,
        store: ModelStore,
        processor: Processor,
        batcher: Batcher[Inbound],
        link: MqttLink,
        ledger: AckLedger,
        attempts: AttemptLog,
        stats: Stats,
        workers: int,
        on_swapped: Callable[[Swapped], None],
        abandon: Callable[[], bool],
    ) -> None:
        self._store = store
        self._processor = processor
        self._batcher = batcher
        self._link = link
        self._ledger = ledger
        self._attempts = attempts
        self._stats = stats
        self.workers = workers
        self._on_swapped = on_swapped
        self._abandon = abandon  # a forced shutdown: stop at once, leave the rest unacknowledged
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="edge-agent-classify")
            if workers > 1
            else None
        )
        self._progress = threading.Event()  # a classifying thread finished a batch
        self._thread = threading.Thread(target=self._work, name="edge-agent-worker", daemon=True)
        self.beat = time.monotonic()  # last sign of progress, for the watchdog
        self.batch_started: float | None = None  # the oldest batch in flight began

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _work(self) -> None:
        in_flight: deque[_InFlight] = deque()
        try:
            while not self._abandon():
                if not in_flight:
                    for swapped in self._store.apply_ready():  # between batches, never inside one
                        self._on_swapped(swapped)
                elif self._must_finish_oldest(in_flight):
                    self._finish(in_flight.popleft())
                    self.batch_started = in_flight[0].prepared.started if in_flight else None
                    continue
                idle_threads = self.workers - _classifying(in_flight)
                if idle_threads < 0:  # every thread busy and a batch waiting for them
                    self._wait_for_a_thread(in_flight)
                    continue
                # New work, or the oldest batch in flight done: whichever comes first.
                oldest = in_flight[0].classified.done if in_flight else None
                batch = self._batcher.next_batch(POLL_S, until=oldest)
                self.beat = time.monotonic()
                if batch:
                    self._start_split(batch, in_flight, idle_threads)
                elif not in_flight and self._batcher.closed and len(self._batcher) == 0:
                    return
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False)

    def _classified(self, _: Future[Classified]) -> None:
        """A batch is classified (on its pool thread): wake the worker wherever it waits."""
        self._progress.set()
        self._batcher.wake()

    def _wait_for_a_thread(self, in_flight: deque[_InFlight]) -> None:
        """Until the oldest batch is done or a classifying thread is free, whichever comes
        first. Waits on its own event, not on the batcher: every arrival wakes the batcher's
        waiters, and a saturated worker would wake for each one to find nothing to do."""
        self._progress.clear()  # before the check: a batch done after it sets it again
        if not in_flight[0].classified.done() and _classifying(in_flight) > self.workers:
            self._progress.wait(POLL_S)
        self.beat = time.monotonic()

    def _start_split(
        self, batch: list[Inbound], in_flight: deque[_InFlight], idle_threads: int
    ) -> None:
        """Start `batch`, in consecutive parts of similar size, one for each idle classifying
        thread (one part when none is idle: it waits for the first to finish)."""
        if not in_flight:
            self.batch_started = time.monotonic()
        parts = split_evenly(
            [len(item.payload) for item in batch], idle_threads if self._pool is not None else 1
        )
        alone = len(parts) == 1 and not in_flight and len(self._batcher) == 0
        for part in parts:
            started = self._start(batch[part], alone=alone)
            if started is not None:
                in_flight.append(started)
        self.batch_started = in_flight[0].prepared.started if in_flight else None
        self._stats.set_queue_depth(len(self._batcher))

    def _must_finish_oldest(self, in_flight: deque[_InFlight]) -> bool:
        """Publish the oldest batch now rather than start another: it is done, a new model
        waits for the pipeline to empty, or no more work is coming."""
        return (
            in_flight[0].classified.done()
            or self._store.swap_waiting()
            or (self._batcher.closed and len(self._batcher) == 0)
        )

    def _start(self, batch: list[Inbound], *, alone: bool) -> _InFlight | None:
        """Prepare a batch here and classify it on a pool thread; None when it was handled
        here to the end instead: with one worker, when it is `alone` (nothing else in flight
        or queued, as in a light stream: the hand-off to a pool thread and back cost 0.2-0.5
        ms of a lone message's 3.5, measured at 20 msg/s), or when its preparing raised."""
        if self._pool is None or alone:
            self._handle_safely(batch)
            return None
        try:
            prepared = self._processor.prepare(batch)
        except Exception as error:
            self._recover(batch, error)
            return None
        classified = self._pool.submit(self._processor.classify, prepared)
        classified.add_done_callback(self._classified)
        return _InFlight(prepared, classified)

    def _finish(self, item: _InFlight) -> None:
        """Shape and publish a classified batch (batches finish in the order they came)."""
        prepared = item.prepared
        self._deliver_safely(
            prepared.batch, lambda: self._processor.finish(prepared, item.classified.result())
        )

    def _handle_safely(self, batch: list[Inbound]) -> None:
        """Prepare, classify and publish a batch here."""
        self._deliver_safely(batch, lambda: self._processor.process(batch))

    def _deliver_safely(self, batch: list[Inbound], result: Callable[[], BatchResult]) -> None:
        """Publish what `result()` gives for `batch`, with `_recover` if either raises."""
        try:
            self._deliver(batch, result())
        except Exception as error:
            self._recover(batch, error)
        finally:
            self.beat = time.monotonic()

    def _recover(self, batch: list[Inbound], cause: Exception) -> None:
        """A batch that raised is handled again message by message; a message that raises
        alone gets an `internal_error` result (a dead-letter entry once it has failed
        `limits.max_attempts` times) and is acknowledged. The worker never dies of one."""
        log.exception("batch_crashed", size=len(batch), error=repr(cause))  # in an except
        if len(batch) > 1:
            for inbound in batch:
                self._handle_safely([inbound])
            return
        inbound = batch[0]
        try:
            outgoing = self._processor.crashed(inbound, cause)
            for item in outgoing:
                self._link.publish(item.topic, item.payload, qos=item.qos)
                self._stats.result_published(item.route, item.outcome, None)
        except Exception as again:  # even the error result failed: still never die
            log.exception("message_abandoned", topic=inbound.topic, error=repr(again))
        if inbound.qos > 0:
            self._ledger.settle(DeliveryRef(inbound.generation, inbound.mid))

    def _deliver(self, batch: list[Inbound], result: BatchResult) -> None:
        for inbound, outgoing in result.by_delivery:
            self._publish_for(inbound, outgoing)
        self._attempts.finish_all(result.keys)
        self._stats.batch_done(len(batch))
        outcomes = Counter(item.outcome for _, items in result.by_delivery for item in items)
        labelled = outcomes.pop(LABELLED, 0)
        self._record_stages(batch, result, labelled)
        log.info(
            "batch_done",
            size=len(batch),
            labelled=labelled,
            errors=dict(outcomes),
            models=result.models,
            tokenize_ms=round(result.timing.tokenize_s * 1000, 3),
            infer_ms=round(result.timing.infer_s * 1000, 3),
            batch_ms=round((time.monotonic() - result.started) * 1000, 3),
            waited_ms=round((result.started - min(item.received_at for item in batch)) * 1000, 3),
            queue_depth=len(self._batcher),
        )

    def _record_stages(self, batch: list[Inbound], result: BatchResult, labelled: int) -> None:
        for inbound in batch:
            self._stats.stage_took("queue", (result.started - inbound.received_at) * 1000)
        if labelled:
            self._stats.stage_took("prepare", result.prepare_s * 1000, labelled)
            self._stats.stage_took("tokenize", result.timing.tokenize_s * 1000, labelled)
            self._stats.stage_took("infer", result.timing.infer_s * 1000, labelled)
            self._stats.stage_took("encode", result.encode_s * 1000, labelled)

    def _publish_for(self, inbound: Inbound, outgoing: list[Outgoing]) -> None:
        ref = DeliveryRef(inbound.generation, inbound.mid)
        needs_ack = inbound.qos > 0
        if needs_ack:
            self._ledger.expect(ref, len(outgoing))
        for item in outgoing:
            timed = item.outcome == LABELLED
            # When paho had the publish: set once publish() returns (a PUBACK may beat it).
            handed = [time.monotonic()]

            def done(handed: list[float] = handed, timed: bool = timed) -> None:
                if timed:
                    self._stats.stage_took("puback", (time.monotonic() - handed[0]) * 1000)
                if needs_ack:
                    self._ledger.confirmed(ref)

            began = handed[0]
            queued = self._link.publish(
                item.topic,
                item.payload,
                qos=item.qos,
                retain=item.retain,
                correlation_data=item.correlation_data,
                on_done=done if needs_ack or item.qos > 0 else None,
            )
            handed[0] = time.monotonic()
            if timed:
                self._stats.stage_took("handoff", (handed[0] - began) * 1000)
            if not queued and needs_ack:
                # Logged by the link; counting it done keeps later messages flowing.
                self._ledger.confirmed(ref)
            self._stats.result_published(item.route, item.outcome, item.latency_ms)
