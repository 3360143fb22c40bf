"""The systemd watchdog contract, end to end: the real agent, a real AF_UNIX datagram socket
as $NOTIFY_SOCKET (what systemd hands a Type=notify service) and WATCHDOG_USEC set.

READY=1 arrives, WATCHDOG=1 pings keep coming while the agent idles, they stop while the
process is frozen (SIGSTOP: what a hung process looks like from outside, so systemd's
WatchdogSec would fire), resume after SIGCONT, and STOPPING=1 comes on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

agent_process = pytest.importorskip(
    "tests.support.agent_process", reason="pending: needs the daemon (issue 'Agent core')"
)
broker_support = pytest.importorskip("tests.support.broker")
tiny_bundle = pytest.importorskip("tests.support.bundles")

WATCHDOG_USEC = 400_000  # the agent pings every 0.2 s
WINDOW_S = 2.0  # ten intervals


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    folder = tempfile.mkdtemp(prefix="ea-notify-")
    path = os.path.join(folder, "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        yield server, path
    shutil.rmtree(folder)


def _collect(server: socket.socket, seconds: float) -> list[str]:
    """Every datagram that arrives within `seconds`."""
    received: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        server.settimeout(left)
        try:
            received.append(server.recv(4096).decode())
        except TimeoutError:
            break
    return received


def _wait_for(server: socket.socket, prefix: str, timeout_s: float) -> list[str]:
    received: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not any(message.startswith(prefix) for message in received):
        left = deadline - time.monotonic()
        assert left > 0, f"no {prefix} within {timeout_s}s; got {received}"
        received += _collect(server, min(left, 0.5))
    return received


def test_watchdog_pings_stop_while_the_agent_is_frozen(
    notify_socket: tuple[socket.socket, str], tmp_path: Path
) -> None:
    server, path = notify_socket
    broker = broker_support.Broker(tmp_path / "broker").start()
    models = tmp_path / "models"
    tiny_bundle.build_tiny_bundle(models, name="tiny")
    config = agent_process.write_config(
        tmp_path / "agent.yaml", broker_port=broker.port, models_dir=models, client_id="wd"
    )
    agent = agent_process.AgentProcess(config, tmp_path / "agent.log")
    agent.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        _wait_for(server, "READY=1", timeout_s=60)

        healthy = _collect(server, WINDOW_S)
        assert healthy.count("WATCHDOG=1") >= 5, healthy

        pid = agent.process.pid
        os.kill(pid, signal.SIGSTOP)
        _collect(server, 0.3)  # pings sent just before the stop, still in the socket
        frozen = _collect(server, WINDOW_S)
        assert "WATCHDOG=1" not in frozen, frozen  # systemd's WatchdogSec would now fire

        os.kill(pid, signal.SIGCONT)
        resumed = _collect(server, WINDOW_S)
        assert resumed.count("WATCHDOG=1") >= 5, resumed

        agent.process.send_signal(signal.SIGTERM)
        assert any(m.startswith("STOPPING=1") for m in _wait_for(server, "STOPPING=1", 20))
        assert agent.process.wait(timeout=30) == 0, agent.log_tail()
    finally:
        if agent.process is not None and agent.process.poll() is None:
            os.kill(agent.process.pid, signal.SIGCONT)
            agent.kill()
        broker.kill()
