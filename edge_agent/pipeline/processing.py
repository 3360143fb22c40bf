"""One micro-batch from deliveries to outgoing publishes: poison check, decode, classify.

Three steps: `prepare` and `finish` run on the worker thread in arrival order, `classify`
(tokenize and run the models) may run on another thread meanwhile. None does network I/O:
they return what to publish and the service publishes it, so the order "attempt recorded ->
processed -> published -> acknowledged" stays in one place. Classification failures are
isolated: a batch that raises is retried message by message, and a message that keeps
raising is dead-lettered after `limits.max_attempts`. Messages that were in flight when an
earlier run died ("suspects") are classified alone, so a poison message cannot take its
batch-mates down with it again.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from edge_agent.engine.prediction import ClassifyTiming, Prediction
from edge_agent.pipeline import messages, output, routing
from edge_agent.pipeline.attempts import AttemptLog, message_key
from edge_agent.pipeline.inbound import Inbound
from edge_agent.telemetry.logs import get_logger

LABELLED: Final = "labelled"
NO_ROUTE: Final = "(no route)"

log = get_logger(__name__)


class Classify(Protocol):
    """Label texts with the named model's current version (edge_agent.models.store)."""

    def __call__(
        self,
        model: str,
        texts: Sequence[str],
        /,
        *,
        top_k: int,
        timing: ClassifyTiming | None = None,
    ) -> list[Prediction]: ...


@dataclass(frozen=True)
class Settings:
    """What processing needs from the config, resolved (topics rendered) by the daemon."""

    client_id: str
    errors_topic: str
    dead_letter_topic: str
    max_attempts: int
    top_k: int
    echo_text: bool
    # MQTT 5 Response Topics a request may name (filters), and the agent's own topics it
    # may never name; see routing.response_topic_allowed. None allowed: answers go to the
    # route's output topic as if no Response Topic had been given.
    response_filters: tuple[str, ...] = ()
    reserved_filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    correlation_data: bytes | None
    route: str  # the route's subscription, for stats
    outcome: str  # "labelled" or an error code
    latency_ms: float | None
    retain: bool = False


@dataclass
class BatchResult:
    by_delivery: list[tuple[Inbound, list[Outgoing]]]
    keys: list[str]  # attempt keys begun for this batch; finish them once published
    models: dict[str, int] = field(default_factory=dict)
    started: float = 0.0  # time.monotonic() when processing began: the end of queueing
    prepare_s: float = 0.0  # attempts journalled, payloads decoded, routes chosen
    timing: ClassifyTiming = field(default_factory=ClassifyTiming)  # tokenize, infer
    encode_s: float = 0.0  # building the result payloads and topics


@dataclass(frozen=True)
class _Job:
    position: int  # index of the delivery in the batch
    route: routing.Route
    request: messages.Request
    key: str
    suspect: bool


@dataclass
class Prepared:
    """A batch journalled, decoded and routed, waiting to be classified. One thread at a
    time works on it: the worker, then a classifying thread, then the worker again."""

    batch: list[Inbound]
    outgoing: list[list[Outgoing]]  # per delivery: its error results so far
    keys: list[str]
    jobs: list[_Job]
    started: float
    prepare_s: float


@dataclass
class Classified:
    """What the models said about a prepared batch."""

    labelled: list[tuple[_Job, Prediction]] = field(default_factory=list)
    dead_lettered: list[tuple[int, list[Outgoing]]] = field(default_factory=list)
    models: Counter[str] = field(default_factory=Counter)
    timing: ClassifyTiming = field(default_factory=ClassifyTiming)  # tokenize, infer


# Told about every labelled result before it is published: (route, input topic, output
# topic). Home Assistant discovery uses it to announce an entity for a wildcard route's new
# topic before that topic's first state arrives.
ResultObserver = Callable[[routing.Route, str, str], None]


