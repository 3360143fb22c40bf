"""systemd notifications (READY=1, STOPPING=1, WATCHDOG=1, STATUS=...) without a dependency.

The protocol is one datagram per notification to the AF_UNIX socket named by
$NOTIFY_SOCKET (a leading `@` means the abstract namespace). Outside systemd the variable
is unset and every call is a no-op. Sending never raises: a daemon must not die because
its supervisor went away, and never blocks: it must not hang because its supervisor stopped
reading either.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Final

NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get(NOTIFY_SOCKET_ENV, "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None
        self.watchdog_interval_s = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        return self._send("READY=1", status)

    def stopping(self, status: str | None = None) -> bool:
        return self._send("STOPPING=1", status)

    def watchdog(self) -> bool:
        return self._send("WATCHDOG=1", None)

    def status(self, status: str) -> bool:
        return self._send(None, status)

    def _send(self, state: str | None, status: str | None) -> bool:
        if self._address is None:
            return False
        lines = [line for line in (state, _status_line(status)) if line]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Non-blocking: a supervisor that stops reading must not freeze the agent's
                # main loop; a full queue drops this notification (EAGAIN is an OSError).
                sock.sendto("\n".join(lines).encode("utf-8"), socket.MSG_DONTWAIT, self._address)
        except OSError:
            return False
        return True


def _status_line(status: str | None) -> str | None:
    if status is None:
        return None
    return "STATUS=" + status.replace("\n", " ")


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of WatchdogSec (systemd's own advice), or None when no watchdog is set for us."""
    usec = env.get(WATCHDOG_USEC_ENV)
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get(WATCHDOG_PID_ENV)
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1_000_000 / 2
