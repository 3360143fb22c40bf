"""Fixtures for hot-swap and OTA through the daemon: tiny real bundles (built once), an
operator key pair, a private mosquitto per test, a test MQTT client, and a factory for
real agent subprocesses over a models directory of the test's own."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.bundle.signer import generate_keypair
from tests.support.agent_process import AgentProcess, write_config
from tests.support.broker import Broker
from tests.support.mqtt_client import Received, TestClient
from tests.support.tiny_bundle import build_tiny_bundle

_ids = itertools.count()


@dataclass(frozen=True)
class Bundles:
    """Source bundles of model `tiny`, outside any agent's models directory."""

    root: Path
    v1: Path  # 1.0.0, labels negative/positive
    v2: Path  # 2.0.0, same labels, other weights
    relabelled: Path  # 3.0.0, labels alarm/door/light


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("swap-bundles")
    return Bundles(
        root,
        build_tiny_bundle(root, version="1.0.0", seed=1, with_fp32=False),
        build_tiny_bundle(root, version="2.0.0", seed=3, with_fp32=False),
        build_tiny_bundle(
            root, version="3.0.0", labels=("alarm", "door", "light"), seed=4, with_fp32=False
        ),
    )


def install(
    source: Path,
    models_dir: Path,
    *,
    version: str | None = None,
    tamper: Callable[[Path], None] | None = None,
) -> Path:
    """The documented safe install: copy under a dot-name on the same filesystem, fsync,
    rename into place. `version` re-files the bundle (its manifest is edited to match);
    `tamper` damages the copy before it becomes visible."""
    manifest = json.loads((source / "manifest.json").read_text())
    version = version or str(manifest["version"])
    model_dir = models_dir / str(manifest["name"])
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-{version}"
    shutil.copytree(source, staging)
    if version != manifest["version"]:
        manifest["version"] = version
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if tamper is not None:
        tamper(staging)
    for path in staging.iterdir():
        with path.open("rb") as file:
            os.fsync(file.fileno())
    final = model_dir / version
    staging.rename(final)
    return final


@dataclass
class Agent:
    process: AgentProcess
    client_id: str
    models_dir: Path
    config: Path

    @property
    def status_topic(self) -> str:
        return f"edge-agent/{self.client_id}/status"

    @property
    def events_topic(self) -> str:
        return self.status_topic + "/events"

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def input_topic(self, leaf: str = "s1") -> str:
        return f"{self.client_id}/in/{leaf}"

    def results_prefix(self) -> str:
        return f"{self.client_id}/in/"


AgentFactory = Callable[..., Agent]


@pytest.fixture
def start_agent(broker: Broker, client: TestClient, tmp_path: Path) -> Iterator[AgentFactory]:
    """start_agent(models_dir, **config overrides) -> Agent, once its status says online.
    The client is subscribed to the agent's results, status, events and errors."""
    started: list[AgentProcess] = []

    def start(models_dir: Path, client_id: str | None = None, **overrides: Any) -> Agent:
        name = client_id or f"swap{next(_ids)}"
        overrides.setdefault("models", {})
        overrides["models"] = {"poll_interval_s": 0.25, **overrides["models"]}
        config = write_config(
            tmp_path / f"{name}.yaml",
            broker_port=broker.port,
            models_dir=models_dir,
            client_id=name,
            **overrides,
        )
        agent = Agent(AgentProcess(config, tmp_path / f"{name}.log"), name, models_dir, config)
        if agent.status_topic not in client.subscriptions:
            client.subscribe(
                agent.status_topic,
                agent.events_topic,
                f"{name}/in/+/label",
                f"edge-agent/{name}/errors",
            )
        agent.process.start()
        started.append(agent.process)
        agent.process.wait_online(client, agent.status_topic)
        return agent

    yield start
    for process in started:
        if process.process is not None and process.process.poll() is None:
            process.kill()


@dataclass(frozen=True)
class Operator:
    private_key: Path
    public_key: Path


@pytest.fixture
def operator(tmp_path: Path) -> Operator:
    pair = generate_keypair(tmp_path / "operator")
    return Operator(pair.private_path, pair.public_path)


def events(client: TestClient, agent: Agent, name: str) -> list[dict[str, Any]]:
    found = [message.json() for message in client.messages(agent.events_topic)]
    return [event for event in found if event.get("event") == name]


def versions_of(results: list[Received]) -> list[str]:
    return [str(result.json()["model"]["version"]) for result in results]
