"""A private mosquitto for a test: free port, config from tests/mosquitto.conf, persistence
on in its own folder. Stop (SIGTERM: saves persistence), kill (SIGKILL) and restart on the
same port and data folder are what the reliability tests need."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

CONFIG_TEMPLATE: Final = Path(__file__).resolve().parent.parent / "mosquitto.conf"
START_TIMEOUT_S: Final = 10.0


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    data_dir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    autosave_interval: int = 1
    allow_anonymous: bool = True  # False (with no password file) refuses every CONNECT
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "mosquitto.conf"
        config.write_text(
            CONFIG_TEMPLATE.read_text().format(
                port=self.port,
                data_dir=self.data_dir,
                autosave_interval=self.autosave_interval,
                user=getpass.getuser(),
                allow_anonymous="true" if self.allow_anonymous else "false",
            )
        )
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.data_dir / "mosquitto.log"
                detail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"mosquitto did not start on port {self.port}: {detail}")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, sig)
        self.process.wait(timeout_s)
        # Wait until the port is really free so a restart can bind it again.
        deadline = time.monotonic() + timeout_s
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> Broker:
        self.stop()
        return self.start()
