"""Labels defined by example texts, served through an embedding bundle by the real agent:
results match what the engine answers for the same file, an edited examples file is swapped
in under a stream with nothing lost, a malformed one is reported once while the old labels
keep serving, and a route that cannot work is a one-line startup failure (exit 3)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from edge_agent.engine.encoder import load_encoder
from edge_agent.labels.labeller import build_labeller
from tests.support.agent_process import Agent, AgentFactory, events, run_cli, write_config
from tests.support.bundles import SwapBundles, install
from tests.support.mqtt_client import TestClient

EXAMPLES: dict[str, list[str]] = {
    "alarm": ["smoke alarm in the kitchen", "fire in the garage", "water leak in the room"],
    "maintenance": ["battery low on sensor one", "sensor offline again", "reboot for update"],
    "chat": ["hello and thanks", "good night", "nice weather today"],
}


def _write_examples(path: Path, labels: dict[str, list[str]], **extra: Any) -> Path:
    path.write_text(yaml.safe_dump({"labels": labels, **extra}))
    return path


def _start(start_agent: AgentFactory, models: Path, examples: Path, name: str) -> Agent:
    return start_agent(
        models,
        client_id=name,
        routes=[
            {"subscribe": f"{name}/in/+", "model": "encoder", "examples": str(examples)},
        ],
    )


def _revision(path: Path) -> str:
    return "1.0.0+labels." + hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def _label(client: TestClient, agent: Agent, text: str) -> dict[str, Any]:
    before = len(client.messages(agent.results_prefix()))
    client.publish(agent.input_topic(), json.dumps({"id": text, "text": text}))
    result = client.wait_for(before + 1, topic_prefix=agent.results_prefix(), timeout_s=10)[-1]
    parsed: dict[str, Any] = result.json()
    return parsed


def test_labels_from_examples_match_the_engine(
    tmp_path: Path, tiny_encoder: Path, client: TestClient, start_agent: AgentFactory
) -> None:
    models = tmp_path / "models"
    install(tiny_encoder, models)
    examples = _write_examples(tmp_path / "labels.yaml", EXAMPLES)
    agent = _start(start_agent, models, examples, "ex1")
    engine = build_labeller("k", load_encoder(models / "encoder" / "1.0.0"), examples)
    texts = [text for group in EXAMPLES.values() for text in group]
    texts += ["door open in the kitchen", "what a nice day", "error status high"]
    for text in texts:
        result = _label(client, agent, text)
        (expected,) = engine.classify([text], top_k=3)
        assert result["label"] == expected.label, text
        assert abs(result["score"] - expected.score) < 1e-4
        assert [item["label"] for item in result["top_k"]] == [s.label for s in expected.top_k]
        assert result["model"] == {"name": "encoder", "version": _revision(examples)}
        assert result["label"] in (*EXAMPLES, "other")


def test_an_edited_examples_file_swaps_in_under_a_stream_with_nothing_lost(
    tmp_path: Path, tiny_encoder: Path, client: TestClient, start_agent: AgentFactory
) -> None:
    models = tmp_path / "models"
    install(tiny_encoder, models)
    examples = _write_examples(tmp_path / "labels.yaml", EXAMPLES)
    old = _revision(examples)
    agent = _start(start_agent, models, examples, "ex2")
    sent: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            message_id = f"m{len(sent)}"
            client.publish(agent.input_topic(), json.dumps({"id": message_id, "text": "hello"}))
            sent.append(message_id)
            time.sleep(0.01)

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        time.sleep(0.5)
        edited = {**EXAMPLES, "door": ["door open", "door closed in the garage"]}
        new_file = tmp_path / "labels.new.yaml"
        _write_examples(new_file, edited, other="unknown")
        new = _revision(new_file)
        new_file.replace(examples)  # the way editors and config managers save
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
            m.json()["model"]["version"] == new for m in client.messages(agent.results_prefix())
        ):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        streamer.join()
    results = client.wait_for(len(sent), topic_prefix=agent.results_prefix(), timeout_s=20)
    time.sleep(0.3)
    results = client.messages(agent.results_prefix())
    ids = [m.json()["id"] for m in results]
    assert sorted(ids) == sorted(sent), "lost or duplicated results"
    versions = [m.json()["model"]["version"] for m in results]
    assert set(versions) == {old, new}
    first_new = versions.index(new)
    assert all(v == old for v in versions[:first_new]) and all(
        v == new for v in versions[first_new:]
    ), "a result from the old label set after the swap"
    swapped = [e for e in events(client, agent, "model_swapped") if e["version"] == new]
    assert len(swapped) == 1 and swapped[0]["labels_changed"] is True
    assert "door" in swapped[0]["labels"]


def test_a_malformed_examples_file_is_reported_once_and_the_old_labels_keep_serving(
    tmp_path: Path, tiny_encoder: Path, client: TestClient, start_agent: AgentFactory
) -> None:
    models = tmp_path / "models"
    install(tiny_encoder, models)
    examples = _write_examples(tmp_path / "labels.yaml", EXAMPLES)
    old = _revision(examples)
    agent = _start(start_agent, models, examples, "ex3")
    assert _label(client, agent, "hello")["model"]["version"] == old

    examples.write_text("labels:\n  alarm: [unclosed\n")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not events(client, agent, "model_rejected"):
        time.sleep(0.05)
    time.sleep(1.0)  # four poll intervals: a retry loop would show up as more events
    rejected = events(client, agent, "model_rejected")
    assert len(rejected) == 1, rejected
    assert "labels.yaml" in rejected[0]["reason"]
    assert rejected[0]["serving_version"] == old
    assert _label(client, agent, "still the old labels")["model"]["version"] == old

    _write_examples(examples, {"alarm": ["fire"], "chat": ["hello"]})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _label(client, agent, "hello")["model"]["version"] == _revision(examples):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"fixed file never served:\n{agent.process.log_tail()}")


def test_routes_that_cannot_work_are_startup_failures(
    tmp_path: Path, tiny_encoder: Path, bundles: SwapBundles
) -> None:
    models = tmp_path / "models"
    install(tiny_encoder, models)
    install(bundles.v1, models)  # model `tiny`, a classifier
    good = _write_examples(tmp_path / "labels.yaml", EXAMPLES)
    broken = tmp_path / "broken.yaml"
    broken.write_text("labels: {alarm: []}\n")
    cases = [
        ({"model": "encoder"}, "give the route an `examples` file"),
        ({"model": "encoder", "examples": str(broken)}, "'alarm' has no examples"),
        ({"model": "encoder", "examples": str(tmp_path / "none.yaml")}, "none.yaml"),
        ({"model": "tiny", "examples": str(good)}, "examples need an embedding model"),
    ]
    for route, expected in cases:
        config = write_config(
            tmp_path / "agent.yaml", broker_port=1, models_dir=models, client_id="pi-9",
            routes=[{"subscribe": "pi-9/in/+", **route}],
        )  # fmt: skip
        result = run_cli("run", "--config", str(config))
        assert result.returncode == 3, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr


def test_labels_check_and_classify_with_examples_from_a_shell(
    tmp_path: Path, tiny_encoder: Path
) -> None:
    examples = _write_examples(tmp_path / "labels.yaml", {**EXAMPLES, "door": ["door open"]})
    checked = run_cli("labels", "check", str(examples), "--bundle", str(tiny_encoder))
    assert checked.returncode == 0, checked.stderr
    rows = {line.split()[0]: line.split() for line in checked.stdout.splitlines()[1:5]}
    assert set(rows) == {*EXAMPLES, "door"}
    assert rows["alarm"][1] == "3" and rows["door"][1:3] == ["1", "-"]
    assert "`other` below similarity" in checked.stdout and "(auto)" in checked.stdout
    assert "one example only (cannot be checked; add more): door" in checked.stdout

    labelled = run_cli(
        "classify", "--bundle", str(tiny_encoder), "--examples", str(examples),
        "smoke alarm in the kitchen", "",
    )  # fmt: skip
    assert labelled.returncode == 0, labelled.stderr
    first, second = (json.loads(line) for line in labelled.stdout.splitlines())
    assert first["label"] in (*EXAMPLES, "door", "other")
    assert first["model"]["version"] == _revision(examples)
    assert second["error"]["code"] == "empty_text"

    broken = tmp_path / "broken.csv"
    broken.write_text("text,category\nfire,alarm\n")
    failed = run_cli("labels", "check", str(broken), "--bundle", str(tiny_encoder))
    assert failed.returncode == 3
    assert failed.stderr.strip().count("\n") == 0 and "`label` columns" in failed.stderr
