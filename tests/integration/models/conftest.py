"""Hot-swap and OTA through the daemon: real agent subprocesses, each over a models
directory of the test's own, polling it four times a second."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_process import Agent, AgentFactory, AgentProcess, write_config
from tests.support.broker import Broker
from tests.support.bundles import build_tiny_bundle
from tests.support.mqtt_client import TestClient

_ids = itertools.count()


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


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny embedding bundle, model `encoder` 1.0.0, outside any models directory."""
    return build_tiny_bundle(
        tmp_path_factory.mktemp("encoder"), name="encoder", task="embedding", with_fp32=False
    )
