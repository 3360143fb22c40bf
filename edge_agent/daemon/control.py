"""The control topic: ask a device what it serves without reading its files.

After zigbee2mqtt's bridge API: a request on `<base>/request/<name>` (JSON object or empty;
an optional `transaction` is echoed) is answered on `<base>/response/<name>` with
`{"status": "ok", "data": {...}}` or `{"status": "error", "error": "...", "data": {}}`.
Requests: `health_check` (the service's own health assessment and the serving versions)
and `info` (agent version, config schema version, routes, models with versions and
labels). The same `info` document is kept retained on `<base>/info`, republished on every
connect and after every model swap.

Requests are bounded: at most `max_request_bytes` each (larger ones get an error answer),
and at most `requests_per_minute` in any 60 s window; requests beyond that are dropped
without an answer (answering a flood would be the flood) and logged at 1, 2, 4, 8, ...
Who may send requests at all is the broker's ACL (deploy/mosquitto/acl). The Response Topic
property is not honoured: answers go only to the fixed response topics the ACL covers.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from edge_agent import __version__
from edge_agent.config.settings import CONFIG_SCHEMA_VERSION, Config
from edge_agent.daemon.side_channels import acknowledge
from edge_agent.models.store import ModelStore, Swapped
from edge_agent.mqtt.link import MqttLink
from edge_agent.pipeline.acks import AckLedger
from edge_agent.pipeline.inbound import Inbound
from edge_agent.telemetry.logs import get_logger

REQUESTS: Final = ("health_check", "info")
WINDOW_S: Final = 60.0

log = get_logger(__name__)


class ControlChannel:
    def __init__(
        self,
        config: Config,
        *,
        link: MqttLink,
        ledger: AckLedger,
        store: ModelStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._base = config.topic(config.control.base_topic).rstrip("/")
        self._request_prefix = self._base + "/request/"
        self._link = link
        self._ledger = ledger
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self._dropped = 0
        self._started = clock()
        self._health: Callable[[], dict[str, Any]] = lambda: {}

    def bind_health(self, health: Callable[[], dict[str, Any]]) -> None:
        """The service's health, known only once the service exists (daemon/wiring.py)."""
        self._health = health

    @property
    def info_topic(self) -> str:
        return self._base + "/info"

    # ---- SideChannel -------------------------------------------------------------------

    def takes(self, topic: str) -> bool:
        return topic.startswith(self._request_prefix)

    def deliver(self, inbound: Inbound) -> None:
        try:
            if self._admit():
                name = inbound.topic[len(self._request_prefix) :]
                self._answer(name, inbound.payload)
        except Exception as error:  # on paho's network thread: log, never raise
            log.error("control_request_failed", topic=inbound.topic, error=repr(error))
        finally:
            acknowledge(self._ledger, inbound)

    def connected(self) -> None:
        self._link.subscribe([self._request_prefix + "+"])
        try:
            self.publish_info()
        except Exception as error:  # on paho's network thread: log, never raise
            log.error("control_info_failed", error=repr(error))

    def swapped(self, swapped: Swapped) -> None:
        del swapped
        try:
            self.publish_info()
        except Exception as error:  # on the worker thread: log, never raise
            log.error("control_info_failed", error=repr(error))

    # ---- requests ----------------------------------------------------------------------

    def _admit(self) -> bool:
        limit = self._config.control.requests_per_minute
        now = self._clock()
        with self._lock:
            while self._recent and now - self._recent[0] >= WINDOW_S:
                self._recent.popleft()
            if len(self._recent) < limit:
                self._recent.append(now)
                return True
            self._dropped += 1
            dropped = self._dropped
        if dropped & (dropped - 1) == 0:  # 1st, 2nd, 4th...: visible, not a flood of logs
            log.warning("control_request_dropped", reason="rate limit", limit=limit, times=dropped)
        return False

    def _answer(self, name: str, payload: bytes) -> None:
        if "/" in name:
            return  # not a request topic of ours (the subscription is one level deep)
        response: dict[str, Any]
        request, problem = self._parse(payload)
        if problem is not None:
            response = {"data": {}, "status": "error", "error": problem}
        elif name == "health_check":
            response = {"data": self.health_check(), "status": "ok"}
        elif name == "info":
            response = {"data": self.info(), "status": "ok"}
        else:
            known = ", ".join(REQUESTS)
            response = {
                "data": {},
                "status": "error",
                "error": f"unknown request {name!r} (known: {known})",
            }
        if request is not None and "transaction" in request:
            response["transaction"] = request["transaction"]
        log.info("control_request", request=name, status=response["status"])
        body = json.dumps(response, separators=(",", ":")).encode()
        self._link.publish(f"{self._base}/response/{name}", body, qos=1)

    def _parse(self, payload: bytes) -> tuple[dict[str, Any] | None, str | None]:
        limit = self._config.control.max_request_bytes
        if len(payload) > limit:
            return None, f"request is {len(payload)} bytes, the limit is {limit}"
        if not payload.strip():
            return {}, None
        try:
            request = json.loads(payload)
        except (ValueError, RecursionError):
            return None, "request is not valid JSON"
        if not isinstance(request, dict):
            return None, "request must be a JSON object (or empty)"
        return request, None

    def health_check(self) -> dict[str, Any]:
        return {
            **self._health(),
            "uptime_s": round(self._clock() - self._started, 1),
            "models": self._store.versions(),
        }

    def info(self) -> dict[str, Any]:
        config = self._config
        models: dict[str, Any] = {}
        for name in self._store.names():
            manifest = self._store.get(name).manifest
            models[name] = {
                "version": manifest.version,
                "task": manifest.task,
                "labels": list(manifest.labels),
            }
        return {
            "version": __version__,
            "config_schema_version": CONFIG_SCHEMA_VERSION,
            "client_id": config.broker.client_id,
            "routes": [
                {
                    "subscribe": route.subscribe,
                    "group": route.group,
                    "model": route.model,
                    "examples": route.examples,
                    "publish": route.publish,
                    "payload": route.payload,
                    "retain": route.retain,
                    "on_change": route.on_change,
                    "min_score": route.min_score,
                }
                for route in config.routes
            ],
            "models": models,
            "homeassistant": config.homeassistant.enabled,
        }

    def publish_info(self) -> None:
        body = json.dumps(self.info(), separators=(",", ":")).encode()
        self._link.publish(self.info_topic, body, qos=1, retain=True)
