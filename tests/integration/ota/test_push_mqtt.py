"""OTA through a real mosquitto: the real CLI signs and pushes, a device receiver installs.

The device side here is the real `OtaReceiver` behind a plain MQTT client that carries out
its actions, i.e. the thin layer the daemon will provide. (With the daemon in main, the
same flow runs against the agent subprocess: see docs/ota.md, "Daemon integration".)
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from edge_agent.bundle.keys import Keyring
from edge_agent.mqtt.operator import BrokerAddress, collect_retained, publish_messages
from edge_agent.ota.receiver import OtaReceiver, OtaSettings
from tests.support.agent_process import run_cli
from tests.support.broker import Broker
from tests.support.bundles import bundle_files, write_bundle
from tests.support.ota_device import DeviceLink


@pytest.fixture
def broker_port(broker: Broker) -> int:
    return broker.port


def _receiver(tmp_path: Path, prefix: str, public_key: Path) -> OtaReceiver:
    return OtaReceiver(
        OtaSettings(device_id="pi-7", fleet="kitchen", prefix=prefix, window=4),
        Keyring.from_files([public_key]),
        tmp_path / "device" / "models",
        tmp_path / "device" / "state",
    )


def test_push_install_and_fleet_status_over_mosquitto(tmp_path: Path, broker_port: int) -> None:
    prefix = f"test/{uuid.uuid4().hex[:8]}/ota"
    keygen = run_cli("model", "keygen", "--out", str(tmp_path / "operator"))
    assert keygen.returncode == 0, keygen.stderr
    bundle = write_bundle(tmp_path / "workstation", bundle_files(version="1.1.0"))
    signed = run_cli("model", "sign", str(bundle), "--key", str(tmp_path / "operator.key"))
    assert signed.returncode == 0, signed.stderr

    started = time.monotonic()
    pushed = run_cli(
        "model", "push", "--fleet", "kitchen", str(bundle),
        "--key", str(tmp_path / "operator.key"), "--chunk-size", "1024",
        "--host", "127.0.0.1", "--port", str(broker_port), "--prefix", prefix,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    device = DeviceLink(broker_port, _receiver(tmp_path, prefix, tmp_path / "operator.pub"))
    try:
        device.wait_for(lambda d: "installed" in d.states)
        elapsed = time.monotonic() - started
    finally:
        device.close()
    installed = tmp_path / "device" / "models" / "sentiment" / "1.1.0"
    assert (installed / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()
    assert (installed / "manifest.sig").read_bytes() == (bundle / "manifest.sig").read_bytes()
    size = sum(p.stat().st_size for p in installed.iterdir())
    print(f"OTA of a {size} byte bundle in 1 KiB chunks: {elapsed:.2f} s")

    status = run_cli(
        "model", "status", "--fleet", "kitchen", "--json", "--settle", "0.5",
        "--host", "127.0.0.1", "--port", str(broker_port), "--prefix", prefix,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    reports = [json.loads(line) for line in status.stdout.splitlines()]
    assert [(r["device"], r["state"], r["version"]) for r in reports] == [
        ("pi-7", "installed", "1.1.0")
    ]
    table = run_cli(
        "model", "status", "--fleet", "kitchen", "--settle", "0.5",
        "--host", "127.0.0.1", "--port", str(broker_port), "--prefix", prefix,
    )  # fmt: skip
    assert "pi-7" in table.stdout and "installed" in table.stdout


def test_interrupted_transfer_resumes_over_mosquitto(tmp_path: Path, broker_port: int) -> None:
    prefix = f"test/{uuid.uuid4().hex[:8]}/ota"
    assert run_cli("model", "keygen", "--out", str(tmp_path / "operator")).returncode == 0
    bundle = write_bundle(tmp_path / "workstation", bundle_files(version="1.1.0"))
    pushed = run_cli(
        "model", "push", "--device", "pi-7", str(bundle),
        "--key", str(tmp_path / "operator.key"), "--chunk-size", "1024",
        "--host", "127.0.0.1", "--port", str(broker_port), "--prefix", prefix,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr

    first = DeviceLink(
        broker_port, _receiver(tmp_path, prefix, tmp_path / "operator.pub"), max_chunks=6
    )
    first.wait_for(lambda d: d.chunks_submitted == 6)
    first.close()  # the agent stops mid-transfer (later chunks never handled nor acked)
    assert "installed" not in first.states

    second = DeviceLink(broker_port, _receiver(tmp_path, prefix, tmp_path / "operator.pub"))
    try:
        second.wait_for(lambda d: "installed" in d.states)
    finally:
        second.close()
    total = sum(-(-p.stat().st_size // 1024) for p in bundle.iterdir()) + 1  # + manifest.sig
    assert second.chunks_submitted == total - 6  # only the missing chunks travel again
    model = tmp_path / "device" / "models" / "sentiment" / "1.1.0" / "model.onnx"
    assert model.read_bytes() == (bundle / "model.onnx").read_bytes()


def test_unpush_clears_the_update_and_only_the_chunks_nothing_else_needs(
    tmp_path: Path, broker_port: int
) -> None:
    prefix = f"test/{uuid.uuid4().hex[:8]}/ota"
    broker = ("--host", "127.0.0.1", "--port", str(broker_port), "--prefix", prefix)
    assert run_cli("model", "keygen", "--out", str(tmp_path / "operator")).returncode == 0
    bundle = write_bundle(tmp_path / "workstation", bundle_files(version="1.1.0"))
    key = ("--key", str(tmp_path / "operator.key"), "--chunk-size", "1024")
    # the same files to a fleet and to one device: one retained copy of each chunk serves both
    for target in (("--fleet", "kitchen"), ("--device", "pi-9")):
        pushed = run_cli("model", "push", *target, str(bundle), *key, *broker)
        assert pushed.returncode == 0, pushed.stderr

    def retained() -> dict[str, bytes]:
        address = BrokerAddress("127.0.0.1", broker_port)
        return collect_retained(address, f"{prefix}/#", settle_s=0.5)

    before = retained()
    chunks = {topic for topic in before if "/blob/" in topic}
    assert len(chunks) > 3 and f"{prefix}/fleet/kitchen/update" in before

    first = run_cli("model", "unpush", "--fleet", "kitchen", "--settle", "0.5", *broker)
    assert first.returncode == 0, first.stderr
    assert f"0 chunk topics; kept {len(chunks)}" in first.stdout
    assert set(retained()) == set(before) - {f"{prefix}/fleet/kitchen/update"}

    second = run_cli("model", "unpush", "--device", "pi-9", "--settle", "0.5", *broker)
    assert second.returncode == 0, second.stderr
    assert f"{len(chunks)} chunk topics; kept 0" in second.stdout
    assert retained() == {}

    again = run_cli("model", "unpush", "--device", "pi-9", "--settle", "0.5", *broker)
    assert again.returncode == 1
    assert f"no update is retained on {prefix}/device/pi-9/update" in again.stderr

    # something that is no update (a stray manual publish) can be cleared as well
    stray = f"{prefix}/device/pi-10/update"
    publish_messages(BrokerAddress("127.0.0.1", broker_port), [(stray, b"not json", True)])
    cleared = run_cli("model", "unpush", "--device", "pi-10", "--settle", "0.5", *broker)
    assert cleared.returncode == 0, cleared.stderr
    assert "cleared an unreadable update" in cleared.stdout
    assert retained() == {}
