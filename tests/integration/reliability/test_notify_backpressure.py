"""systemd notifications must never block the agent: a supervisor that stops reading its
NOTIFY_SOCKET (hung, or busy) fills the datagram queue, and a blocking sendto() would then
freeze the agent's main loop (watchdog, stats, shutdown). Found by bench/e2e_bench.py,
whose listener stopped reading after READY=1: SIGTERM took 30 s instead of 0.5 s."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from edge_agent.telemetry.sd_notify import Notifier


def test_status_updates_do_not_block_when_the_supervisor_stops_reading(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as supervisor:
        supervisor.bind(path)  # bound, never read
        notifier = Notifier({"NOTIFY_SOCKET": path})
        results: list[bool] = []

        def chatter() -> None:
            for number in range(5000):
                results.append(notifier.status(f"connected, {number} results"))

        thread = threading.Thread(target=chatter, daemon=True)
        thread.start()
        thread.join(5)
        assert not thread.is_alive(), "sd_notify blocked on a full NOTIFY_SOCKET queue"
        assert results[0] is True and results[-1] is False  # dropped once the queue is full
