"""Home Assistant device-based discovery payloads, pure (no MQTT, no files).

One device per agent on `<prefix>/device/<node_id>/config` (`dev`, `o`, `cmps`, shared
`availability` from the agent's retained status topic). Per output topic of a route:

- an `enum` sensor whose options are every label the route can publish (the model's labels,
  the manifest's out-of-scope label, the route's `uncertain_label`); with `payload: full`
  the score, top_k and model version are its attributes;
- an `event` entity firing one event per published result, `event_type` = the label.

From the stats topic, diagnostic sensors: messages/s, queue depth, and each model's version.
Component ids and unique ids are derived from the output topic (a short hash keeps them in
Home Assistant's `[a-zA-Z0-9_-]` and stable across restarts and route reordering).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final

from edge_agent import __version__

ORIGIN: Final = {"name": "edge-agent", "sw": __version__}
_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_-]+")

# Attributes from a full result; `.get` because a route's `fields` may leave some out.
ATTRIBUTES_TEMPLATE: Final = (
    "{{ {'score': value_json.get('score'), 'top_k': value_json.get('top_k'), "
    "'model_version': (value_json.get('model') or {}).get('version')} | tojson }}"
)
_EVENT_TYPE: Final = '"event_type": {{ value_json.label | tojson }}'
_EVENT_SCORE: Final = "\"score\": {{ value_json.get('score') | tojson }}"
EVENT_TEMPLATE_FULL: Final = "{" + _EVENT_TYPE + ", " + _EVENT_SCORE + "}"
EVENT_TEMPLATE_LABEL: Final = '{"event_type": {{ value | tojson }}}'


@dataclass(frozen=True)
class Entity:
    """One output topic shown in Home Assistant: a sensor and an event entity."""

    input_topic: str  # a concrete topic (or a route's filter without wildcards)
    state_topic: str  # where the route publishes its results for that input
    model: str
    options: tuple[str, ...]  # every label the route can publish
    payload: str  # "full" or "label"

    @property
    def key(self) -> str:
        digest = hashlib.sha256(self.state_topic.encode()).hexdigest()[:10]
        readable = _UNSAFE.sub("_", self.input_topic).strip("_")[:40]
        return f"{readable}_{digest}" if readable else digest


@dataclass(frozen=True)
class Device:
    client_id: str
    name: str
    discovery_prefix: str
    status_topic: str  # the agent's retained online/offline status
    stats_topic: str | None  # None when stats are off (stats_interval_s: 0)
    stats_interval_s: float
    models: tuple[str, ...]

    @property
    def node_id(self) -> str:
        return "edge_agent_" + (_UNSAFE.sub("_", self.client_id) or "agent")

    @property
    def discovery_topic(self) -> str:
        return f"{self.discovery_prefix.rstrip('/')}/device/{self.node_id}/config"


def device_payload(
    device: Device, entities: list[Entity], removed: dict[str, str] | None = None
) -> dict[str, Any]:
    """The whole device document; `removed` ({component id: platform}) publishes those
    components as platform-only, which is how Home Assistant removes one component."""
    components: dict[str, dict[str, Any]] = {}
    for entity in entities:
        components.update(entity_components(device, entity))
    components.update(diagnostic_components(device))
    for component_id, platform in (removed or {}).items():
        components[component_id] = {"p": platform}
    return {
        "dev": {
            "ids": [device.node_id],
            "name": device.name,
            "mf": "edge-agent",
            "mdl": "MQTT text classifier",
            "sw": __version__,
        },
        "o": dict(ORIGIN),
        "availability": [
            {
                "topic": device.status_topic,
                "value_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "cmps": components,
    }


def entity_components(device: Device, entity: Entity) -> dict[str, dict[str, Any]]:
    uid = f"{device.node_id}_{entity.key}"
    sensor: dict[str, Any] = {
        "p": "sensor",
        "unique_id": f"{uid}_label",
        "name": entity.input_topic,
        "device_class": "enum",
        "options": list(entity.options),
        "state_topic": entity.state_topic,
        "icon": "mdi:label-outline",
    }
    event: dict[str, Any] = {
        "p": "event",
        "unique_id": f"{uid}_event",
        "name": f"{entity.input_topic} event",
        "event_types": list(entity.options),
        "state_topic": entity.state_topic,
    }
    if entity.payload == "full":
        sensor["value_template"] = "{{ value_json.label }}"
        sensor["json_attributes_topic"] = entity.state_topic
        sensor["json_attributes_template"] = ATTRIBUTES_TEMPLATE
        event["value_template"] = EVENT_TEMPLATE_FULL
    else:
        event["value_template"] = EVENT_TEMPLATE_LABEL
    return {f"{entity.key}_label": sensor, f"{entity.key}_event": event}


def diagnostic_components(device: Device) -> dict[str, dict[str, Any]]:
    if device.stats_topic is None:
        return {}
    # Stats stop while the agent is down; a value older than three intervals is stale.
    expire = max(60, int(device.stats_interval_s * 3))
    common = {
        "p": "sensor",
        "state_topic": device.stats_topic,
        "entity_category": "diagnostic",
        "expire_after": expire,
    }
    components: dict[str, dict[str, Any]] = {
        "messages_per_s": {
            **common,
            "unique_id": f"{device.node_id}_messages_per_s",
            "name": "Messages per second",
            "value_template": "{{ value_json.messages_per_s }}",
            "unit_of_measurement": "msg/s",
            "state_class": "measurement",
            "icon": "mdi:speedometer",
        },
        "queue_depth": {
            **common,
            "unique_id": f"{device.node_id}_queue_depth",
            "name": "Queue depth",
            "value_template": "{{ value_json.queue_depth }}",
            "state_class": "measurement",
            "icon": "mdi:tray-full",
        },
    }
    for model in device.models:
        # Model names are [a-z0-9_-] (bundle/manifest.py), safe inside the template string.
        components[f"model_{model}_version"] = {
            **common,
            "unique_id": f"{device.node_id}_model_{model}_version",
            "name": f"Model {model} version",
            "value_template": f"{{{{ value_json.models.get('{model}') }}}}",
            "icon": "mdi:brain",
        }
    return components
