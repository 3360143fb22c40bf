"""OTA into the real agent: `edge-agent model push` of a real tiny bundle through mosquitto;
the running agent (ota.enabled, trusted key) stages, verifies and installs it, reporting
on its report topic, and keeps serving meanwhile."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from tests.support.agent_process import AgentProcess, run_cli, write_config
from tests.support.broker import Broker
from tests.support.bundles import build_tiny_bundle
from tests.support.mqtt_client import TestClient

REPORT = "edge-agent/ota/device/pi-7/report"


def _wait_for_state(client: TestClient, state: str, timeout_s: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in client.messages(REPORT):
            report: dict[str, object] = json.loads(message.payload)
            if report["state"] == state:
                return report
        time.sleep(0.05)
    states = [json.loads(m.payload)["state"] for m in client.messages(REPORT)]
    raise AssertionError(f"no {state!r} report; saw {states}")


def test_push_installs_and_swaps_in_the_running_agent(tmp_path: Path, broker: Broker) -> None:
    models = tmp_path / "models"
    build_tiny_bundle(models, name="tiny", version="1.0.0")
    workstation = tmp_path / "workstation"
    new_bundle = build_tiny_bundle(workstation, name="tiny", version="1.1.0", seed=3)
    assert run_cli("model", "keygen", "--out", str(tmp_path / "ops")).returncode == 0
    key = str(tmp_path / "ops.key")
    assert run_cli("model", "sign", str(models / "tiny" / "1.0.0"), "--key", key).returncode == 0
    config = write_config(
        tmp_path / "agent.yaml", broker_port=broker.port, models_dir=models, client_id="pi-7",
        models={"trusted_keys": [str(tmp_path / "ops.pub")]},
        ota={"enabled": True, "fleet": "kitchen"},
    )  # fmt: skip
    client = TestClient(broker.host, broker.port)
    agent = AgentProcess(config, tmp_path / "agent.log")
    try:
        client.subscribe("edge-agent/pi-7/status", REPORT, "pi-7/in/+/label")
        agent.start()
        agent.wait_online(client, "edge-agent/pi-7/status")
        started = time.monotonic()
        pushed = run_cli(
            "model", "push", "--device", "pi-7", str(new_bundle), "--key", key,
            "--host", broker.host, "--port", str(broker.port), "--chunk-size", "65536",
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        report = _wait_for_state(client, "installed")
        elapsed = time.monotonic() - started
        assert (report["name"], report["version"]) == ("tiny", "1.1.0")
        installed = models / "tiny" / "1.1.0"
        for name in ("model.onnx", "model.fp32.onnx", "tokenizer.json", "manifest.json"):
            assert (installed / name).read_bytes() == (new_bundle / name).read_bytes()
        assert not any(p.name.startswith(".") for p in (models / "tiny").iterdir())
        size = sum(p.stat().st_size for p in installed.iterdir())
        print(f"OTA into the running agent: {size} bytes in {elapsed:.2f} s")

        _wait_for_state(client, "swapped")  # the hot-swap took the installed bundle
        client.publish("pi-7/in/a", b"the movie was great fun")
        deadline = time.monotonic() + 30
        while not client.messages("pi-7/in/a/label") and time.monotonic() < deadline:
            time.sleep(0.05)
        labelled = client.messages("pi-7/in/a/label")
        assert labelled and labelled[0].json()["model"]["version"] == "1.1.0"

        status = run_cli(
            "model", "status", "--fleet", "kitchen", "--json", "--settle", "0.5",
            "--host", broker.host, "--port", str(broker.port),
        )  # fmt: skip
        assert [json.loads(line)["state"] for line in status.stdout.splitlines()] == ["swapped"]
        assert agent.stop() == 0
    finally:
        agent.kill()
        client.close()
    shutil.rmtree(tmp_path / "workstation", ignore_errors=True)


def test_ota_without_trusted_keys_is_a_startup_failure(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "tiny").mkdir(parents=True)
    config = write_config(
        tmp_path / "agent.yaml", broker_port=1, models_dir=models, client_id="pi-7",
        ota={"enabled": True},
    )  # fmt: skip
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 3
    assert (
        "ota.enabled needs models.trusted_keys" in result.stderr or "model error" in result.stderr
    )
