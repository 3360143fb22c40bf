"""Config sections for fitting into a home: Home Assistant discovery, the control topic, and
the checks on per-route output and field options. Both sections are off by default, so a
config written before they existed behaves exactly as it did.

`CONFIG_SCHEMA_VERSION` is what the control topic's `info` reports; it goes up when a
config that was valid before would now read differently (not when optional keys are added).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from edge_agent.config.schema import ConfigError
from edge_agent.pipeline import pointer, routing
from edge_agent.pipeline.output import RESULT_FIELDS

if TYPE_CHECKING:  # settings imports this module
    from edge_agent.config.settings import Config, RouteConfig

CONFIG_SCHEMA_VERSION: Final = 2  # 2: per-route output options, JSON Pointer fields


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    status_topic: str = "homeassistant/status"  # Home Assistant's birth/last-will topic
    # A wildcard route gets entities per concrete topic on its first message; at most this
    # many per route, so a chatty wildcard cannot flood Home Assistant's entity registry.
    max_topics_per_route: int = 16
    device_name: str | None = None  # default "edge-agent <client_id>"


@dataclass(frozen=True)
class ControlConfig:
    enabled: bool = False
    base_topic: str = "edge-agent/{client_id}"  # <base>/request/<name> -> <base>/response/<name>
    max_request_bytes: int = 1024
    requests_per_minute: int = 60


def check_route_output(route: RouteConfig, where: str) -> None:
    for name, value in (("text_field", route.text_field), ("id_field", route.id_field)):
        _check_field(value, f"{where}.{name}")
    for index, name in enumerate(route.passthrough):
        _check_field(name, f"{where}.passthrough[{index}]")
    if route.fields is not None:
        if route.payload == "label":
            raise ConfigError(f"{where}.fields: applies only to payload: full")
        for index, name in enumerate(route.fields):
            if name not in RESULT_FIELDS:
                raise ConfigError(
                    f"{where}.fields[{index}]: expected one of {', '.join(RESULT_FIELDS)}, "
                    f"got {name!r}"
                )
    if route.min_score is not None and not 0.0 <= route.min_score <= 1.0:
        raise ConfigError(f"{where}.min_score: expected null or 0 to 1, got {route.min_score}")
    if not route.uncertain_label.strip():
        raise ConfigError(f"{where}.uncertain_label: expected a non-empty label")


def _check_field(name: str, where: str) -> None:
    if not name:
        raise ConfigError(f"{where}: expected a field name or a JSON Pointer, got ''")
    if pointer.is_pointer(name):
        problem = pointer.pointer_problem(name)
        if problem:
            raise ConfigError(f"{where}: {problem}, got {name!r}")


def check_integrations(config: Config) -> None:
    ha = config.homeassistant
    for name, topic in (
        ("discovery_prefix", ha.discovery_prefix),
        ("status_topic", ha.status_topic),
    ):
        problem = routing.topic_problem(topic)
        if problem:
            raise ConfigError(f"homeassistant.{name}: {problem}, got {topic!r}")
    if not 1 <= ha.max_topics_per_route <= 1000:
        raise ConfigError(
            "homeassistant.max_topics_per_route: expected an integer from 1 to 1000, "
            f"got {ha.max_topics_per_route}"
        )
    control = config.control
    base = config.topic(control.base_topic)
    problem = routing.topic_problem(base)
    if problem:
        raise ConfigError(f"control.base_topic: {problem}, got {base!r}")
    for name, value in (
        ("max_request_bytes", control.max_request_bytes),
        ("requests_per_minute", control.requests_per_minute),
    ):
        if not 1 <= value <= 1_000_000:
            raise ConfigError(f"control.{name}: expected an integer from 1 to 1000000, got {value}")
