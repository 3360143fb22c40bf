"""Home Assistant discovery, kept in step with what the agent serves.

Announces (retained, QoS 1) the device document of daemon/ha_discovery.py:
- on every connect, and whenever Home Assistant publishes `online` on its status topic
  (its birth message: it has restarted and may have lost its state);
- after a model swap that changes what a route can publish (labels, out-of-scope label);
- when a wildcard route labels a message on a concrete topic it has not announced yet
  (before that result is published, so the entity exists when its first state arrives),
  up to `max_topics_per_route` topics per route; more are served but not announced.

What was announced is remembered in `<state_dir>/homeassistant.json`, so a restart keeps
the wildcard topics' entities, and components that no longer belong to any route (a route
or model removed, stats turned off) are removed the way Home Assistant documents it: one
update with the component reduced to its platform, then one without it. With discovery
turned off, `Cleanup` publishes an empty retained config once, which removes the device.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from edge_agent.config.settings import Config
from edge_agent.daemon.ha_discovery import Device, Entity, device_payload
from edge_agent.daemon.side_channels import acknowledge
from edge_agent.models.store import ModelStore, Swapped
from edge_agent.mqtt.link import MqttLink
from edge_agent.pipeline import routing
from edge_agent.pipeline.acks import AckLedger
from edge_agent.pipeline.inbound import Inbound
from edge_agent.telemetry.logs import get_logger

STATE_FILE: Final = "homeassistant.json"

log = get_logger(__name__)


@dataclass(frozen=True)
class _Tracked:
    input_topic: str
    state_topic: str
    route: routing.Route


def device_for(config: Config) -> Device:
    ha = config.homeassistant
    client_id = config.broker.client_id
    return Device(
        client_id=client_id,
        name=ha.device_name or f"edge-agent {client_id}",
        discovery_prefix=ha.discovery_prefix,
        status_topic=config.topic(config.topics.status),
        stats_topic=config.topic(config.topics.stats) if config.stats_interval_s > 0 else None,
        stats_interval_s=config.stats_interval_s,
        models=tuple(dict.fromkeys(route.model for route in config.routes)),
    )


class HomeAssistantChannel:
    def __init__(
        self,
        config: Config,
        *,
        routes: tuple[routing.Route, ...],
        link: MqttLink,
        ledger: AckLedger,
        store: ModelStore,
    ) -> None:
        self._device = device_for(config)
        self._ha_status = config.homeassistant.status_topic
        self._limit = config.homeassistant.max_topics_per_route
        self._client_id = config.broker.client_id
        self._state_path = config.state_path / STATE_FILE
        self._link = link
        self._ledger = ledger
        self._store = store
        self._lock = threading.RLock()
        self._tracked: dict[str, _Tracked] = {}  # by state topic
        self._per_route: Counter[int] = Counter()
        self._over_limit: set[int] = set()
        self._last: bytes | None = None
        for route in routes:
            if not route.has_wildcards:
                self._track(route, route.filter)
        previous = _load_state(self._state_path)
        self._restore(previous, routes)
        stale = previous.get("discovery_topic")
        self._stale_topic = stale if isinstance(stale, str) else None
        components = previous.get("components")
        self._previous_components: dict[str, str] = {
            str(key): value
            for key, value in (components.items() if isinstance(components, dict) else ())
            if isinstance(value, str)
        }

    # ---- SideChannel -------------------------------------------------------------------

    def takes(self, topic: str) -> bool:
        return topic == self._ha_status

    def deliver(self, inbound: Inbound) -> None:
        try:
            if inbound.payload.strip() == b"online":
                log.info("homeassistant_online", announcing=self._device.discovery_topic)
                self.announce(force=True)
        except Exception as error:  # on paho's network thread: log, never raise
            log.error("homeassistant_announce_failed", error=repr(error))
        finally:
            acknowledge(self._ledger, inbound)

    def connected(self) -> None:
        self._link.subscribe([self._ha_status])
        try:
            self.announce(force=True)
        except Exception as error:  # on paho's network thread: log, never raise
            log.error("homeassistant_announce_failed", error=repr(error))

    def swapped(self, swapped: Swapped) -> None:
        del swapped
        try:
            self.announce(force=False)  # published only if the document changed (labels)
        except Exception as error:  # on the worker thread: log, never raise
            log.error("homeassistant_announce_failed", error=repr(error))

    # ---- the pipeline's ResultObserver (worker thread) ------------------------------------

    def observe(self, route: routing.Route, input_topic: str, state_topic: str) -> None:
        with self._lock:
            if state_topic in self._tracked or not route.has_wildcards:
                return
            if not self._track(route, input_topic):
                return
        self.announce(force=False)

    # ---- announcing ----------------------------------------------------------------------

    def announce(self, *, force: bool) -> None:
        with self._lock:
            entities = [self._entity(item) for item in self._tracked.values()]
            payload = device_payload(self._device, entities)
            body = json.dumps(payload, separators=(",", ":")).encode()
            if not force and body == self._last:
                return
            topic = self._device.discovery_topic
            if self._stale_topic and self._stale_topic != topic:
                self._link.publish(self._stale_topic, b"", qos=1, retain=True)
            current = {key: value["p"] for key, value in payload["cmps"].items()}
            gone = {
                key: platform
                for key, platform in self._previous_components.items()
                if key not in current
            }
            if gone:
                removal = device_payload(self._device, entities, removed=gone)
                self._link.publish(
                    topic, json.dumps(removal, separators=(",", ":")).encode(), qos=1, retain=True
                )
                log.info("homeassistant_components_removed", components=sorted(gone))
            self._link.publish(topic, body, qos=1, retain=True)
            self._last = body
            self._stale_topic = topic
            self._previous_components = current
            self._save(current)

    def _entity(self, item: _Tracked) -> Entity:
        manifest = self._store.get(item.route.served_by).manifest
        labels = tuple(manifest.labels)
        if manifest.reject is not None and manifest.reject.label not in labels:
            labels = (*labels, manifest.reject.label)
        return Entity(
            input_topic=item.input_topic,
            state_topic=item.state_topic,
            model=item.route.model,
            options=item.route.output.possible_labels(labels),
            payload=item.route.output.payload,
        )

    def _track(self, route: routing.Route, input_topic: str) -> bool:
        if "{topic}" not in route.publish:
            # Every input topic publishes to the same place: one entity, named by the route.
            input_topic = route.filter
        state_topic = routing.render(
            route.publish, topic=input_topic, model=route.model, client_id=self._client_id
        )
        if state_topic in self._tracked:
            return False
        if route.has_wildcards and self._per_route[route.index] >= self._limit:
            if route.index not in self._over_limit:
                self._over_limit.add(route.index)
                log.warning(
                    "homeassistant_topic_limit",
                    route=route.subscription,
                    limit=self._limit,
                    topic=input_topic,
                )
            return False
        self._tracked[state_topic] = _Tracked(input_topic, state_topic, route)
        self._per_route[route.index] += 1
        return True

    def _restore(self, previous: dict[str, Any], routes: tuple[routing.Route, ...]) -> None:
        """Wildcard topics announced by an earlier run, kept while a route still serves them."""
        for entry in previous.get("topics", []):
            if not isinstance(entry, dict):
                continue
            input_topic, model = entry.get("input"), entry.get("model")
            for route in routes:
                if (
                    route.has_wildcards
                    and route.model == model
                    and isinstance(input_topic, str)
                    and routing.topic_matches(route.filter, input_topic)
                    and routing.render(
                        route.publish, topic=input_topic, model=model, client_id=self._client_id
                    )
                    == entry.get("state")
                ):
                    self._track(route, input_topic)
                    break

    def _save(self, components: dict[str, str]) -> None:
        topics = [
            {"input": item.input_topic, "state": item.state_topic, "model": item.route.model}
            for item in self._tracked.values()
            if item.route.has_wildcards
        ]
        state = {
            "discovery_topic": self._device.discovery_topic,
            "components": components,
            "topics": topics,
        }
        _write_state(self._state_path, state)


class Cleanup:
    """Discovery turned off: remove what an earlier run announced, once, then forget it."""

    def __init__(self, config: Config, link: MqttLink) -> None:
        self._state_path = config.state_path / STATE_FILE
        self._link = link

    def takes(self, topic: str) -> bool:
        return False

    def deliver(self, inbound: Inbound) -> None:  # pragma: no cover - takes() is always False
        del inbound

    def connected(self) -> None:
        topic = _load_state(self._state_path).get("discovery_topic")
        if not isinstance(topic, str):
            return
        self._link.publish(topic, b"", qos=1, retain=True)
        log.info("homeassistant_discovery_removed", topic=topic)
        try:
            self._state_path.unlink()
        except OSError as error:
            log.warning("homeassistant_state_not_removed", error=str(error))

    def swapped(self, swapped: Swapped) -> None:
        del swapped


def _load_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        # Only a memory of what was announced: without it nothing old is removed, and
        # wildcard topics are announced again on their next message.
        log.warning("homeassistant_state_unreadable", path=str(path), error=str(error))
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        log.warning("homeassistant_state_not_saved", path=str(path), error=str(error))
