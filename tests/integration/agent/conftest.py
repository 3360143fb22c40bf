"""Fixtures for the agent tests: tiny real bundles (built once), a private mosquitto per
test, a test MQTT client, and a factory for real agent subprocesses that are always
stopped at the end of the test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_process import AgentProcess, StartAgent, write_config
from tests.support.broker import Broker
from tests.support.bundles import build_tiny_bundle
from tests.support.mqtt_client import TestClient

_ids = itertools.count()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("agent-models")
    build_tiny_bundle(models, name="tiny", labels=("negative", "positive"), seed=1)
    build_tiny_bundle(
        models, name="topics", task="multi-label", labels=("alarm", "door", "light"), seed=2
    )
    return models


@pytest.fixture
def start_agent(
    broker: Broker, client: TestClient, models_dir: Path, tmp_path: Path
) -> Iterator[StartAgent]:
    """start_agent(client_id=None, env=None, **config overrides) -> (agent, client_id);
    returns once the agent's status topic says online."""
    started: list[AgentProcess] = []

    def start(
        client_id: str | None = None, env: dict[str, str] | None = None, **overrides: Any
    ) -> tuple[AgentProcess, str]:
        name = client_id or f"agent{next(_ids)}"
        config = write_config(
            tmp_path / f"{name}.yaml",
            broker_port=broker.port,
            models_dir=models_dir,
            client_id=name,
            **overrides,
        )
        status = f"edge-agent/{name}/status"
        if status not in client.subscriptions:
            client.subscribe(status, f"edge-agent/{name}/errors", f"edge-agent/{name}/dead-letter")
        agent = AgentProcess(config, tmp_path / f"{name}.log").start(env)
        started.append(agent)
        agent.wait_online(client, status)
        return agent, name

    yield start
    for agent in started:
        if agent.process is not None and agent.process.poll() is None:
            agent.kill()