class Processor:
    def __init__(
        self,
        routes: tuple[routing.Route, ...],
        classify: Classify,
        attempts: AttemptLog,
        settings: Settings,
        observer: ResultObserver | None = None,
    ) -> None:
        self._routes = routes
        self._classify = classify
        self._attempts = attempts
        self._settings = settings
        self._max_attempts = settings.max_attempts
        self._observer = observer
        self._last_labels = output.LastLabels()

    def process(self, batch: list[Inbound]) -> BatchResult:
        """The three steps below in one go."""
        prepared = self.prepare(batch)
        return self.finish(prepared, self.classify(prepared))

    def prepare(self, batch: list[Inbound]) -> Prepared:
        """Journal every attempt, decode, route (the worker thread, in arrival order)."""
        started = time.monotonic()
        outgoing: list[list[Outgoing]] = [[] for _ in batch]
        keys = [message_key(inbound.topic, inbound.payload) for inbound in batch]
        earlier = self._attempts.begin_all(keys)  # on disk before any processing
        jobs: list[_Job] = []
        for position, (inbound, key, previous) in enumerate(zip(batch, keys, earlier, strict=True)):
            if previous >= self._max_attempts:
                outgoing[position] += self._dead_letter(inbound, previous, "a previous run")
                continue
            routes = routing.route_for(self._routes, inbound.topic, inbound.subscription_ids)
            if not routes:
                outgoing[position].append(
                    self._error(
                        inbound,
                        messages.payload_id(inbound.payload),
                        NO_ROUTE,
                        messages.NO_MODEL,
                        "no route is configured for this topic",
                    )
                )
            for route in routes:
                decoded = messages.decode(inbound.payload, route.spec)
                if isinstance(decoded, messages.BadInput):
                    outgoing[position].append(
                        self._error(
                            inbound, decoded.id, route.subscription, decoded.code, decoded.message
                        )
                    )
                else:
                    jobs.append(_Job(position, route, decoded, key, suspect=previous > 0))
        return Prepared(batch, outgoing, keys, jobs, started, time.monotonic() - started)

    def classify(self, prepared: Prepared) -> Classified:
        """Tokenize and run the models (any thread: it reads `prepared` and the attempt
        journal, which has its own lock, and touches nothing else here)."""
        classified = Classified()
        by_model: defaultdict[str, list[_Job]] = defaultdict(list)
        for job in prepared.jobs:
            by_model[job.route.served_by].append(job)
        for model, model_jobs in by_model.items():
            chunks = [[job for job in model_jobs if not job.suspect]]
            chunks += [[job] for job in model_jobs if job.suspect]
            for chunk in chunks:
                if chunk:
                    classified.labelled += self._classify_chunk(
                        model, chunk, prepared.batch, classified
                    )
                    classified.models[model] += len(chunk)
        return classified

    def finish(self, prepared: Prepared, classified: Classified) -> BatchResult:
        """Shape the results (the worker thread, in arrival order: `on_change` and the
        result observer see the labels in the order the messages came)."""
        outgoing = prepared.outgoing
        for position, dead in classified.dead_lettered:
            outgoing[position] += dead
        encoding = time.perf_counter()
        for job, prediction in classified.labelled:
            shaped = self._result(prepared.batch[job.position], job, prediction)
            if shaped is not None:
                outgoing[job.position].append(shaped)
        return BatchResult(
            list(zip(prepared.batch, outgoing, strict=True)),
            prepared.keys,
            models=dict(classified.models),
            started=prepared.started,
            prepare_s=prepared.prepare_s,
            timing=classified.timing,
            encode_s=time.perf_counter() - encoding,
        )

    def _classify_chunk(
        self,
        model: str,
        chunk: list[_Job],
        batch: list[Inbound],
        classified: Classified,
    ) -> list[tuple[_Job, Prediction]]:
        top_k = self._settings.top_k
        try:
            texts = [job.request.text for job in chunk]
            predictions = self._classify(model, texts, top_k=top_k, timing=classified.timing)
            return list(zip(chunk, predictions, strict=True))
        except Exception as error:  # any inference failure is isolated per message, not fatal
            if len(chunk) > 1:
                log.warning(
                    "batch_failed_retrying_alone", model=model, size=len(chunk), error=repr(error)
                )
                done: list[tuple[_Job, Prediction]] = []
                for job in chunk:
                    done += self._classify_chunk(model, [job], batch, classified)
                return done
            job = chunk[0]
            attempts = self._attempts.failed(job.key)
            log.error(
                "message_failed",
                model=model,
                attempts=attempts,
                id=job.request.id,
                error=repr(error),
            )
            if attempts >= self._max_attempts:
                dead = self._dead_letter(batch[job.position], attempts, repr(error))
                classified.dead_lettered.append((job.position, dead))
                return []
            return self._classify_chunk(model, chunk, batch, classified)

    def _result(self, inbound: Inbound, job: _Job, prediction: Prediction) -> Outgoing | None:
        """The result to publish, or None when on_change finds the label unchanged."""
        policy = job.route.output
        prediction = output.apply_min_score(prediction, policy)
        latency_ms = (time.monotonic() - inbound.received_at) * 1000
        response = self._response_topic(inbound)
        topic = response or routing.render(
            job.route.publish,
            topic=inbound.topic,
            model=job.route.model,
            client_id=self._settings.client_id,
        )
        problem = routing.output_topic_problem(topic)
        if problem is not None:
            # Rendered from a delivered topic the broker accepted, yet one it would refuse to
            # take back (and disconnect the agent for): an error result instead.
            return self._error(
                inbound,
                job.request.id,
                job.route.subscription,
                messages.INVALID_TOPIC,
                f"the output topic rendered from this topic is invalid: {problem}",
            )
        if response is None:
            # A request with a Response Topic always gets its answer, shaped the same way but
            # never retained or suppressed: its caller is waiting for it.
            if self._observer is not None:
                try:
                    self._observer(job.route, inbound.topic, topic)
                except Exception as error:  # an observer's failure never costs a result
                    log.error("result_observer_failed", topic=topic, error=repr(error))
            if policy.on_change and not self._last_labels.changed(topic, prediction.label):
                return None
        if policy.payload == "label":
            payload = prediction.label.encode("utf-8", errors="backslashreplace")
        else:
            body = messages.result_body(
                job.request,
                prediction,
                topic=inbound.topic,
                latency_ms=latency_ms,
                echo_text=self._settings.echo_text,
            )
            payload = messages.dump(output.keep_fields(body, policy))
        return Outgoing(
            topic=topic,
            payload=payload,
            qos=job.route.qos,
            correlation_data=inbound.correlation_data if response else None,
            route=job.route.subscription,
            outcome=LABELLED,
            latency_ms=latency_ms,
            retain=policy.retain and response is None,
        )

    def _error(
        self, inbound: Inbound, message_id: str, route: str, code: str, text: str
    ) -> Outgoing:
        response = self._response_topic(inbound)
        return Outgoing(
            topic=response or self._settings.errors_topic,
            payload=messages.encode_error(message_id, topic=inbound.topic, code=code, message=text),
            qos=1,
            correlation_data=inbound.correlation_data if response else None,
            route=route,
            outcome=code,
            latency_ms=None,
        )

    def crashed(self, inbound: Inbound, error: BaseException) -> list[Outgoing]:
        """What to publish for a delivery whose handling raised outside classification (the
        last line of defence: the worker must not die of one message). Its attempt count
        rises like a classification failure's, so a repeat becomes a dead-letter entry."""
        key = message_key(inbound.topic, inbound.payload)
        attempts = self._attempts.failed(key)
        self._attempts.finish(key)
        if attempts >= self._max_attempts:
            return self._dead_letter(inbound, attempts, repr(error))
        message_id = messages.payload_id(inbound.payload)
        text = f"the agent failed on this message: {type(error).__name__}"
        return [self._error(inbound, message_id, NO_ROUTE, messages.INTERNAL_ERROR, text)]

    def _dead_letter(self, inbound: Inbound, attempts: int, cause: str) -> list[Outgoing]:
        message_id = messages.payload_id(inbound.payload)
        text = f"processing failed {attempts} times (last: {cause}); dead-lettered"
        record = {
            "id": message_id,
            "topic": inbound.topic,
            "attempts": attempts,
            "error": {"code": messages.POISON, "message": text},
            "payload_base64": base64.b64encode(inbound.payload).decode("ascii"),
        }
        log.error("message_dead_lettered", id=message_id, attempts=attempts, topic=inbound.topic)
        dead = Outgoing(
            topic=self._settings.dead_letter_topic,
            payload=json.dumps(record, separators=(",", ":")).encode(),
            qos=1,
            correlation_data=None,
            route=NO_ROUTE,
            outcome="dead_lettered",
            latency_ms=None,
        )
        return [dead, self._error(inbound, message_id, NO_ROUTE, messages.POISON, text)]

    def _response_topic(self, inbound: Inbound) -> str | None:
        """The MQTT 5 Response Topic, when the configured policy allows it (a refused one is
        ignored: the answer goes where the route sends it, and the refusal is logged)."""
        topic = inbound.response_topic
        if topic is None:
            return None
        settings = self._settings
        if routing.response_topic_allowed(
            topic, settings.response_filters, settings.reserved_filters
        ):
            return topic
        log.warning("response_topic_refused", topic=inbound.topic, response_topic=topic[:200])
        return None
