"""How model changes reach the outside: the retained status, events, the log and stats.

- `publish_online`: the retained status `{"state": "online", "version", "models"}`, on every
  connect and after every swap, so `models` always names what serves now;
- `swapped` (worker thread, between batches) and `rejected` (loader thread): the
  `model_swapped` / `model_rejected` events on `<status topic>/events`;
- `ota_report`: every OTA report mirrored as an `ota_<state>` event.
Events are QoS 1 and not retained: they are facts about a moment, the retained status is
the state. The link queues publishes while disconnected, so none of these blocks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from edge_agent import __version__
from edge_agent.models.store import BundleRefused, Swapped
from edge_agent.mqtt.link import MqttLink
from edge_agent.ota.actions import Report
from edge_agent.telemetry.logs import get_logger
from edge_agent.telemetry.stats import Stats

log = get_logger(__name__)


class ModelEvents:
    def __init__(
        self,
        link: MqttLink,
        stats: Stats,
        *,
        status_topic: str,
        versions: Callable[[], dict[str, str]],
    ) -> None:
        self._link = link
        self._stats = stats
        self._status_topic = status_topic
        self._events_topic = status_topic + "/events"
        self._versions = versions

    def publish_online(self) -> None:
        online = {"state": "online", "version": __version__, "models": self._versions()}
        self._link.publish(self._status_topic, json.dumps(online).encode(), qos=1, retain=True)

    def rejected(self, rejected: BundleRefused) -> None:
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
        self.publish_online()

    def ota_report(self, report: Report) -> None:
        fields = {key: value for key, value in report.document.items() if key != "state"}
        self.publish_event("ota_" + report.state, **fields)

    def publish_event(self, event: str, **fields: object) -> None:
        body = {"event": event, **fields}
        body.setdefault("at", round(time.time(), 3))
        self._link.publish(self._events_topic, json.dumps(body, separators=(",", ":")).encode())
