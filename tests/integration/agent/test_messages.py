"""The real agent against a real broker: results, request/response, every bad-input class."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_agent.pipeline.attempts import JOURNAL_NAME, message_key
from tests.support.agent_process import StartAgent as AgentFactory
from tests.support.broker import Broker
from tests.support.mqtt_client import TestClient

SECRET_TEXT = "a private sentence"


def test_labels_come_back_for_plain_and_json_input(
    start_agent: AgentFactory, client: TestClient
) -> None:
    agent, name = start_agent()
    client.subscribe(f"{name}/in/+/label")
    client.publish(f"{name}/in/room1", SECRET_TEXT)
    client.publish(f"{name}/in/room2", json.dumps({"text": "hello", "id": "m-1", "room": "r2"}))
    results = {r.json()["topic"]: r.json() for r in client.wait_for(2, topic_prefix=f"{name}/in/")}

    plain = results[f"{name}/in/room1"]
    assert plain["label"] in ("negative", "positive")
    assert plain["labels"] == [plain["label"]]
    assert plain["top_k"][0] == {"label": plain["label"], "score": plain["score"]}
    assert sum(item["score"] for item in plain["top_k"]) == pytest.approx(1.0, abs=1e-3)
    assert plain["model"] == {"name": "tiny", "version": "1.0.0"}
    assert plain["truncated"] is False and plain["latency_ms"] > 0
    assert "text" not in plain  # no echo unless configured
    assert results[f"{name}/in/room2"]["id"] == "m-1"
    assert "passthrough" not in results[f"{name}/in/room2"]

    client.subscribe(f"edge-agent/{name}/stats")
    stats = client.wait_for(1, topic_prefix=f"edge-agent/{name}/stats", timeout_s=5)[0].json()
    assert stats["messages_in"] == 2 and stats["messages_out"] == 2
    assert stats["models"] == {"tiny": "1.0.0"} and stats["latency_p99_ms"] is not None
    stages = stats["stages_ms"]
    assert list(stages) == ["queue", "prepare", "tokenize", "infer", "encode", "handoff", "puback"]
    # every labelled message passed every stage once (its PUBACK may still be on its way)
    assert all(stages[name]["count"] == 2 for name in ("queue", "prepare", "tokenize", "infer"))
    assert stages["handoff"]["count"] == 2 and stages["puback"]["count"] <= 2
    assert all(stages[name]["p50"] is not None for name in ("tokenize", "infer", "handoff"))

    assert agent.stop() == 0
    log = agent.log_path.read_text()
    assert SECRET_TEXT not in log  # message text is never logged by default
    events = [line["event"] for line in agent.log_lines()]
    assert "batch_done" in events and "agent_stopped" in events


def test_request_response_with_mosquitto_rr(
    start_agent: AgentFactory, client: TestClient, broker: Broker
) -> None:
    _, name = start_agent()
    if shutil.which("mosquitto_rr") is None:
        pytest.fail("mosquitto_rr missing: apt-get install -y mosquitto-clients")
    reply = subprocess.run(
        [
            "mosquitto_rr",
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            f"{name}/in/rr",
            "-e",
            f"edge-agent/{name}/reply/rr",
            "-m",
            "is this working",
            "-W",
            "15",
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    body = json.loads(reply.stdout)
    assert body["topic"] == f"{name}/in/rr" and body["label"] in ("negative", "positive")

    client.subscribe(f"edge-agent/{name}/reply/#")
    client.publish(
        f"{name}/in/x",
        "hello",
        response_topic=f"edge-agent/{name}/reply/1",
        correlation_data=b"c-1",
    )
    client.publish(
        f"{name}/in/x", b"", response_topic=f"edge-agent/{name}/reply/2", correlation_data=b"c-2"
    )
    replies = {r.topic: r for r in client.wait_for(2, topic_prefix=f"edge-agent/{name}/reply/")}
    assert replies[f"edge-agent/{name}/reply/1"].correlation_data == b"c-1"
    assert "label" in replies[f"edge-agent/{name}/reply/1"].json()
    assert replies[f"edge-agent/{name}/reply/2"].correlation_data == b"c-2"
    assert replies[f"edge-agent/{name}/reply/2"].json()["error"]["code"] == "empty_text"


def test_every_bad_input_gets_an_error_result_and_the_agent_keeps_going(
    start_agent: AgentFactory, client: TestClient
) -> None:
    agent, _ = start_agent(
        limits={"max_payload_bytes": 20000, "max_text_bytes": 64},
        routes=[{"subscribe": "bad/in/+", "model": "tiny", "passthrough": ["room"]}],
        client_id="bad",
    )
    client.subscribe("bad/#", "evil/#")
    cases = {
        "invalid_utf8": b"caf\xc3",
        "empty_text": b"  \n ",
        "invalid_json": b'{"text": "unterminated',
        "missing_text_field": json.dumps({"body": "x"}).encode(),
        "wrong_type": json.dumps({"text": ["a"]}).encode(),
        "too_deep": b'{"a":' * 3000 + b"1" + b"}" * 3000,
        "payload_too_large": b"x" * 20001,
        "invalid_id": json.dumps({"text": "hi", "id": "evil/#"}).encode(),
    }
    for index, payload in enumerate(cases.values()):
        client.publish(f"bad/in/{index}", payload)
    client.publish("bad/in/junk", bytes(range(256)) * 4)  # binary junk
    # Payload fields that look like topics or ids must not steer where results go.
    client.publish(
        "bad/in/steer", json.dumps({"text": "ok", "topic": "evil/#", "room": "r/+\u0000"})
    )
    client.publish("bad/in/long", "a very long sentence " * 700)  # cut to 64 bytes
    client.publish("bad/in/fine", "still serving")

    errors = client.wait_for(len(cases) + 1, topic_prefix="edge-agent/bad/errors")
    codes = [message.json()["error"]["code"] for message in errors]
    assert sorted(codes) == sorted([*cases, "invalid_utf8"])
    for message in errors:
        body = message.json()
        assert body["topic"].startswith("bad/in/") and body["error"]["message"]
    labelled = {
        m.json()["topic"]: m.json()
        for m in client.wait_for(1, topic_prefix="bad/in/steer/label")
        + client.wait_for(1, topic_prefix="bad/in/long/label")
        + client.wait_for(1, topic_prefix="bad/in/fine/label")
    }
    assert labelled["bad/in/long"]["truncated"] is True
    assert labelled["bad/in/steer"]["passthrough"] == {"room": "r/+\u0000"}
    assert client.messages("evil/") == []
    assert all(message.topic.startswith("bad/in/") for message in client.messages("bad/"))
    assert agent.process is not None and agent.process.poll() is None


def test_several_routes_use_different_models(start_agent: AgentFactory, client: TestClient) -> None:
    start_agent(
        client_id="multi",
        routes=[
            {"subscribe": "multi/chat/+", "model": "tiny"},
            {"subscribe": "multi/sensor/+", "model": "topics", "publish": "multi/out/{model}"},
        ],
    )
    client.subscribe("multi/chat/+/label", "multi/out/#")
    client.publish("multi/chat/a", "hello")
    client.publish("multi/sensor/a", "door opened")
    chat = client.wait_for(1, topic_prefix="multi/chat/a/label")[0].json()
    sensor = client.wait_for(1, topic_prefix="multi/out/topics")[0].json()
    assert chat["model"]["name"] == "tiny"
    assert sensor["model"]["name"] == "topics"
    assert set(sensor["labels"]) <= {"alarm", "door", "light"}


def test_mqtt_311_is_supported(start_agent: AgentFactory, client: TestClient) -> None:
    _, name = start_agent(broker={"protocol": "3.1.1"})
    client.subscribe(f"{name}/in/+/label")
    client.publish(f"{name}/in/a", "over MQTT 3.1.1")
    assert client.wait_for(1, topic_prefix=f"{name}/in/a/label")[0].json()["label"]


def test_poison_message_is_dead_lettered(
    start_agent: AgentFactory, client: TestClient, tmp_path: Path
) -> None:
    # As three earlier runs would have left it: each started the message and then died.
    state = tmp_path / "state-poison"
    state.mkdir()
    poison = b"this payload crashed the agent three times"
    (state / JOURNAL_NAME).write_text(f"{message_key('poison/in/p', poison)} 3\n")
    start_agent(client_id="poison", limits={"max_attempts": 3})
    # Subscribed first: a label published before the subscription reached the broker is lost.
    client.subscribe("poison/in/+/label")
    client.publish("poison/in/p", poison)
    client.publish("poison/in/q", "a normal message")
    dead = client.wait_for(1, topic_prefix="edge-agent/poison/dead-letter")[0].json()
    assert dead["attempts"] == 3 and dead["error"]["code"] == "poison"
    error = client.wait_for(1, topic_prefix="edge-agent/poison/errors")[0].json()
    assert error["error"]["code"] == "poison"
    assert client.wait_for(1, topic_prefix="poison/in/q/label")
