"""Hostile payloads from an ordinary broker login, against the real agent: each ends as an
error result and the agent keeps answering valid messages (docs/security.md).
"""

from __future__ import annotations

import json
import subprocess
import time

from tests.support.agent_process import AgentMaker
from tests.support.broker import Broker
from tests.support.mqtt_client import TestClient
from tests.support.traffic import rss_kib


def test_passthrough_nested_986_deep_is_an_error_result_not_a_dead_worker(
    broker: Broker, client: TestClient, make_agent: AgentMaker
) -> None:
    """Reproduced on the code before the fix: 986 levels pass json.loads on the worker
    thread, then encoding the result recursed too deeply, the worker died and the agent
    exited; redelivery repeated it."""
    agent = make_agent(
        broker.port,
        client_id="deep",
        routes=[{"subscribe": "deep/in/+", "model": "tiny", "passthrough": ["meta"]}],
    )
    client.subscribe("deep/in/+/label", "edge-agent/deep/errors", "edge-agent/deep/status")
    agent.wait_online(client, "edge-agent/deep/status")
    for depth in (985, 986, 987):
        payload = b'{"text":"hi","meta":' + b"[" * depth + b"]" * depth + b"}"
        client.publish(f"deep/in/{depth}", payload)
    client.publish("deep/in/after", json.dumps({"text": "still serving", "meta": {"room": 1}}))
    errors = client.wait_for(3, topic_prefix="edge-agent/deep/errors", timeout_s=30)
    assert sorted(error.json()["topic"] for error in errors) == [
        "deep/in/985",
        "deep/in/986",
        "deep/in/987",
    ]
    assert {error.json()["error"]["code"] for error in errors} == {"too_deep"}
    after = client.wait_for(1, topic_prefix="deep/in/after/label", timeout_s=30)[0].json()
    assert after["passthrough"] == {"meta": {"room": 1}}
    assert agent.process is not None and agent.process.poll() is None
    assert not [line for line in agent.log_lines() if line["event"] == "worker_died"]


def test_response_topic_cannot_steer_publishes_onto_the_agents_own_or_other_topics(
    broker: Broker, client: TestClient, make_agent: AgentMaker
) -> None:
    """Reproduced on the code before the fix: `-D publish response-topic
    edge-agent/<id>/status` made the agent publish a classification on its own status."""
    agent = make_agent(broker.port, client_id="pivot")
    client.subscribe("pivot/in/+/label", "edge-agent/#", "other-device/#")
    agent.wait_online(client, "edge-agent/pivot/status")
    hostile = [
        "edge-agent/pivot/status",
        "edge-agent/pivot/errors",
        "edge-agent/pivot/dead-letter",
        "edge-agent/pivot/status/events",
        "edge-agent/ota/device/pivot/report",
        "other-device/in/text",
        "$SYS/broker/x",
    ]
    for index, topic in enumerate(hostile):
        client.publish(f"pivot/in/{index}", "door open", response_topic=topic)
    client.publish("pivot/in/ok", "door open", response_topic="edge-agent/pivot/reply/7")
    # Refused Response Topics are ignored: each answer goes where the route sends it.
    labels = client.wait_for(len(hostile), topic_prefix="pivot/in/", timeout_s=30)
    assert sorted(m.topic for m in labels) == sorted(
        f"pivot/in/{index}/label" for index in range(len(hostile))
    )
    answer = client.wait_for(1, topic_prefix="edge-agent/pivot/reply/7", timeout_s=30)[0]
    assert answer.json()["topic"] == "pivot/in/ok"
    for topic in hostile:
        landed = [m for m in client.messages(topic) if m.topic == topic]
        assert all("label" not in m.json() for m in landed), topic
    assert client.messages("other-device/") == []
    refused = [line for line in agent.log_lines() if line["event"] == "response_topic_refused"]
    assert sorted(str(line["response_topic"]) for line in refused) == sorted(hostile)


