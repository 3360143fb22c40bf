"""Bundles that fail a check never replace the serving model: each gets one `model_rejected`
event naming the reason (no retry loop), the old version keeps labelling, and a later good
bundle with a different label set is swapped in and announced as such; a `current` link
flipped by the operator pins a version."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge_agent.bundle.versions import scan_model
from edge_agent.models.refusals import RefusalLog
from tests.support.agent_process import Agent, AgentFactory, events, versions_of
from tests.support.bundles import SwapBundles, install
from tests.support.mqtt_client import TestClient


def _label_one(client: TestClient, agent: Agent, text: str) -> dict[str, Any]:
    before = len(client.messages(agent.results_prefix()))
    client.publish(agent.input_topic(), json.dumps({"id": text, "text": text}))
    result = client.wait_for(before + 1, topic_prefix=agent.results_prefix(), timeout_s=10)[-1]
    parsed: dict[str, Any] = result.json()
    return parsed


def _wait_event(client: TestClient, agent: Agent, name: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = events(client, agent, name)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} {name} events:\n{agent.process.log_tail()}")


def test_broken_bundles_keep_the_old_model_and_are_not_retried(
    tmp_path: Path, bundles: SwapBundles, client: TestClient, start_agent: AgentFactory
) -> None:
    models = tmp_path / "models"
    install(bundles.v1, models)
    agent = start_agent(models)
    assert _label_one(client, agent, "first")["model"]["version"] == "1.0.0"

    # Truncated model.onnx: the manifest's size and hash no longer match.
    install(bundles.v2, models, version="2.0.0", tamper=_truncate_model)
    _wait_event(client, agent, "model_rejected", 1)
    # Same size, one byte changed in the tokenizer: only the hash tells.
    install(bundles.v2, models, version="2.1.0", tamper=_flip_tokenizer_byte)
    _wait_event(client, agent, "model_rejected", 2)
    # Labels that do not match the graph's outputs (3 names, 2 logits).
    install(bundles.v2, models, version="2.2.0", tamper=_three_labels)
    _wait_event(client, agent, "model_rejected", 3)

    time.sleep(1.5)  # six poll intervals: a retry loop would show up as more events
    rejected = events(client, agent, "model_rejected")
    by_version = {event["version"]: event for event in rejected}
    assert len(rejected) == 3, rejected
    assert "sha256" in by_version["2.0.0"]["reason"] or "size" in by_version["2.0.0"]["reason"]
    assert "tokenizer.json: sha256 differs" in by_version["2.1.0"]["reason"]
    assert "does not match 3 labels" in by_version["2.2.0"]["reason"]
    assert {event["serving_version"] for event in rejected} == {"1.0.0"}
    assert not events(client, agent, "model_swapped")
    assert _label_one(client, agent, "still old")["model"]["version"] == "1.0.0"
    logged = [line for line in agent.process.log_lines() if line["event"] == "model_rejected"]
    assert len(logged) == 3

    # A good bundle with another label set is a new model: swapped, and announced.
    install(bundles.relabelled, models)
    swapped = _wait_event(client, agent, "model_swapped", 1)
    assert swapped[0]["version"] == "3.0.0"
    assert swapped[0]["labels_changed"] is True
    assert swapped[0]["labels"] == ["alarm", "door", "light"]
    assert swapped[0]["previous_labels"] == ["negative", "positive"]
    after = _label_one(client, agent, "new labels")
    assert after["model"]["version"] == "3.0.0"
    assert after["label"] in ("alarm", "door", "light")
    online = [
        m.json() for m in client.messages(agent.status_topic) if m.topic == agent.status_topic
    ]
    assert online[-1]["models"] == {"tiny": "3.0.0"}
    assert versions_of(client.messages(agent.results_prefix()))[-1] == "3.0.0"

    # The operator pins an older version by flipping `current` atomically (docs/ota.md).
    pin = models / "tiny" / ".current.tmp"
    pin.symlink_to("1.0.0")
    pin.rename(models / "tiny" / "current")
    swapped = _wait_event(client, agent, "model_swapped", 2)
    assert (swapped[-1]["version"], swapped[-1]["previous_version"]) == ("1.0.0", "3.0.0")
    assert _label_one(client, agent, "pinned")["model"]["version"] == "1.0.0"


def _truncate_model(bundle: Path) -> None:
    model = bundle / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])


def _flip_tokenizer_byte(bundle: Path) -> None:
    tokenizer = bundle / "tokenizer.json"
    data = bytearray(tokenizer.read_bytes())
    data[-2] = ord(" ") if data[-2] != ord(" ") else ord("\n")
    tokenizer.write_bytes(bytes(data))


def _three_labels(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["labels"] = ["negative", "positive", "neutral"]
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_a_broken_newest_bundle_at_start_up_falls_back_and_is_reported(
    tmp_path: Path, bundles: SwapBundles, client: TestClient, start_agent: AgentFactory
) -> None:
    models = tmp_path / "models"
    install(bundles.v1, models)
    install(bundles.v2, models, tamper=_truncate_model)
    agent = start_agent(models)

    rejected = _wait_event(client, agent, "model_rejected", 1)
    assert (rejected[0]["version"], rejected[0]["serving_version"]) == ("2.0.0", "1.0.0")
    assert _label_one(client, agent, "fallback")["model"]["version"] == "1.0.0"
    time.sleep(1.0)  # four poll intervals: the broken bundle is not tried again
    assert len(events(client, agent, "model_rejected")) == 1


def test_a_bundle_the_agent_died_loading_is_not_tried_again_after_a_restart(
    tmp_path: Path, bundles: SwapBundles, client: TestClient, start_agent: AgentFactory
) -> None:
    """A fault inside onnxruntime while a bundle loads kills the process, no `except` can
    catch it, and every restart picked the same bundle again: a crash loop. Loads are now
    written down before they start; one still written down at start-up was fatal before."""
    models = tmp_path / "models"
    install(bundles.v1, models)
    newer = install(bundles.v2, models)  # valid, and the newest: start-up would pick it
    (killer,) = [ref for ref in scan_model(models, "tiny").versions if ref.path == newer]
    agent_id = "survivor"
    # What a run that died inside the load of 2.0.0 leaves in its state directory:
    RefusalLog(tmp_path / f"state-{agent_id}").loading(killer)
    agent = start_agent(models, client_id=agent_id)
    assert _label_one(client, agent, "after the crash")["model"]["version"] == "1.0.0"
    (refused,) = _wait_event(client, agent, "model_rejected", 1)
    assert refused["version"] == "2.0.0" and refused["serving_version"] == "1.0.0"
    assert "stopped while loading" in refused["reason"]
    # Changed on disk (re-installed under a new folder): tried, and served.
    install(bundles.v2, models, version="2.0.1")
    swapped = _wait_event(client, agent, "model_swapped", 1)
    assert swapped[0]["version"] == "2.0.1"
