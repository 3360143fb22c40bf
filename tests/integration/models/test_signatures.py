"""The real agent with `models.trusted_keys`: unsigned bundles stop start-up (exit 3, one
line naming the file); a bundle signed with `edge-agent model sign` is served."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.agent_process import AgentProcess, run_cli, write_config
from tests.support.broker import Broker
from tests.support.bundles import build_tiny_bundle
from tests.support.mqtt_client import TestClient


@pytest.fixture(scope="module")
def unsigned_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("signed-models")
    build_tiny_bundle(models, name="tiny")
    return models


def test_unsigned_bundle_is_a_startup_failure_when_keys_are_trusted(
    unsigned_models: Path, tmp_path: Path
) -> None:
    assert run_cli("model", "keygen", "--out", str(tmp_path / "ops")).returncode == 0
    config = write_config(
        tmp_path / "agent.yaml", broker_port=1, models_dir=unsigned_models, client_id="pi-7",
        models={"trusted_keys": [str(tmp_path / "ops.pub")]},
    )  # fmt: skip
    started = time.monotonic()
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "manifest.sig" in lines[0], result.stderr
    assert time.monotonic() - started < 60


def test_bad_trusted_key_file_is_a_config_error(unsigned_models: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.pub").write_text("not a key")
    config = write_config(
        tmp_path / "agent.yaml", broker_port=1, models_dir=unsigned_models, client_id="pi-7",
        models={"trusted_keys": [str(tmp_path / "junk.pub")]},
    )  # fmt: skip
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 3
    assert "models.trusted_keys" in result.stderr and "junk.pub" in result.stderr


def test_signed_bundle_is_served(unsigned_models: Path, tmp_path: Path, broker: Broker) -> None:
    models = tmp_path / "models"
    subprocess.run(["cp", "-r", str(unsigned_models), str(models)], check=True)
    assert run_cli("model", "keygen", "--out", str(tmp_path / "ops")).returncode == 0
    signed = run_cli(
        "model", "sign", str(models / "tiny" / "1.0.0"), "--key", str(tmp_path / "ops.key")
    )
    assert signed.returncode == 0, signed.stderr
    config = write_config(
        tmp_path / "agent.yaml", broker_port=broker.port, models_dir=models, client_id="pi-7",
        models={"trusted_keys": [str(tmp_path / "ops.pub")]},
    )  # fmt: skip
    client = TestClient(broker.host, broker.port)
    agent = AgentProcess(config, tmp_path / "agent.log")
    try:
        client.subscribe("edge-agent/pi-7/status", "pi-7/in/+/label")
        agent.start()
        agent.wait_online(client, "edge-agent/pi-7/status")
        client.publish("pi-7/in/a", b"the movie was great fun")
        deadline = time.monotonic() + 30
        while not client.messages("pi-7/in/a/label") and time.monotonic() < deadline:
            time.sleep(0.05)
        (result,) = client.messages("pi-7/in/a/label")
        assert json.loads(result.payload)["model"] == {"name": "tiny", "version": "1.0.0"}
        assert agent.stop() == 0
    finally:
        agent.kill()
        client.close()
