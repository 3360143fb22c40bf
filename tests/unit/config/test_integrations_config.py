"""Config of the per-route output options, pointer fields, Home Assistant and control:
off by default, and every mistake named by its dotted path."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config.settings import ConfigError, config_from_mapping

ROUTE = {"subscribe": "chat/+/text", "model": "sentiment"}


def error_of(raw: dict[str, object], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base_dir=tmp_path, environ={})
    return str(caught.value)


def test_defaults_change_nothing(tmp_path: Path) -> None:
    config = config_from_mapping({"routes": [ROUTE]}, base_dir=tmp_path, environ={})
    route = config.routes[0]
    assert (route.retain, route.on_change, route.payload, route.fields) == (
        False,
        False,
        "full",
        None,
    )
    assert route.min_score is None
    assert not config.homeassistant.enabled and not config.control.enabled
    assert config.homeassistant.discovery_prefix == "homeassistant"
    assert config.homeassistant.status_topic == "homeassistant/status"


def test_route_output_mistakes_are_named(tmp_path: Path) -> None:
    cases = {
        "routes[0].fields[1]: expected one of": {"fields": ["label", "colour"]},
        "routes[0].fields: applies only to payload: full": {"payload": "label", "fields": []},
        "routes[0].min_score: expected null or 0 to 1, got 1.5": {"min_score": 1.5},
        "routes[0].uncertain_label: expected a non-empty label": {"uncertain_label": " "},
        "routes[0].payload: expected 'full' or 'label', got 'json'": {"payload": "json"},
        "routes[0].text_field: expected '~' only as '~0'": {"text_field": "/a/~2"},
        "routes[0].passthrough[1]: expected a field name": {"passthrough": ["a", ""]},
    }
    for expected, options in cases.items():
        assert error_of({"routes": [{**ROUTE, **options}]}, tmp_path).startswith(expected)


def test_integration_mistakes_are_named(tmp_path: Path) -> None:
    base = {"routes": [ROUTE]}
    assert error_of({**base, "homeassistant": {"discovery_prefix": "ha/#"}}, tmp_path).startswith(
        "homeassistant.discovery_prefix: expected no wildcard"
    )
    assert error_of({**base, "homeassistant": {"max_topics_per_route": 0}}, tmp_path).startswith(
        "homeassistant.max_topics_per_route"
    )
    assert error_of({**base, "control": {"base_topic": "a/+"}}, tmp_path).startswith(
        "control.base_topic: expected no wildcard"
    )
    assert error_of({**base, "control": {"requests_per_minute": 0}}, tmp_path).startswith(
        "control.requests_per_minute"
    )
    assert error_of({**base, "homeassistant": {"enable": True}}, tmp_path).startswith(
        "homeassistant.enable: unknown key"
    )
