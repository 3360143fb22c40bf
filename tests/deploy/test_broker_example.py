"""The broker example in deploy/mosquitto/: TLS with client certificates, a password per
client, and ACLs that keep each device to its own topics. A real mosquitto runs the shipped
config (paths and port rewritten to a scratch folder) and the real mosquitto_pub/_sub
clients probe it."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.deploy import REPO

EXAMPLE = REPO / "deploy" / "mosquitto"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CLIENTS = ("pi-01", "pi-02", "app", "ops")

pytestmark = pytest.mark.skipif(
    not (
        os.access(MOSQUITTO, os.X_OK)
        and shutil.which("mosquitto_sub")
        and shutil.which("mosquitto_passwd")
        and shutil.which("openssl")
    ),
    reason="needs mosquitto, mosquitto-clients and openssl",
)


@dataclass(frozen=True)
class Broker:
    port: int
    certs: Path

    def client_args(
        self, user: str, *, password: str | None = None, cert: bool = True
    ) -> list[str]:
        args = [
            "-h",
            "localhost",
            "-p",
            str(self.port),
            "-V",
            "5",
            "--cafile",
            str(self.certs / "ca.crt"),
            "-u",
            user,
            "-P",
            password if password is not None else f"pw-{user}",
        ]
        if cert:
            args += [
                "--cert",
                str(self.certs / f"{user}.crt"),
                "--key",
                str(self.certs / f"{user}.key"),
            ]
        return args


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"mosquitto did not listen on {port}: {log.read_text()}")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    folder = tmp_path_factory.mktemp("broker")
    subprocess.run(
        [str(EXAMPLE / "make-test-certs.sh"), str(folder), "broker.test", *CLIENTS],
        check=True,
        capture_output=True,
    )
    shutil.copy2(EXAMPLE / "acl", folder / "acl")
    # The per-device line the ACL's comment asks for, as an operator adds it for pi-01.
    with (folder / "acl").open("a") as acl:
        acl.write("\nuser pi-01\ntopic read edge-agent/ota/blob/#\n")
    passwd = folder / "passwd"
    passwd.touch(mode=0o600)
    for user in CLIENTS:
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, f"pw-{user}"], check=True)
    port = _free_port()
    config = (EXAMPLE / "mosquitto.conf").read_text()
    config = config.replace("/etc/mosquitto/edge-agent/", f"{folder}/")
    config = config.replace("listener 8883", f"listener {port} 127.0.0.1")
    assert f"listener {port}" in config
    log = folder / "mosquitto.log"
    # As root, mosquitto would drop to the "mosquitto" user, who cannot read the scratch files.
    config += f"\nlog_dest file {log}\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"
    (folder / "mosquitto.conf").write_text(config)
    process = subprocess.Popen([MOSQUITTO, "-c", str(folder / "mosquitto.conf")])
    try:
        _wait_for_port(port, process, log)
        yield Broker(port=port, certs=folder)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert "Warning: ACL pattern" not in log.read_text(), "every pattern should be per-user"


class Subscriber:
    """mosquitto_sub that is known to be subscribed before anyone publishes."""

    def __init__(self, broker: Broker, user: str, *topics: str, count: int = 1) -> None:
        # stdbuf: mosquitto_sub block-buffers a pipe, and SUBACK must be seen before publishing
        args = [
            "stdbuf",
            "-oL",
            "mosquitto_sub",
            *broker.client_args(user),
            "-d",
            "-v",
            "-q",
            "1",
            "-C",
            str(count),
            "-W",
            "60",
        ]
        for topic in topics:
            args += ["-t", topic]
        self._process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self._process.stdout is not None
        self._lines: list[str] = []
        for line in self._process.stdout:
            self._lines.append(line)
            if "received SUBACK" in line:
                break
        else:
            raise AssertionError("".join(self._lines))

    def messages(self) -> list[str]:
        """The `topic payload` lines received (waits for -C messages or the -W timeout)."""
        out, _ = self._process.communicate(timeout=15)
        lines = self._lines + out.splitlines(keepends=True)
        return [ln.strip() for ln in lines if not ln.startswith(("Client ", " ", "Subscribed "))]


def _publish(
    broker: Broker,
    user: str,
    topic: str,
    payload: str,
    *,
    password: str | None = None,
    cert: bool = True,
) -> str:
    """mosquitto_pub's output and exit status, as `...rc=N` (refusals show up in both)."""
    done = subprocess.run(
        [
            "mosquitto_pub",
            *broker.client_args(user, password=password, cert=cert),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return f"{done.stdout}{done.stderr}rc={done.returncode}"


def test_device_reads_its_own_input_only(broker: Broker) -> None:
    device = Subscriber(broker, "pi-01", "devices/pi-02/text/+", "devices/pi-01/text/+")
    # Sent first, to the other device: if the ACL leaked, it would be the first one received.
    assert _publish(broker, "app", "devices/pi-02/text/chat", "for pi-02").endswith("rc=0")
    assert _publish(broker, "app", "devices/pi-01/text/chat", "for pi-01").endswith("rc=0")
    assert device.messages() == ["devices/pi-01/text/chat for pi-01"]


def test_device_writes_its_own_labels_and_status_only(broker: Broker) -> None:
    app = Subscriber(broker, "app", "devices/+/text/+/label")
    ops = Subscriber(broker, "ops", "edge-agent/#")
    forged = _publish(broker, "pi-01", "devices/pi-02/text/chat/label", '{"label": "forged"}')
    assert "Not authorized" in forged
    into_input = _publish(broker, "pi-01", "devices/pi-01/text/chat", "loop")
    assert "Not authorized" in into_input
    status = _publish(broker, "pi-01", "edge-agent/pi-01/status", '{"state": "online"}')
    assert status.endswith("rc=0") and "Not authorized" not in status
    label = _publish(broker, "pi-01", "devices/pi-01/text/chat/label", '{"label": "ok"}')
    assert label.endswith("rc=0") and "Not authorized" not in label
    assert app.messages() == ['devices/pi-01/text/chat/label {"label": "ok"}']
    assert ops.messages() == ['edge-agent/pi-01/status {"state": "online"}']


def test_device_cannot_read_other_results(broker: Broker) -> None:
    device = Subscriber(broker, "pi-01", "devices/+/text/+/label", "devices/pi-01/text/+")
    _publish(broker, "pi-02", "devices/pi-02/text/chat/label", "pi-02 result")
    _publish(broker, "app", "devices/pi-01/text/chat", "marker")
    assert device.messages() == ["devices/pi-01/text/chat marker"]


def test_wrong_password_is_refused(broker: Broker) -> None:
    assert (
        "not authorized"
        in _publish(broker, "pi-01", "devices/pi-01/text/a/label", "x", password="wrong").lower()
    )


def test_client_without_certificate_is_refused(broker: Broker) -> None:
    output = _publish(broker, "pi-01", "devices/pi-01/text/a/label", "x", cert=False)
    assert not output.endswith("rc=0"), output


def test_agent_with_the_shipped_config_works_through_the_example_broker(
    broker: Broker, tmp_path: Path
) -> None:
    """deploy/edge-agent.yaml and the broker example fit together: the real agent logs in
    with client certificate + credential, announces itself, and labels a message, all
    within its ACLs. Only paths, host and port are rewritten to the scratch broker."""
    agent_process = pytest.importorskip(
        "tests.support.agent_process", reason="pending: needs the daemon (issue 'Agent core')"
    )
    tiny_bundle = pytest.importorskip("tests.support.bundles")
    etc, state = tmp_path / "etc", tmp_path / "state"
    (etc / "tls").mkdir(parents=True)
    shutil.copy2(broker.certs / "ca.crt", etc / "tls/ca.crt")
    shutil.copy2(broker.certs / "pi-01.crt", etc / "tls/device.crt")
    shutil.copy2(broker.certs / "pi-01.key", etc / "tls/device.key")
    credentials = tmp_path / "credentials"  # what LoadCredential= makes under systemd
    credentials.mkdir()
    (credentials / "broker-password").write_text("pw-pi-01")
    tiny_bundle.build_tiny_bundle(state / "models", name="sentiment")
    config = (REPO / "deploy" / "edge-agent.yaml").read_text()
    config = config.replace("DEVICE_ID", "pi-01").replace("broker.lan", "localhost")
    config = config.replace("port: 8883", f"port: {broker.port}")
    config = config.replace("/etc/edge-agent/", f"{etc}/").replace(
        "/var/lib/edge-agent/", f"{state}/"
    )
    (tmp_path / "edge-agent.yaml").write_text(config)

    ops = Subscriber(broker, "ops", "edge-agent/pi-01/status")
    labels = Subscriber(broker, "app", "devices/pi-01/text/+/label")
    agent = agent_process.AgentProcess(tmp_path / "edge-agent.yaml", tmp_path / "agent.log")
    agent.start(env={"CREDENTIALS_DIRECTORY": str(credentials)})
    try:
        status = ops.messages()
        assert len(status) == 1 and '"online"' in status[0], agent.log_tail()
        sent = _publish(broker, "app", "devices/pi-01/text/chat", '{"id": "m1", "text": "hello"}')
        assert sent.endswith("rc=0"), sent
        (line,) = labels.messages()
        topic, _, payload = line.partition(" ")
        assert topic == "devices/pi-01/text/chat/label"
        result = json.loads(payload)
        assert result["id"] == "m1" and result["model"]["name"] == "sentiment", result
        assert "not authorized" not in agent.log_path.read_text().lower()
    finally:
        assert agent.stop() == 0, agent.log_tail()


def test_control_requests_only_from_ops_and_answers_only_from_the_device(broker: Broker) -> None:
    device = Subscriber(broker, "pi-01", "edge-agent/pi-01/request/+")
    refused = _publish(broker, "app", "edge-agent/pi-01/request/info", '{"transaction": 1}')
    assert "Not authorized" in refused
    sent = _publish(broker, "ops", "edge-agent/pi-01/request/info", '{"transaction": 2}')
    assert sent.endswith("rc=0") and "Not authorized" not in sent
    assert device.messages() == ['edge-agent/pi-01/request/info {"transaction": 2}']
    answer = _publish(broker, "pi-01", "edge-agent/pi-01/response/info", "{}")
    assert answer.endswith("rc=0") and "Not authorized" not in answer
    assert "Not authorized" in _publish(broker, "pi-01", "edge-agent/pi-02/response/info", "{}")
    assert "Not authorized" in _publish(broker, "pi-01", "edge-agent/pi-02/request/info", "{}")


def test_device_writes_its_own_discovery_config_only(broker: Broker) -> None:
    own = _publish(broker, "pi-01", "homeassistant/device/edge_agent_pi-01/config", "{}")
    assert own.endswith("rc=0") and "Not authorized" not in own
    other = _publish(broker, "pi-01", "homeassistant/device/edge_agent_pi-02/config", "{}")
    assert "Not authorized" in other
    assert "Not authorized" in _publish(broker, "pi-01", "homeassistant/sensor/x/config", "{}")


def test_device_can_complete_an_ota_and_nothing_more(broker: Broker) -> None:
    """An update needs: the device's update topic (read), the chunk topics (read: the
    per-device line the ACL's comment gives, which the fixture adds for pi-01) and its own
    report topic (write). Before, the ACL granted neither the report nor, anywhere, the
    chunks, so an OTA could not complete."""
    device = Subscriber(
        broker, "pi-01", "edge-agent/ota/device/pi-01/update", "edge-agent/ota/blob/#", count=2
    )
    ops_view = Subscriber(broker, "ops", "edge-agent/ota/device/+/report")
    blob = "edge-agent/ota/blob/" + "a" * 64 + "/1024/0"
    assert _publish(broker, "ops", "edge-agent/ota/device/pi-01/update", "{}").endswith("rc=0")
    assert _publish(broker, "ops", blob, "chunk").endswith("rc=0")
    assert device.messages() == ["edge-agent/ota/device/pi-01/update {}", f"{blob} chunk"]
    report = _publish(broker, "pi-01", "edge-agent/ota/device/pi-01/report", '{"state": "ok"}')
    assert report.endswith("rc=0") and "Not authorized" not in report
    assert ops_view.messages() == ['edge-agent/ota/device/pi-01/report {"state": "ok"}']
    # and nothing more: no other device's report, no updates or chunks of its own making
    for topic in (
        "edge-agent/ota/device/pi-02/report",
        "edge-agent/ota/device/pi-01/update",
        blob,
        "edge-agent/ota/fleet/kitchen/update",
    ):
        assert "Not authorized" in _publish(broker, "pi-01", topic, "x"), topic
