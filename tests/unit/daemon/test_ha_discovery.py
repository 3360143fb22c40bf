"""The discovery payloads, checked against Home Assistant's documented schema; the checker
itself accepts the documentation's own examples and rejects each documented mistake."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from edge_agent.daemon.ha_discovery import Device, Entity, device_payload
from tests.support.ha_discovery import (
    DOCS_EXAMPLES,
    DOCS_TOPIC_EXAMPLE,
    check_device_payload,
    check_discovery_topic,
)

DEVICE = Device(
    client_id="pi-kitchen.1",
    name="edge-agent pi-kitchen.1",
    discovery_prefix="homeassistant",
    status_topic="edge-agent/pi-kitchen.1/status",
    stats_topic="edge-agent/pi-kitchen.1/stats",
    stats_interval_s=30,
    models=("sentiment",),
)
FULL = Entity("chat/room1/text", "chat/room1/text/label", "sentiment", ("neg", "pos"), "full")
BARE = Entity("door/text", "door/label", "sentiment", ("neg", "pos", "uncertain"), "label")


def test_the_checker_accepts_the_documentation_examples() -> None:
    check_discovery_topic(DOCS_TOPIC_EXAMPLE)
    for example in DOCS_EXAMPLES:
        check_device_payload(example)


def _broken(change: Any) -> dict[str, Any]:
    payload = copy.deepcopy(DOCS_EXAMPLES[0])
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("o"), "exactly one of ('o', 'origin')"),
        (lambda p: p["o"].pop("name"), "o.name"),
        (lambda p: p["dev"].pop("ids"), "dev: identifiers or connections"),
        (lambda p: p["cmps"]["some_unique_id2"].pop("unique_id"), "unique_id: required"),
        (lambda p: p["cmps"]["some_unique_id2"].pop("p"), ".p: a supported platform"),
        (lambda p: p["cmps"].update({"bad id": {"p": "sensor", "x": 1}}), "not [a-zA-Z0-9_-]"),
        (lambda p: p["cmps"]["some_unique_id2"].update(colour="red"), "colour: not a sensor"),
        (lambda p: p.update(retain=True), "'retain' is not a shared device option"),
        (
            lambda p: p["cmps"]["some_unique_id2"].update(device_class="enum"),
            "options: a non-empty list",
        ),
        (
            lambda p: p["cmps"].update({"e": {"p": "event", "unique_id": "u", "stat_t": "t"}}),
            "event_types",
        ),
    ],
)
def test_the_checker_rejects_documented_mistakes(change: Any, message: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_device_payload(_broken(change))


def test_the_agent_device_payload_conforms() -> None:
    check_discovery_topic(DEVICE.discovery_topic)
    assert DEVICE.discovery_topic == "homeassistant/device/edge_agent_pi-kitchen_1/config"
    payload = device_payload(DEVICE, [FULL, BARE])
    check_device_payload(payload)
    components = payload["cmps"]
    sensor = components[f"{FULL.key}_label"]
    assert (sensor["p"], sensor["device_class"], sensor["options"]) == (
        "sensor",
        "enum",
        ["neg", "pos"],
    )
    assert sensor["state_topic"] == sensor["json_attributes_topic"] == "chat/room1/text/label"
    assert sensor["value_template"] == "{{ value_json.label }}"
    bare = components[f"{BARE.key}_label"]
    assert "value_template" not in bare and "json_attributes_topic" not in bare
    event = components[f"{BARE.key}_event"]
    assert event["event_types"] == ["neg", "pos", "uncertain"]
    assert event["value_template"] == '{"event_type": {{ value | tojson }}}'
    diagnostics = {k: v for k, v in components.items() if v.get("entity_category") == "diagnostic"}
    assert set(diagnostics) == {"messages_per_s", "queue_depth", "model_sentiment_version"}
    assert {v["state_topic"] for v in diagnostics.values()} == {DEVICE.stats_topic}
    assert payload["availability"][0]["topic"] == DEVICE.status_topic
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(unique_ids) == len(set(unique_ids))


def test_removed_components_are_published_as_their_platform_only() -> None:
    payload = device_payload(DEVICE, [FULL], removed={"old_label": "sensor", "old_event": "event"})
    check_device_payload(payload)
    assert payload["cmps"]["old_label"] == {"p": "sensor"}
    assert payload["cmps"]["old_event"] == {"p": "event"}