def test_an_input_topic_whose_output_topic_the_broker_would_refuse_gets_an_error_result(
    broker: Broker, client: TestClient, make_agent: AgentMaker
) -> None:
    """A `#` route whose template adds levels, fed the deepest topic mosquitto accepts
    (201 levels), would render 202: mosquitto answers that PUBLISH with DISCONNECT, and the
    redelivered input would do it again after every reconnect."""
    agent = make_agent(
        broker.port,
        client_id="levels",
        routes=[{"subscribe": "lv/#", "model": "tiny", "publish": "out/{topic}"}],
    )
    client.subscribe("out/#", "edge-agent/levels/errors", "edge-agent/levels/status")
    agent.wait_online(client, "edge-agent/levels/status")
    deepest = "lv/" + "/".join(["x"] * 200)  # 201 levels: accepted by mosquitto
    client.publish(deepest, "door open")
    client.publish("lv/fine", "door open")
    error = client.wait_for(1, topic_prefix="edge-agent/levels/errors", timeout_s=30)[0].json()
    assert error["topic"] == deepest and error["error"]["code"] == "invalid_topic"
    assert client.wait_for(1, topic_prefix="out/lv/fine", timeout_s=30)[0].json()["label"]
    connects = [line for line in agent.log_lines() if line["event"] == "broker_connected"]
    assert len(connects) == 1, "the agent was disconnected"


