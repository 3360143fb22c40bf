"""How model changes reach the outside: events on `<status topic>/events`, the log, stats,
and the OTA worker's report loop.

The model store decides and swaps; the OTA worker stages and installs; this module is the
glue between them and MQTT, so the service only forwards calls:
- `rejected` (loader thread) and `swapped` (worker thread, between batches) publish
  `model_rejected` / `model_swapped` events and tell the OTA worker the verdict, which it
  reports as `swapped` or `rejected: model store refused it: ...`;
- with `ota.enabled`: deliveries under `ota.prefix` go to the OTA worker (`takes`/`deliver`),
  never into the inference queue, and are acknowledged through the ack ledger once handled;
  every OTA report is mirrored on the events topic as `ota_<state>`.
Events are QoS 1 and not retained: they are facts about a moment, the retained status
(`models` in the online message) is the state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.bundle.keys import Keyring
from edge_agent.config.settings import Config
from edge_agent.models.store import ModelStore, Rejected, Swapped
from edge_agent.mqtt.link import MqttLink
from edge_agent.ota.receiver import OtaReceiver, OtaSettings, Report
from edge_agent.ota.worker import OtaWorker
from edge_agent.pipeline.acks import AckLedger, DeliveryRef
from edge_agent.pipeline.inbound import Inbound
from edge_agent.telemetry.logs import get_logger
from edge_agent.telemetry.stats import Stats

log = get_logger("edge_agent.models")


class ModelUpdates:
    def __init__(
        self,
        config: Config,
        store: ModelStore,
        link: MqttLink,
        stats: Stats,
        keyring: Keyring | None,
        *,
        events_topic: str,
        on_versions_changed: Callable[[], None],
    ) -> None:
        self._link = link
        self._stats = stats
        self._events_topic = events_topic
        self._on_versions_changed = on_versions_changed
        prefix = config.ota.prefix.rstrip("/")
        self._ota_prefix = prefix + "/"
        self.ota: OtaWorker | None = None
        if config.ota.enabled:
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
            self.ota = OtaWorker(
                receiver,
                link,
                on_installed=lambda installed: store.poke(),
                on_report=self._ota_report,
            )

    # ---- OTA plumbing (network thread; never blocks) ---------------------------------

    def takes(self, topic: str) -> bool:
        return self.ota is not None and topic.startswith(self._ota_prefix)

    def deliver(self, inbound: Inbound, ledger: AckLedger) -> None:
        """Hand an OTA delivery to the OTA worker. It is acknowledged through the ledger (in
        arrival order, and only on the connection that delivered it) once handled, e.g. its
        chunk is on disk: a crash before that means redelivery, not loss."""
        assert self.ota is not None
        ack = None
        if inbound.qos > 0:
            ref = DeliveryRef(inbound.generation, inbound.mid)
            ledger.arrived(ref)

            def ack() -> None:
                ledger.expect(ref, 0)

        self.ota.submit(inbound.topic, inbound.payload, ack=ack)

    def connected(self) -> None:
        if self.ota is not None:
            self.ota.connected()  # re-subscribe, resume staged transfers

    def stop(self, timeout_s: float) -> None:
        if self.ota is not None:
            self.ota.stop(timeout_s=timeout_s)

    # ---- verdicts of the model store -------------------------------------------------

    def rejected(self, rejected: Rejected) -> None:
        log.error(
            "model_rejected",
            model=rejected.name,
            version=rejected.version,
            reason=rejected.reason,
            serving=rejected.serving_version,
        )
        self.publish_event(
            "model_rejected",
            model=rejected.name,
            version=rejected.version,
            path=str(rejected.path),
            reason=rejected.reason,
            serving_version=rejected.serving_version,
        )
        if self.ota is not None:
            self.ota.swap_result(rejected.name, rejected.version, rejected.reason)

    def swapped(self, swapped: Swapped) -> None:
        self._stats.set_model(swapped.name, swapped.version)
        log.info(
            "model_swapped",
            model=swapped.name,
            version=swapped.version,
            previous_version=swapped.previous_version,
            labels_changed=swapped.labels_changed,
            load_s=round(swapped.load_s, 3),
            waited_for_batch_ms=round((time.monotonic() - swapped.ready_at) * 1000, 2),
        )
        fields: dict[str, object] = {
            "model": swapped.name,
            "version": swapped.version,
            "previous_version": swapped.previous_version,
            "path": str(swapped.path),
            "load_s": round(swapped.load_s, 3),
            "labels_changed": swapped.labels_changed,
        }
        if swapped.labels_changed:
            fields["labels"] = list(swapped.labels)
            fields["previous_labels"] = list(swapped.previous_labels or ())
        self.publish_event("model_swapped", **fields)
        self._on_versions_changed()
        if self.ota is not None:
            self.ota.swap_result(swapped.name, swapped.version, None)

    # ---- events ------------------------------------------------------------------------

    def publish_event(self, event: str, **fields: object) -> None:
        body = {"event": event, **fields}
        body.setdefault("at", round(time.time(), 3))
        self._link.publish(self._events_topic, json.dumps(body, separators=(",", ":")).encode())

    def _ota_report(self, report: Report) -> None:
        fields = {key: value for key, value in report.document.items() if key != "state"}
        self.publish_event("ota_" + report.state, **fields)
