"""Per-route output, JSON Pointer fields and the control topic, through a real mosquitto and
the real agent: on_change/retain/label payloads behave as configured, pointers select
nested fields and give an error result when they miss, and control requests are answered
with their transaction echoed, within their size and rate bounds."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.engine.classifier import load_classifier
from tests.support.agent_process import StartAgent
from tests.support.broker import Broker
from tests.support.mqtt_client import TestClient

CANDIDATES = (
    "the door is open",
    "I love this sunny morning",
    "the heating broke again",
    "meeting moved to three",
    "what a wonderful surprise",
    "terrible noise from the garage",
    "the cat is asleep",
    "nothing works today",
)


def _two_texts_apart(models_dir: Path) -> tuple[str, str, float]:
    """A low- and a high-scoring text for the tiny model, and a min_score between them, so
    one is published as its label and the other as `uncertain` (the real model decides)."""
    classifier = load_classifier(models_dir / "tiny" / "1.0.0", threads=1)
    scored = sorted((classifier.classify([text], top_k=1)[0].score, text) for text in CANDIDATES)
    (low, low_text), (high, high_text) = scored[0], scored[-1]
    assert high - low > 0.01, scored
    return low_text, high_text, (low + high) / 2


def test_on_change_retained_label_payloads(
    start_agent: StartAgent, client: TestClient, broker: Broker, models_dir: Path
) -> None:
    low, high, floor = _two_texts_apart(models_dir)
    routes = [
        {
            "subscribe": "out1/door",
            "model": "tiny",
            "publish": "out1/door/state",
            "payload": "label",
            "retain": True,
            "on_change": True,
            "min_score": floor,
            "uncertain_label": "unsure",
        },
        {"subscribe": "out1/marker", "model": "tiny", "fields": ["id", "score"]},
    ]
    start_agent("out1", routes=routes)
    client.subscribe("out1/door/state", "out1/marker/label")
    for text in (high, high, low, low, high):
        client.publish("out1/door", text)
    client.publish("out1/marker", json.dumps({"id": "m1", "text": "done"}))
    marker = client.wait_for(1, topic_prefix="out1/marker/label")[0]
    assert marker.json().keys() == {"id", "label", "score"} and not marker.retain

    states = [m for m in client.messages("out1/door/state")]
    high_label = states[0].payload.decode()
    assert high_label in ("negative", "positive")
    assert [m.payload.decode() for m in states] == [high_label, "unsure", high_label]
    late = TestClient(broker.host, broker.port)  # a dashboard restarted later
    try:
        late.subscribe("out1/door/state")
        kept = late.wait_for(1, topic_prefix="out1/door/state")[0]
    finally:
        late.close()
    assert kept.retain and kept.payload.decode() == high_label


def test_pointers_select_nested_fields_and_missing_ones_are_error_results(
    start_agent: StartAgent, client: TestClient
) -> None:
    route = {
        "subscribe": "ptr/in/+",
        "model": "tiny",
        "text_field": "/payload/message",
        "id_field": "/meta/id",
        "passthrough": ["/meta/room", "/meta/absent", "source"],
    }
    start_agent("ptr", routes=[route])
    client.subscribe("ptr/in/+/label")
    nested = {"payload": {"message": "door opened"}, "meta": {"id": "n1", "room": "hall"}}
    client.publish("ptr/in/a", json.dumps({**nested, "source": "z2m"}))
    client.publish("ptr/in/b", json.dumps({"payload": {"text": "x"}, "meta": {"id": "n2"}}))
    result = client.wait_for(1, topic_prefix="ptr/in/a/label")[0].json()
    assert result["id"] == "n1"
    assert result["passthrough"] == {"/meta/room": "hall", "source": "z2m"}
    error = client.wait_for(1, topic_prefix="edge-agent/ptr/errors")[0].json()
    assert error["id"] == "n2" and error["topic"] == "ptr/in/b"
    assert error["error"] == {
        "code": "missing_text_field",
        "message": "text pointer '/payload/message' does not resolve: "
        "/payload has no member 'message'",
    }


def test_control_requests_are_answered_with_their_transaction(
    start_agent: StartAgent, client: TestClient, broker: Broker
) -> None:
    base = "edge-agent/ctl"
    start_agent(
        "ctl",
        routes=[{"subscribe": "ctl/in/+", "model": "tiny", "on_change": True}],
        control={"enabled": True, "max_request_bytes": 256, "requests_per_minute": 6},
    )
    client.subscribe(f"{base}/response/#", "ctl/in/+/label")
    client.publish(f"{base}/request/health_check", json.dumps({"transaction": "t-1"}))
    health = client.wait_for(1, topic_prefix=f"{base}/response/health_check")[0].json()
    assert health["transaction"] == "t-1" and health["status"] == "ok"
    assert health["data"]["healthy"] is True and health["data"]["models"] == {"tiny": "1.0.0"}

    client.publish(f"{base}/request/info", json.dumps({"transaction": 7}))
    info = client.wait_for(1, topic_prefix=f"{base}/response/info")[0].json()
    assert info["transaction"] == 7 and info["status"] == "ok"
    data = info["data"]
    assert data["config_schema_version"] == 2 and data["client_id"] == "ctl"
    assert data["models"]["tiny"] == {
        "version": "1.0.0",
        "task": "single-label",
        "labels": ["negative", "positive"],
    }
    assert data["routes"][0]["subscribe"] == "ctl/in/+" and data["routes"][0]["on_change"]
    late = TestClient(broker.host, broker.port)
    try:
        late.subscribe(f"{base}/info")
        retained = late.wait_for(1, topic_prefix=f"{base}/info")[0]
    finally:
        late.close()
    assert retained.retain and retained.json() == data

    client.publish(f"{base}/request/reboot", json.dumps({"transaction": "t-3"}))
    client.publish(f"{base}/request/info", "x" * 300)
    client.publish(f"{base}/request/info", "[1, 2]")
    answers = client.wait_for(5, topic_prefix=f"{base}/response/")
    unknown, large, not_object = (m.json() for m in answers[2:5])
    assert unknown == {
        "data": {},
        "status": "error",
        "error": "unknown request 'reboot' (known: health_check, info)",
        "transaction": "t-3",
    }
    assert large["error"] == "request is 300 bytes, the limit is 256"
    assert not_object["error"] == "request must be a JSON object (or empty)"

    # Six requests a minute: the sixth is answered, the rest are dropped unanswered.
    for index in range(4):
        client.publish(f"{base}/request/health_check", json.dumps({"transaction": index}))
    client.publish("ctl/in/a", "still labelling")
    client.wait_for(1, topic_prefix="ctl/in/a/label")
    answered = client.messages(f"{base}/response/")
    assert len(answered) == 6 and answered[-1].json()["transaction"] == 0