def test_a_qos0_flood_is_shed_at_the_queue_bound_and_counted(
    broker: Broker, client: TestClient, make_agent: AgentMaker
) -> None:
    """Receive Maximum bounds only QoS 1/2 deliveries: before, a QoS 0 flood grew the queue
    without limit. Now each QoS 0 message beyond the bound is dropped and counted, and QoS 1
    traffic keeps being served."""
    agent = make_agent(
        broker.port,
        client_id="flood",
        broker={"receive_maximum": 4},
        batching={"max_batch": 1},
        stats_interval_s=0.5,
    )
    client.subscribe("flood/in/+/label", "edge-agent/flood/stats", "edge-agent/flood/status")
    agent.wait_online(client, "edge-agent/flood/status")
    flood = b"".join(json.dumps({"text": f"spam {n}"}).encode() + b"\n" for n in range(3000))
    subprocess.run(
        [
            *("mosquitto_pub", "-h", broker.host, "-p", str(broker.port)),
            *("-q", "0", "-t", "flood/in/spam", "-l"),
        ],
        input=flood,
        check=True,
        timeout=60,
    )
    client.publish("flood/in/real", "door open", qos=1)
    client.wait_for(1, topic_prefix="flood/in/real/label", timeout_s=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stats = [m.json() for m in client.messages("edge-agent/flood/stats")]
        done = stats[-1] if stats else {}
        labelled = len(client.messages("flood/in/spam/label"))
        if done and done.get("messages_in", 0) >= 3001 and labelled + done["shed_qos0"] >= 3000:
            break
        time.sleep(0.5)
    assert done["shed_qos0"] > 0, done
    # every flood message the agent received was either labelled or shed, none lost in between
    assert len(client.messages("flood/in/spam/label")) + done["shed_qos0"] == 3000
    assert agent.process is not None and agent.process.poll() is None
    assert any(line["event"] == "qos0_shed" for line in agent.log_lines())


def test_a_retained_input_is_labelled_once_not_again_on_every_reconnect(
    broker: Broker, client: TestClient, make_agent: AgentMaker
) -> None:
    """The agent re-subscribes on every reconnect; with MQTT 5's default retain handling the
    broker then replayed every retained input (a retained poison or oversized message came
    back each time). Now retained messages come only with a new subscription."""
    client.subscribe("keep/in/+/label", "edge-agent/keep/status")
    retain = subprocess.run(
        [
            *("mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-r"),
            *("-t", "keep/in/retained", "-m", "the window is open"),
        ],
        check=True,
        timeout=10,
    )
    assert retain.returncode == 0
    agent = make_agent(broker.port, client_id="keep")
    agent.wait_online(client, "edge-agent/keep/status")
    client.wait_for(1, topic_prefix="keep/in/retained/label", timeout_s=30)  # first: labelled
    # The input is acknowledged only after the broker's PUBACK for its label: a restart before
    # that redelivers it (at least once, rightly) and would look like a replay. Let it settle.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(line["event"] == "batch_done" for line in agent.log_lines()):
            break
        time.sleep(0.1)
    time.sleep(1.0)

    def onlines() -> int:
        return sum(b"online" in m.payload for m in client.messages("edge-agent/keep/status"))

    seen_online = onlines()
    broker.restart()  # the agent reconnects, its session kept, and subscribes again
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        connects = [line for line in agent.log_lines() if line["event"] == "broker_connected"]
        if len(connects) >= 2:
            break
        time.sleep(0.2)
    assert len(connects) >= 2, "the agent did not reconnect"
    # this test's client is back too once it has the retained online status again
    while onlines() <= seen_online and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(  # a fresh client: this test's own may still be reconnecting
        [
            *("mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1"),
            *("-t", "keep/in/b", "-m", "still serving"),
        ],
        check=True,
        timeout=10,
    )
    client.wait_for(1, topic_prefix="keep/in/b/label", timeout_s=30)

    # What the agent labelled after it reconnected, from its own log (this test's client
    # reconnects later and would miss a replay's label): keep/in/b alone.
    # The batch's log line follows its publish: wait for it, then for a replay to show.
    def labelled_since_reconnect() -> list[dict[str, object]]:
        lines = agent.log_lines()
        second = [i for i, line in enumerate(lines) if line["event"] == "broker_connected"][1]
        return [line for line in lines[second:] if line["event"] == "batch_done"]

    deadline = time.monotonic() + 10
    while not labelled_since_reconnect() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    after = labelled_since_reconnect()
    assert sum(int(str(line["labelled"])) for line in after) == 1, after


def test_payloads_past_the_maximum_packet_size_never_reach_the_agents_memory(
    broker: Broker, client: TestClient, make_agent: AgentMaker
) -> None:
    """Before, the client set no MQTT 5 Maximum Packet Size: a 200 MB retained payload was
    read whole into memory on the network thread, before any size check, on every restart.
    Now the broker keeps packets over broker.maximum_packet_size from the agent; payloads
    between limits.max_payload_bytes and that bound get a payload_too_large error."""
    agent = make_agent(
        broker.port,
        client_id="big",
        broker={"maximum_packet_size": 1 << 20},
        limits={"max_payload_bytes": 64 << 10},
    )
    client.subscribe("big/in/+/label", "edge-agent/big/errors", "edge-agent/big/status")
    agent.wait_online(client, "edge-agent/big/status")
    assert agent.process is not None
    before = rss_kib(agent.process.pid)
    huge = b"x" * (64 << 20)
    for retained in (False, True):
        subprocess.run(
            [
                *("mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1"),
                *("-t", "big/in/huge", "-s", *(["-r"] if retained else [])),
            ],
            input=huge,
            check=True,
            timeout=60,
        )
    client.publish("big/in/large", b"y" * (200 << 10))
    client.publish("big/in/after", "door open")
    client.wait_for(1, topic_prefix="big/in/after/label", timeout_s=30)
    errors = client.wait_for(1, topic_prefix="edge-agent/big/errors", timeout_s=30)
    assert [(e.json()["topic"], e.json()["error"]["code"]) for e in errors] == [
        ("big/in/large", "payload_too_large")
    ]
    assert rss_kib(agent.process.pid) - before < 32 << 10  # far below one 64 MiB payload
    # The retained 64 MiB copy is not delivered on a restart either.
    agent.stop()
    agent.start()
    agent.wait_online(client, "edge-agent/big/status")
    client.publish("big/in/again", "window closed")
    client.wait_for(1, topic_prefix="big/in/again/label", timeout_s=30)
    assert not client.messages("big/in/huge/label")
    assert len(client.messages("edge-agent/big/errors")) == 1
    assert agent.process.poll() is None
