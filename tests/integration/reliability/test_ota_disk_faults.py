"""OTA against a failing or full disk, through the real agent: a delivery whose write fails is
still acknowledged (acknowledgements go out in arrival order, so one held back stalled every
later one, inference included, once Receive Maximum deliveries were waiting), and an update
that would not fit is refused before a byte is staged (as `failed`, not final: it is tried
again on its next delivery)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.bundle.signer import Signer, sign_bundle
from tests.integration.models.test_ota_through_the_agent import _push_cli, _report_topic
from tests.support.agent_process import Agent, AgentFactory
from tests.support.broker import Broker
from tests.support.bundles import SwapBundles, install
from tests.support.keys import Operator
from tests.support.mqtt_client import TestClient


def _start(
    tmp_path: Path,
    *,
    bundles: SwapBundles,
    operator: Operator,
    start_agent: AgentFactory,
    state_dir: Path,
    name: str,
) -> Agent:
    models = tmp_path / "models"
    signer = Signer.from_file(operator.private_key)
    install(bundles.v1, models, tamper=lambda bundle: sign_bundle(bundle, signer))
    return start_agent(
        models,
        client_id=name,
        state_dir=str(state_dir),
        broker={"receive_maximum": 2},
        models={"trusted_keys": [str(operator.public_key)]},
        ota={"enabled": True, "fleet": "kitchen"},
    )


def _labels_all(client: TestClient, agent: Agent, count: int) -> None:
    """`count` messages, more than Receive Maximum, each answered."""
    for number in range(count):
        client.publish(agent.input_topic(), json.dumps({"id": f"n{number}", "text": "hello"}))
    client.wait_for(count, topic_prefix=agent.results_prefix(), timeout_s=30)


def test_an_ota_write_that_fails_is_acknowledged_and_inference_goes_on(
    tmp_path: Path,
    *,
    bundles: SwapBundles,
    operator: Operator,
    broker: Broker,
    client: TestClient,
    start_agent: AgentFactory,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "ota").write_text("a file where the OTA folder should be")  # every write fails
    agent = _start(
        tmp_path, bundles=bundles, operator=operator, start_agent=start_agent,
        state_dir=state, name="diskerr",
    )  # fmt: skip
    _push_cli(broker, bundles.v2, operator.private_key, agent.client_id)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(line["event"] == "ota_io_failed" for line in agent.process.log_lines()):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no ota_io_failed:\n{agent.process.log_tail()}")
    _labels_all(client, agent, 10)  # with receive_maximum 2: a held-back ack stalls this
    assert agent.process.process is not None and agent.process.process.poll() is None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: smaller than any update needs (twice its size plus 16 MiB)."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_an_update_that_would_not_fit_is_refused_up_front(
    tmp_path: Path,
    *,
    bundles: SwapBundles,
    operator: Operator,
    broker: Broker,
    client: TestClient,
    start_agent: AgentFactory,
    small_disk: Path,
) -> None:
    agent = _start(
        tmp_path, bundles=bundles, operator=operator, start_agent=start_agent,
        state_dir=small_disk, name="fulldisk",
    )  # fmt: skip
    client.subscribe(_report_topic(agent))
    _push_cli(broker, bundles.v2, operator.private_key, agent.client_id)
    deadline = time.monotonic() + 20
    reports: list[dict[str, object]] = []
    while time.monotonic() < deadline and not any(r["state"] == "failed" for r in reports):
        reports = [m.json() for m in client.messages(_report_topic(agent))]
        time.sleep(0.1)
    failed = [r for r in reports if r["state"] == "failed"]  # not final: space may be freed
    assert failed and "not enough free space" in str(failed[0]["reason"]), reports
    staged = sum(p.stat().st_size for p in (small_disk / "ota").rglob("*") if p.is_file())
    assert staged < bundles.v2.joinpath("model.onnx").stat().st_size  # records, no chunks
    _labels_all(client, agent, 5)
