"""OTA through the running agent: the real `edge-agent model push` CLI (or the push API) on a
real mosquitto, the agent subprocess with `ota.enabled` and trusted keys. Every protocol case
(expiry, oversize, unknown files, external data, ...) is covered against the receiver in
tests/ota; here, through the agent: install + swap, a bundle the model store refuses, a
refused key, a downgrade, a path-traversal name, a tampered chunk, and resume across a
restart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.bundle.signer import Signer, generate_keypair, sign_bundle
from edge_agent.mqtt.operator import BrokerAddress, publish_messages
from edge_agent.ota.manifest import Target, build_payload, seal
from edge_agent.ota.push import build_update, read_bundle_files
from tests.support.agent_process import REPO_ROOT, Agent, AgentFactory, events
from tests.support.broker import Broker
from tests.support.bundles import SwapBundles, install
from tests.support.keys import Operator
from tests.support.mqtt_client import TestClient

PREFIX = "edge-agent/ota"


@dataclass(frozen=True)
class OtaCase:
    agent: Agent
    client: TestClient
    broker: Broker
    operator: Operator
    bundles: SwapBundles
    tmp_path: Path


@pytest.fixture
def ota(
    tmp_path: Path,
    bundles: SwapBundles,
    *,
    broker: Broker,
    client: TestClient,
    start_agent: AgentFactory,
    operator: Operator,
) -> OtaCase:
    """An agent serving a signed tiny 1.0.0, with OTA on and the operator's key trusted."""
    models = tmp_path / "models"
    signer = Signer.from_file(operator.private_key)
    install(bundles.v1, models, tamper=lambda bundle: _sign(bundle, signer))
    agent = start_agent(
        models,
        models={"trusted_keys": [str(operator.public_key)]},
        ota={"enabled": True, "fleet": "kitchen"},
    )
    client.subscribe(_report_topic(agent))
    return OtaCase(agent, client, broker, operator, bundles, tmp_path)


def _sign(bundle: Path, signer: Signer) -> None:
    sign_bundle(bundle, signer)


def _report_topic(agent: Agent) -> str:
    return f"{PREFIX}/device/{agent.client_id}/report"


def _reports(client: TestClient, agent: Agent) -> list[dict[str, Any]]:
    return [message.json() for message in client.messages(_report_topic(agent))]


