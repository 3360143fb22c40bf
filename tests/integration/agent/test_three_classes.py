"""The three-class chat path end to end: the shipped chat-sentiment bundle served by the real
agent through a real mosquitto answers with negative / neutral / positive, the whole
distribution in top_k, and the bundle's own golden answers (recorded at pack time, two per
class), not ones written into this test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.bundle.manifest import load_manifest
from edge_agent.bundle.versions import resolve_bundle
from edge_agent.engine.classifier import GOLDEN_SCORE_TOLERANCE
from tests.support.agent_process import REPO_ROOT, StartAgent
from tests.support.bundles import install
from tests.support.mqtt_client import TestClient

CHAT_MODEL = "chat-sentiment"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the shipped small chat model (the agent loads every route's model at start)."""
    models = tmp_path_factory.mktemp("chat-models")
    install(resolve_bundle(REPO_ROOT / "models", CHAT_MODEL), models)
    return models


def test_the_shipped_chat_model_answers_in_three_classes_through_the_agent(
    start_agent: StartAgent, client: TestClient, models_dir: Path
) -> None:
    manifest = load_manifest(resolve_bundle(models_dir, CHAT_MODEL))
    assert manifest.labels == ("negative", "neutral", "positive")  # TweetEval's mapping.txt
    assert {example.label for example in manifest.golden} == set(manifest.labels)
    route = {"subscribe": "chat3/+/text", "model": CHAT_MODEL, "publish": "{topic}/label"}
    start_agent("chat3", routes=[route])
    client.subscribe("chat3/+/text/label")

    for n, example in enumerate(manifest.golden):
        client.publish(f"chat3/user{n}/text", json.dumps({"id": f"g{n}", "text": example.text}))
    results = {
        message.json()["id"]: message.json()
        for message in client.wait_for(len(manifest.golden), topic_prefix="chat3/")
    }

    for n, example in enumerate(manifest.golden):
        result = results[f"g{n}"]
        assert result["label"] == example.label, result
        assert abs(result["score"] - example.score) <= GOLDEN_SCORE_TOLERANCE, result
        top_k = result["top_k"]
        assert sorted(entry["label"] for entry in top_k) == sorted(manifest.labels), result
        assert top_k[0]["label"] == result["label"]
        assert sum(entry["score"] for entry in top_k) == pytest.approx(1.0, abs=1e-4)
