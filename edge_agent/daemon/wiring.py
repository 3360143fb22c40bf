"""Every part of the daemon, built in one place, in the order startup needs.

Startup is all or nothing: trusted keys, every route's model (fully verified, signed when
`models.trusted_keys` is set, and warmed up), the state directory and the metrics port must
all be in place before any thread starts or any connection is made. Otherwise
`StartupError` carries one line naming the problem, and `edge-agent run` exits with status 3
(systemd's unit does not restart on it). Later model versions arrive by hot-swap
(edge_agent/models/store.py) and never stop the daemon.

This is the only module that knows how the parts fit: the pipeline gets resolved routes and
a classify function, the link gets its subscriptions, the service gets finished parts.
"""

from __future__ import annotations

import time
from pathlib import Path

from edge_agent.bundle.keys import KeyFileError, Keyring, KeyScope
from edge_agent.bundle.layout import BundleError
from edge_agent.config.settings import Config
from edge_agent.daemon.control import ControlChannel
from edge_agent.daemon.homeassistant import Cleanup, HomeAssistantChannel
from edge_agent.daemon.model_events import ModelEvents
from edge_agent.daemon.ota_channel import OtaChannel
from edge_agent.daemon.service import Service
from edge_agent.daemon.side_channels import SideChannel
from edge_agent.engine.encoder import Encoder
from edge_agent.engine.session import inference_layout
from edge_agent.labels.examples import LabelsError
from edge_agent.models.label_sets import LabelSets, LabelSetSource
from edge_agent.models.refusals import RefusalLog
from edge_agent.models.store import ModelStore
from edge_agent.mqtt.link import MqttLink, Subscription
from edge_agent.ota.receiver import OtaReceiver, OtaSettings
from edge_agent.ota.worker import OtaWorker
from edge_agent.pipeline import messages, routing
from edge_agent.pipeline.acks import AckLedger
from edge_agent.pipeline.attempts import AttemptLog
from edge_agent.pipeline.batcher import Batcher
from edge_agent.pipeline.inbound import Inbound
from edge_agent.pipeline.output import OutputPolicy
from edge_agent.pipeline.processing import Processor, ResultObserver, Settings
from edge_agent.telemetry.metrics import MetricsServer, render_prometheus
from edge_agent.telemetry.sd_notify import Notifier
from edge_agent.telemetry.stats import Stats


class StartupError(Exception):
    """The daemon cannot start; the message is the one line to print."""


def build_service(config: Config) -> Service:
    """The daemon, ready to `run()`, or StartupError."""
    keyring = _keyring(config)
    workers, threads = inference_layout(config.batching.workers, config.models.threads)
    store = _load_models(config, keyring, threads)
    attempts = _attempt_log(config)
    stats = Stats()
    for name, version in store.versions().items():
        stats.set_model(name, version)
    routes = routes_from_config(config)
    batcher: Batcher[Inbound] = Batcher(
        bound=config.broker.receive_maximum,
        max_batch=config.batching.max_batch,
        max_wait_s=config.batching.max_wait_ms / 1000,
    )
    status_topic = config.topic(config.topics.status)
    link = MqttLink(
        config.broker,
        subscriptions=[
            Subscription(route.subscription, route.index + 1, route.group is not None)
            for route in routes
        ],
        status_topic=status_topic,
    )
    ledger = AckLedger(send_ack=link.ack)
    channels, observer, control = _side_channels(config, routes, link, ledger, store)
    processor = Processor(
        routes,
        store.classify,
        attempts,
        Settings(
            client_id=config.broker.client_id,
            errors_topic=config.topic(config.topics.errors),
            dead_letter_topic=config.topic(config.topics.dead_letter),
            max_attempts=config.limits.max_attempts,
            top_k=config.results.top_k,
            echo_text=config.results.echo_text,
            response_filters=tuple(config.topic(t) for t in config.results.response_topics),
            reserved_filters=_reserved_topics(config),
        ),
        observer,
    )
    events = ModelEvents(link, stats, status_topic=status_topic, versions=store.versions)
    ota = None
    if config.ota.enabled:
        ota = _ota_channel(
            config, keyring, store=store, link=link, ledger=ledger, events=events, stats=stats
        )
    metrics = _metrics_server(config, stats)
    service = Service(
        config,
        store=store,
        attempts=attempts,
        stats=stats,
        processor=processor,
        batcher=batcher,
        link=link,
        ledger=ledger,
        events=events,
        ota=ota,
        metrics=metrics,
        notifier=Notifier(),
        channels=tuple(channels),
        workers=workers,
    )
    if control is not None:
        control.bind_health(lambda: _health_data(service))
    return service


def _side_channels(
    config: Config,
    routes: tuple[routing.Route, ...],
    link: MqttLink,
    ledger: AckLedger,
    store: ModelStore,
) -> tuple[list[SideChannel], ResultObserver | None, ControlChannel | None]:
    """Home Assistant discovery (or the cleanup after it) and the control topic."""
    channels: list[SideChannel] = []
    observer: ResultObserver | None = None
    if config.homeassistant.enabled:
        homeassistant = HomeAssistantChannel(
            config, routes=routes, link=link, ledger=ledger, store=store
        )
        observer = homeassistant.observe  # wildcard routes: entities per new topic
        channels.append(homeassistant)
    else:
        channels.append(Cleanup(config, link))  # removes what an earlier run announced
    control = None
    if config.control.enabled:
        control = ControlChannel(config, link=link, ledger=ledger, store=store)
        channels.append(control)
    return channels, observer, control


