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

# The OTA-through-the-agent fixture, for the OTA disk-fault cases of this suite.
from tests.integration.models.conftest import start_agent  # noqa: F401
from tests.support.agent_process import REPO_ROOT, AgentMaker, AgentProcess, write_config
from tests.support.bundles import build_tiny_bundle
from tests.support.proc import status_kib

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
    limit = unit_memory_max_kib()
    for agent in started:
        if agent.process is not None and agent.process.poll() is None:
            # Whatever the test threw at it, the agent's peak RSS stayed under the memory
            # bound systemd would enforce on a device.
            peak = status_kib(agent.process.pid, "VmHWM")
            agent.kill()
            assert peak < limit, f"peak RSS {peak} kB over the unit's MemoryMax ({limit} kB)"


def unit_memory_max_kib() -> int:
    """MemoryMax= of the shipped unit file, in kB."""
    unit = REPO_ROOT / "systemd" / "edge-agent.service"
    for line in unit.read_text().splitlines():
        if line.startswith("MemoryMax="):
            value = line.split("=", 1)[1].strip()
            factor = {"K": 1, "M": 1024, "G": 1024 * 1024}[value[-1]]
            return int(value[:-1]) * factor
    raise AssertionError(f"{unit}: no MemoryMax=")
