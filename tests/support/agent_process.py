"""The real agent as a subprocess: `python -m edge_agent run --config ...`.

Ready means the agent's retained status topic says online (seen by a real MQTT client).
Its stdout (JSON log lines) is kept in a file so a failing test can show it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.mqtt_client import Received, TestClient
from tests.support.proc import thread_states

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *argv: str, stdin: str | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m edge_agent ARGV...` from the repository root, as a user would run it."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *argv],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        cwd=REPO_ROOT,
    )


def write_config(
    path: Path, *, broker_port: int, models_dir: Path, client_id: str, **overrides: Any
) -> Path:
    """An agent config for tests: fast stats, short timeouts, JSON logs."""
    config: dict[str, Any] = {
        "broker": {
            "host": "127.0.0.1",
            "port": broker_port,
            "client_id": client_id,
            "keepalive_s": 5,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 1.0,
        },
        "routes": [{"subscribe": f"{client_id}/in/+", "model": "tiny", "publish": "{topic}/label"}],
        "models": {"dir": str(models_dir), "threads": 1},
        "state_dir": str(path.parent / f"state-{client_id}"),
        "stats_interval_s": 1,
        "shutdown_timeout_s": 5,
        "logging": {"format": "json", "level": "info"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config))
    return path


class AgentProcess:
    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> AgentProcess:
        environ = dict(os.environ)
        environ["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
        environ.update(env or {})
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
                cwd=REPO_ROOT,
            )
        return self

    def wait_online(self, client: TestClient, status_topic: str, timeout_s: float = 30.0) -> None:
        """Until a retained-or-live `online` status arrives after this start."""
        deadline = time.monotonic() + timeout_s
        seen = len(client.messages(status_topic))
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"agent exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            for message in client.messages(status_topic)[seen:]:
                if (
                    message.topic == status_topic
                    and json.loads(message.payload).get("state") == "online"
                ):
                    return
            time.sleep(0.05)
        raise AssertionError(f"agent not online within {timeout_s}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"agent did not exit within {timeout_s}s:\n{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def freeze(self, timeout_s: float = 5.0) -> None:
        """SIGSTOP, returning only once every thread has stopped.

        The signal is delivered asynchronously: a thread already running on another core
        keeps going (and may write files) until the kernel gets round to stopping it, so
        what a test reads straight after the send is not yet a frozen state.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout_s
        while not all(state in {"T", "t"} for state in thread_states(self.process.pid)):
            assert time.monotonic() < deadline, "agent threads did not stop"
            time.sleep(0.001)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"event": "(not json)", "line": line})
        return lines

    def log_tail(self, count: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])


@dataclass
class Agent:
    process: AgentProcess
    client_id: str
    models_dir: Path
    config: Path

    @property
    def status_topic(self) -> str:
        return f"edge-agent/{self.client_id}/status"

    @property
    def events_topic(self) -> str:
        return self.status_topic + "/events"

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def input_topic(self, leaf: str = "s1") -> str:
        return f"{self.client_id}/in/{leaf}"

    def results_prefix(self) -> str:
        return f"{self.client_id}/in/"


# The agent fixtures of the integration folders, by what they return:
AgentFactory = Callable[..., Agent]  # models/: an Agent, online, its topics subscribed
StartAgent = Callable[..., tuple[AgentProcess, str]]  # agent/: online, with its client id
AgentMaker = Callable[..., AgentProcess]  # reliability/: started, not waited for


def events(client: TestClient, agent: Agent, name: str) -> list[dict[str, Any]]:
    found = [message.json() for message in client.messages(agent.events_topic)]
    return [event for event in found if event.get("event") == name]


def versions_of(results: list[Received]) -> list[str]:
    return [str(result.json()["model"]["version"]) for result in results]