def _wait_report(
    client: TestClient,
    agent: Agent,
    done: Callable[[dict[str, Any]], bool],
    *,
    after: int = 0,
    timeout_s: float = 30,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for report in _reports(client, agent)[after:]:
            if done(report):
                return report
        time.sleep(0.05)
    raise AssertionError(
        f"no such report; got {_reports(client, agent)}\n{agent.process.log_tail()}"
    )


def _label(client: TestClient, agent: Agent, text: str, timeout_s: float = 10) -> dict[str, Any]:
    before = len(client.messages(agent.results_prefix()))
    client.publish(agent.input_topic(), json.dumps({"id": text, "text": text}))
    results = client.wait_for(before + 1, topic_prefix=agent.results_prefix(), timeout_s=timeout_s)
    parsed: dict[str, Any] = results[-1].json()
    return parsed


def _push_cli(broker: Broker, bundle: Path, key: Path, device: str) -> None:
    pushed = subprocess.run(
        [
            sys.executable, "-m", "edge_agent", "model", "push", "--device", device,
            str(bundle), "--key", str(key), "--chunk-size", "16384",
            "--host", broker.host, "--port", str(broker.port),
        ],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr


def test_ota_push_installs_and_swaps_in_the_running_agent(ota: OtaCase) -> None:
    agent, client, broker, bundles = ota.agent, ota.client, ota.broker, ota.bundles
    assert _label(client, agent, "before")["model"]["version"] == "1.0.0"

    started = time.monotonic()
    _push_cli(broker, bundles.v2, ota.operator.private_key, agent.client_id)
    _wait_report(client, agent, lambda r: r["state"] == "swapped")
    elapsed = time.monotonic() - started

    states = [report["state"] for report in _reports(client, agent)]
    assert states.index("verified") < states.index("installed") < states.index("swapped")
    assert "rejected" not in states
    assert _label(client, agent, "after")["model"]["version"] == "2.0.0"
    installed = agent.models_dir / "tiny" / "2.0.0"
    assert (installed / "model.onnx").read_bytes() == (bundles.v2 / "model.onnx").read_bytes()
    assert (installed / "manifest.sig").is_file()
    swapped = events(client, agent, "model_swapped")
    assert [(e["version"], e["previous_version"]) for e in swapped] == [("2.0.0", "1.0.0")]
    assert events(client, agent, "ota_swapped"), "reports are mirrored on the events topic"
    size = sum(path.stat().st_size for path in bundles.v2.iterdir())
    print(f"\nOTA of a {size / 1024:.0f} KiB bundle, push -> swapped: {elapsed:.2f} s")


def test_ota_signed_by_an_unknown_key_is_refused_and_changes_nothing(ota: OtaCase) -> None:
    agent, client, broker, bundles = ota.agent, ota.client, ota.broker, ota.bundles
    tmp_path = ota.tmp_path
    stranger = generate_keypair(tmp_path / "stranger")

    _push_cli(broker, bundles.v2, stranger.private_path, agent.client_id)
    report = _wait_report(client, agent, lambda r: r["state"] == "rejected")

    assert "unknown key" in report["reason"], report
    assert sorted(p.name for p in (agent.models_dir / "tiny").iterdir()) == ["1.0.0"]
    state_ota = tmp_path / f"state-{agent.client_id}" / "ota"
    staged = [p for p in state_ota.iterdir() if p.name != "outcomes"] if state_ota.exists() else []
    assert staged == [], "nothing may be staged for an update that failed its signature"
    assert _label(client, agent, "still old")["model"]["version"] == "1.0.0"
    assert not events(client, agent, "model_swapped")


def test_interrupted_ota_resumes_after_the_agent_restarts(ota: OtaCase) -> None:
    agent, client, broker, bundles = ota.agent, ota.client, ota.broker, ota.bundles
    tmp_path = ota.tmp_path
    update = build_update(
        read_bundle_files(bundles.v2),
        Signer.from_file(ota.operator.private_key),
        Target(device=agent.client_id),
        prefix=PREFIX,
        now=datetime.now(UTC),
        chunk_size=1024,
    )
    chunks, envelope = update.messages[:-1], update.messages[-1]
    # The first half of every file's chunks is on the broker; the agent stalls waiting.
    first_half = []
    for spec in update.manifest.files.values():
        mine = [m for m in chunks if f"/blob/{spec.sha256}/" in m.topic]
        first_half += mine[: len(mine) // 2]
    rest = [m for m in chunks if m not in first_half]
    address = BrokerAddress(broker.host, broker.port)
    publish_messages(address, [(m.topic, m.payload, m.retain) for m in [*first_half, envelope]])
    total = update.manifest.total_chunks
    _wait_report(
        client, agent, lambda r: r["state"] == "downloading" and r["received"] >= total // 3
    )
    time.sleep(0.5)  # let the agent take what it can
    assert agent.process.stop() == 0
    staged = tmp_path / f"state-{agent.client_id}" / "ota" / update.manifest.update_id
    assert staged.is_dir(), "the transfer is staged for the next run"
    assert not (agent.models_dir / "tiny" / "2.0.0").exists()

    publish_messages(address, [(m.topic, m.payload, m.retain) for m in rest])
    seen = len(_reports(client, agent))
    agent.process.start()
    agent.process.wait_online(client, agent.status_topic)
    resumed = _wait_report(client, agent, lambda r: r["state"] == "downloading", after=seen)
    assert resumed["received"] >= total // 3, "a restarted agent continues, not starts over"
    _wait_report(client, agent, lambda r: r["state"] == "swapped", after=seen)
    assert _label(client, agent, "after restart")["model"]["version"] == "2.0.0"
    assert not staged.exists(), "staging is cleaned up after the install"


def test_ota_bundle_the_model_store_refuses_is_reported_and_the_old_model_serves(
    ota: OtaCase,
) -> None:
    agent, client, broker, bundles = ota.agent, ota.client, ota.broker, ota.bundles
    # Properly signed and hashed, but its manifest names 3 labels for a 2-logit graph:
    # only loading it tells, and that happens in the model store, after the install.
    mislabelled = ota.tmp_path / "workstation" / "tiny" / "2.0.0"
    shutil.copytree(bundles.v2, mislabelled)
    manifest = json.loads((mislabelled / "manifest.json").read_text())
    manifest["labels"] = ["negative", "positive", "neutral"]
    (mislabelled / "manifest.json").write_text(json.dumps(manifest, indent=2))

    _push_cli(broker, mislabelled, ota.operator.private_key, agent.client_id)
    report = _wait_report(client, agent, lambda r: r["state"] == "rejected")

    assert report["reason"].startswith("model store refused it: "), report
    assert "does not match 3 labels" in report["reason"]
    states = [r["state"] for r in _reports(client, agent)]
    assert "installed" in states
    assert "swapped" not in states
    rejected = events(client, agent, "model_rejected")
    assert [(e["version"], e["serving_version"]) for e in rejected] == [("2.0.0", "1.0.0")]
    assert _label(client, agent, "still old")["model"]["version"] == "1.0.0"


def test_hostile_updates_are_refused_with_nothing_written_outside_staging(ota: OtaCase) -> None:
    agent, client, broker, bundles = ota.agent, ota.client, ota.broker, ota.bundles
    signer = Signer.from_file(ota.operator.private_key)
    address = BrokerAddress(broker.host, broker.port)
    target = Target(device=agent.client_id)
    now = datetime.now(UTC)

    # A downgrade nobody signed as one: 0.9.0 while 1.0.0 is installed.
    older = read_bundle_files(bundles.v1)
    manifest = json.loads(older["manifest.json"])
    older["manifest.json"] = json.dumps({**manifest, "version": "0.9.0"}).encode()
    downgrade = build_update(older, signer, target, prefix=PREFIX, now=now, chunk_size=16384)
    publish_messages(address, [(m.topic, m.payload, m.retain) for m in downgrade.messages])
    report = _wait_report(client, agent, lambda r: r["state"] == "rejected")
    assert "rollback: version 0.9.0 is not newer than installed 1.0.0" in report["reason"]

    # A name that would escape the models directory, correctly signed.
    seen = len(_reports(client, agent))
    # (The operator-side builder refuses such a name, so the signed JSON is edited by hand.)
    payload = build_payload(
        name="tiny",
        version="9.0.0",
        target=target,
        files=read_bundle_files(bundles.v2),
        chunk_size=16384,
        created=now,
        expires=now + timedelta(days=1),
    )
    hostile = json.dumps({**json.loads(payload), "name": "../../escape"}).encode()
    publish_messages(
        address, [(f"{PREFIX}/device/{agent.client_id}/update", seal(hostile, signer), True)]
    )
    report = _wait_report(client, agent, lambda r: r["state"] == "rejected", after=seen)
    assert "model name '../../escape' is not allowed" in report["reason"]

    # A chunk altered on the broker: refused on arrival, never written, no install.
    seen = len(_reports(client, agent))
    update = build_update(
        read_bundle_files(bundles.v2), signer, target, prefix=PREFIX, now=now, chunk_size=16384
    )
    messages = [(m.topic, m.payload, m.retain) for m in update.messages]
    model_sha = update.manifest.files["model.onnx"].sha256
    index = next(i for i, (topic, _, _) in enumerate(messages) if f"/blob/{model_sha}/" in topic)
    topic, payload, retain = messages[index]
    messages[index] = (topic, bytes([payload[0] ^ 0xFF]) + payload[1:], retain)
    publish_messages(address, messages)
    report = _wait_report(client, agent, lambda r: r["state"] == "chunk_rejected", after=seen)
    assert "hash mismatch: model.onnx chunk 0" in report["reason"]
    time.sleep(1.0)  # whatever else would happen, give it time to
    assert "installed" not in [r["state"] for r in _reports(client, agent)]

    assert sorted(p.name for p in agent.models_dir.iterdir()) == ["tiny"]
    assert sorted(p.name for p in (agent.models_dir / "tiny").iterdir()) == ["1.0.0"]
    assert not (ota.tmp_path / "escape").exists()
    assert _label(client, agent, "untouched")["model"]["version"] == "1.0.0"


def test_a_qos0_flood_on_the_ota_topics_is_shed_and_ota_still_works(ota: OtaCase) -> None:
    """Before: QoS 0 deliveries on the OTA topics bypassed Receive Maximum and queued in the
    OTA worker without limit. Now what finds the worker's queue full is dropped and counted,
    and a real update pushed after the flood still installs."""
    agent, client = ota.agent, ota.client
    client.subscribe(agent.status_topic.replace("/status", "/stats"))
    # Each junk envelope is a 30 KB list the worker must parse before it can refuse it, while
    # the network thread only hands it over: the worker falls behind on any machine, so its
    # queue fills and the bound is what keeps it from growing.
    line = json.dumps({"format": 1, "key_id": "x", "pad": [0] * 10_000}).encode() + b"\n"
    junk = line * 3_000
    subprocess.run(
        [
            *("mosquitto_pub", "-h", ota.broker.host, "-p", str(ota.broker.port)),
            *("-q", "0", "-t", f"{PREFIX}/device/{agent.client_id}/update", "-l"),
        ],
        input=junk,
        check=True,
        timeout=60,
    )
    # The label waits behind the flood in the agent's socket: a wide bound for slow machines.
    after = _label(client, agent, "after the flood", timeout_s=60)
    assert after["model"]["version"] == "1.0.0"
    deadline = time.monotonic() + 20
    shed = 0
    while time.monotonic() < deadline and not shed:
        stats = [m.json() for m in client.messages(agent.status_topic.replace("/status", "/stats"))]
        shed = max((s.get("shed_qos0", 0) for s in stats), default=0)
        time.sleep(0.2)
    assert shed > 0
    assert agent.process.process is not None and agent.process.process.poll() is None
    v2 = install(ota.bundles.v2, ota.tmp_path / "workstation")
    _push_cli(ota.broker, v2, ota.operator.private_key, agent.client_id)
    report = _wait_report(client, agent, lambda r: r.get("state") == "swapped", timeout_s=60)
    assert report["version"] == "2.0.0"


def test_the_same_bad_update_again_and_again_is_reported_once_and_counted(ota: OtaCase) -> None:
    """Before: each copy of a bad update published a retained report and an event (QoS 1)
    and logged a line, so a flood of them held labels back behind its publishes."""
    agent, client = ota.agent, ota.client
    copies = 50
    # Then one bad in another way: the worker takes deliveries in order, so its report says
    # that every copy before it was handled.
    junk = b'{"format": 1, "key_id": "x"}\n' * copies + b'{"format": 2}\n'
    subprocess.run(
        [
            *("mosquitto_pub", "-h", ota.broker.host, "-p", str(ota.broker.port)),
            *("-q", "1", "-t", f"{PREFIX}/device/{agent.client_id}/update", "-l"),
        ],
        input=junk,
        check=True,
        timeout=60,
    )
    _wait_report(client, agent, lambda r: "format 1" in r.get("reason", ""))
    reasons = [(r["state"], r["reason"]) for r in _reports(client, agent)]
    assert reasons == [
        ("rejected", "missing signature"),
        ("rejected", "manifest envelope is not a format 1 object"),
    ]
    lines = agent.process.log_lines()
    repeated = [line["times"] for line in lines if line.get("event") == "ota_report_repeated"]
    assert repeated == [1, 2, 4, 8, 16, 32]  # 49 repeats, logged at the powers of two
    assert _label(client, agent, "still labelling")["model"]["version"] == "1.0.0"
