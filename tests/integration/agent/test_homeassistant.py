"""Home Assistant discovery through a real mosquitto and the real agent: the device config is
retained on the documented topic and conforms to the documented schema, grows with a
wildcard route's topics (bounded), is re-announced when Home Assistant comes online, follows
a label-changing model swap, and is removed when a route or the feature goes away."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.support.agent_process import StartAgent
from tests.support.broker import Broker
from tests.support.bundles import SwapBundles, install
from tests.support.ha_discovery import check_device_payload, check_discovery_topic
from tests.support.mqtt_client import Received, TestClient


def _configs(client: TestClient, topic: str) -> list[Received]:
    return [m for m in client.messages(topic) if m.topic == topic]


def _wait_config(
    client: TestClient, topic: str, count: int, timeout_s: float = 15
) -> dict[str, Any]:
    """The `count`-th config seen on `topic`, checked against the documented schema."""
    received = client.wait_for(count, topic_prefix=topic, timeout_s=timeout_s)
    payload: dict[str, Any] = [m for m in received if m.topic == topic][count - 1].json()
    check_device_payload(payload)
    return payload


def _entities(payload: dict[str, Any], platform: str) -> dict[str, dict[str, Any]]:
    return {
        config["name"]: config
        for config in payload["cmps"].values()
        if config["p"] == platform and config.get("entity_category") != "diagnostic"
    }


def test_discovery_is_retained_conforms_and_grows_with_wildcard_topics(
    start_agent: StartAgent, client: TestClient, broker: Broker
) -> None:
    routes = [
        {"subscribe": "ha1/in/+", "model": "tiny", "retain": True},
        {
            "subscribe": "ha1/door",
            "model": "tiny",
            "publish": "ha1/door/state",
            "payload": "label",
            "min_score": 0.99,
        },
        {"subscribe": "ha1/many/+", "model": "tiny", "publish": "ha1/many-label"},
    ]
    agent, _ = start_agent(
        "ha1", routes=routes, homeassistant={"enabled": True, "max_topics_per_route": 2}
    )
    topic = "homeassistant/device/edge_agent_ha1/config"
    check_discovery_topic(topic)
    late = TestClient(broker.host, broker.port)  # subscribes after the announcement
    try:
        late.subscribe(topic)
        retained = late.wait_for(1, topic_prefix=topic)[0]
    finally:
        late.close()
    assert retained.retain
    payload = retained.json()
    check_device_payload(payload)
    assert (
        payload["dev"]["ids"] == ["edge_agent_ha1"] and payload["dev"]["name"] == "edge-agent ha1"
    )
    assert payload["o"]["name"] == "edge-agent"
    assert payload["availability"] == [
        {
            "topic": "edge-agent/ha1/status",
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]
    # The static route: an enum sensor (options include the uncertain label) and an event.
    sensors, events = _entities(payload, "sensor"), _entities(payload, "event")
    assert set(sensors) == {"ha1/door"} and set(events) == {"ha1/door event"}
    door = sensors["ha1/door"]
    assert door["device_class"] == "enum" and door["state_topic"] == "ha1/door/state"
    assert door["options"] == ["negative", "positive", "uncertain"]
    assert events["ha1/door event"]["event_types"] == ["negative", "positive", "uncertain"]
    diagnostics = {c["name"] for c in payload["cmps"].values() if c.get("entity_category")}
    assert diagnostics == {"Messages per second", "Queue depth", "Model tiny version"}

    # A wildcard route: announced per concrete topic, before that topic's first result.
    client.subscribe(topic, "ha1/in/+/label", "ha1/many-label")
    announced = len(_configs(client, topic))
    for room in ("kitchen", "hall", "attic"):  # the bound is 2 topics for this route
        client.publish(f"ha1/in/{room}", f"the {room} light is on")
    client.wait_for(3, topic_prefix="ha1/in/")
    # A wildcard route whose results all go to one topic has one entity, named by the route.
    for leaf in ("x", "y"):
        client.publish(f"ha1/many/{leaf}", "one output topic")
    client.wait_for(2, topic_prefix="ha1/many-label")
    grown = _wait_config(client, topic, announced + 3)
    assert set(_entities(grown, "sensor")) == {
        "ha1/door",
        "ha1/in/kitchen",
        "ha1/in/hall",
        "ha1/many/+",
    }
    assert _entities(grown, "sensor")["ha1/many/+"]["state_topic"] == "ha1/many-label"
    time.sleep(0.3)
    assert len(_configs(client, topic)) == announced + 3  # "y" added nothing
    kitchen = _entities(grown, "sensor")["ha1/in/kitchen"]
    assert kitchen["state_topic"] == kitchen["json_attributes_topic"] == "ha1/in/kitchen/label"
    assert kitchen["value_template"] == "{{ value_json.label }}"
    order = [m.topic for m in client.messages() if m.topic in (topic, "ha1/in/kitchen/label")]
    assert order.index(topic, announced) < order.index("ha1/in/kitchen/label")
    assert [line for line in agent.log_lines() if line["event"] == "homeassistant_topic_limit"]


def test_reannounced_when_home_assistant_comes_online_and_removed_when_disabled(
    start_agent: StartAgent, client: TestClient
) -> None:
    topic = "homeassistant/device/edge_agent_ha2/config"
    client.subscribe(topic)
    two_routes = [
        {"subscribe": "ha2/a", "model": "tiny"},
        {"subscribe": "ha2/b", "model": "tiny", "publish": "ha2/b/state"},
    ]
    agent, _ = start_agent("ha2", routes=two_routes, homeassistant={"enabled": True})
    first = _wait_config(client, topic, 1)
    client.publish("homeassistant/status", "online")
    assert _wait_config(client, topic, 2) == first
    client.publish("homeassistant/status", "offline")  # Home Assistant's last will: ignored
    time.sleep(0.5)
    assert len(_configs(client, topic)) == 2

    # Restart without route b: its components are removed (platform only), then left out.
    agent.stop()
    second, _ = start_agent("ha2", routes=two_routes[:1], homeassistant={"enabled": True})
    removal = _wait_config(client, topic, 3)
    final = _wait_config(client, topic, 4)
    removed = {key for key, config in removal["cmps"].items() if set(config) == {"p"}}
    assert len(removed) == 2 and not removed & set(final["cmps"])
    assert set(_entities(final, "sensor")) == {"ha2/a"}

    # Restart with discovery off: one empty retained config removes the device.
    second.stop()
    start_agent("ha2", routes=two_routes[:1])
    cleared = client.wait_for(5, topic_prefix=topic)[4]
    assert cleared.payload == b""


def test_discovery_follows_a_label_changing_swap(
    start_agent: StartAgent, client: TestClient, bundles: SwapBundles, tmp_path: Path
) -> None:
    models = tmp_path / "swap-models"
    install(bundles.v1, models)
    topic = "homeassistant/device/edge_agent_ha3/config"
    client.subscribe(topic)
    start_agent(
        "ha3",
        routes=[{"subscribe": "ha3/in", "model": "tiny"}],
        models={"dir": str(models), "poll_interval_s": 0.2},
        homeassistant={"enabled": True},
    )
    before = _wait_config(client, topic, 1)
    assert _entities(before, "sensor")["ha3/in"]["options"] == ["negative", "positive"]
    install(bundles.v2, models)  # same labels: nothing to re-announce
    install(bundles.relabelled, models)
    after = _wait_config(client, topic, 2, timeout_s=30)
    assert _entities(after, "sensor")["ha3/in"]["options"] == ["alarm", "door", "light"]
    assert _entities(after, "event")["ha3/in event"]["event_types"] == ["alarm", "door", "light"]
    assert json.dumps(after["dev"]) == json.dumps(before["dev"])
