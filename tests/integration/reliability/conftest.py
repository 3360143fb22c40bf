"""Fixtures for the chaos tests: a tiny real bundle (built once), a private mosquitto per
test, and real agent subprocesses that are always killed at the end of the test.

Tests that take more than ~20 s are marked `slow` (`pytest -m "not slow"` skips them
locally; CI runs everything)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_process import AgentMaker, AgentProcess, write_config
from tests.support.bundles import build_tiny_bundle

_ids = itertools.count()


@pytest.fixture(scope="session")
def chaos_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("chaos-models")
    build_tiny_bundle(models, name="tiny", labels=("negative", "positive"), seed=7)
    return models


@pytest.fixture
def make_agent(chaos_models: Path, tmp_path: Path) -> Iterator[AgentMaker]:
    """make_agent(port, client_id=..., env=None, **config overrides) -> started AgentProcess
    (not waited for: each test decides what "ready" means for it)."""
    started: list[AgentProcess] = []

    def make(
        port: int, client_id: str | None = None, env: dict[str, str] | None = None, **overrides: Any
    ) -> AgentProcess:
        name = client_id or f"chaos{next(_ids)}"
        config = write_config(
            tmp_path / f"{name}.yaml",
            broker_port=port,
            models_dir=chaos_models,
            client_id=name,
            **overrides,
        )
        agent = AgentProcess(config, tmp_path / f"{name}.log").start(env)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        if agent.process is not None and agent.process.poll() is None:
            agent.kill()