def _health_data(service: Service) -> dict[str, object]:
    health = service.health(time.monotonic())
    return {"healthy": health.ok, "worker": health.worker, "network": health.network}


def routes_from_config(config: Config) -> tuple[routing.Route, ...]:
    """The configured routes, resolved into what the pipeline serves."""
    return tuple(
        routing.Route(
            index=index,
            filter=route.subscribe,
            model=route.model,
            publish=route.publish,
            group=route.group,
            spec=messages.InputSpec(
                mode=route.input,
                text_field=route.text_field,
                id_field=route.id_field,
                passthrough=route.passthrough,
                max_payload_bytes=config.limits.max_payload_bytes,
                max_text_bytes=config.limits.max_text_bytes,
            ),
            qos=route.qos,
            examples=route.examples,
            output=OutputPolicy(
                retain=route.retain,
                on_change=route.on_change,
                payload=route.payload,
                fields=route.fields,
                min_score=route.min_score,
                uncertain_label=route.uncertain_label,
            ),
        )
        for index, route in enumerate(config.routes)
    )


def _reserved_topics(config: Config) -> tuple[str, ...]:
    """The agent's own topics (as filters), which no request may make it publish on."""
    status = config.topic(config.topics.status)
    own = [
        status,
        status + "/#",
        config.topic(config.topics.stats),
        config.topic(config.topics.errors),
        config.topic(config.topics.dead_letter),
        config.ota.prefix.rstrip("/") + "/#",
        config.topic(config.control.base_topic).rstrip("/") + "/response/#",
        config.topic(config.control.base_topic).rstrip("/") + "/info",
        config.homeassistant.discovery_prefix.rstrip("/") + "/#",
    ]
    return tuple(own)


def _keyring(config: Config) -> Keyring | None:
    if config.models.trusted_keys:
        try:
            scopes = {
                scope.key_id: KeyScope(frozenset(scope.models), frozenset(scope.fleets))
                for scope in config.models.key_scopes
            }
            return Keyring.from_files((Path(path) for path in config.models.trusted_keys), scopes)
        except KeyFileError as error:
            raise StartupError(f"config error: models.trusted_keys: {error}") from error
    if config.ota.enabled:
        raise StartupError(
            "config error: ota.enabled needs models.trusted_keys "
            "(an OTA channel without keys would accept nothing)"
        )
    return None


def _load_models(config: Config, keyring: Keyring | None, threads: int) -> ModelStore:
    try:
        refusals = RefusalLog(config.state_path)
    except OSError as error:
        raise StartupError(
            f"state directory {config.state_path}: {error.strerror or error}"
        ) from error
    routes = routes_from_config(config)
    label_sets = LabelSets(
        LabelSetSource(route.served_by, route.model, Path(route.examples))
        for route in routes
        if route.examples is not None
    )
    try:
        store = ModelStore.load(
            config.models_dir,
            [route.model for route in config.routes],
            precision=config.models.precision,
            threads=threads,
            keyring=keyring,
            refusals=refusals,
            label_sets=label_sets,
        )
    except BundleError as error:
        raise StartupError(f"model error: {error}") from error
    except LabelsError as error:
        raise StartupError(f"examples error: {error}") from error
    for index, route in enumerate(routes):
        if route.examples is None and isinstance(store.get(route.model), Encoder):
            raise StartupError(
                f"config error: routes[{index}]: {route.model!r} is an embedding model; "
                "give the route an `examples` file to define its labels"
            )
    return store


def _attempt_log(config: Config) -> AttemptLog:
    try:
        return AttemptLog(config.state_path)
    except OSError as error:
        raise StartupError(
            f"state directory {config.state_path}: {error.strerror or error}"
        ) from error


def _ota_channel(
    config: Config,
    keyring: Keyring | None,
    *,
    store: ModelStore,
    link: MqttLink,
    ledger: AckLedger,
    events: ModelEvents,
    stats: Stats,
) -> OtaChannel:
    prefix = config.ota.prefix.rstrip("/")
    receiver = OtaReceiver(
        OtaSettings(
            config.broker.client_id,
            fleet=config.ota.fleet,
            prefix=prefix,
            served_models=frozenset(route.model for route in config.routes),
        ),
        keyring or Keyring({}),
        Path(config.models_dir),
        config.state_path,
    )
    worker = OtaWorker(
        receiver,
        link,
        on_installed=lambda installed: store.poke(),  # look now, not at the next poll
        on_report=events.ota_report,
    )
    return OtaChannel(
        prefix,
        worker,
        ledger,
        qos0_bound=config.broker.receive_maximum,
        on_shed=stats.qos0_shed,
    )


def _metrics_server(config: Config, stats: Stats) -> MetricsServer | None:
    """Bound now, so a port in use is a startup error rather than a silent gap."""
    if not config.metrics.enabled:
        return None
    server = MetricsServer(
        config.metrics.host, config.metrics.port, lambda: render_prometheus(stats.snapshot())
    )
    try:
        server.start()
    except OSError as error:
        where = f"{config.metrics.host}:{config.metrics.port}"
        raise StartupError(f"metrics {where}: {error.strerror or error}") from error
    return server
