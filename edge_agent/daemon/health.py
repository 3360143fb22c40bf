"""The watchdog's question: are the worker and the network thread alive *and* progressing?

Pure: the service passes in what it observed; systemd's WATCHDOG=1 is sent only while both
are healthy, so a stuck batch or a network thread that stopped looping restarts the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# A batch taking longer than this is stuck (a Pi labels a full batch in well under a
# second); the watchdog pings stop and systemd restarts the agent.
WORKER_STALL_S: Final = 30.0


@dataclass(frozen=True)
class Health:
    worker: bool
    network: bool

    @property
    def ok(self) -> bool:
        return self.worker and self.network


def assess_health(
    now: float,
    *,
    worker_alive: bool,
    worker_beat: float,
    batch_started: float | None,
    network_alive: bool,
    network_beat: float,
    network_stall_s: float,
) -> Health:
    """Alive *and* progressing. An idle worker still beats every WORKER_POLL_S and an idle
    connection still sees PINGREQ/PINGRESP every keepalive, so only a stuck batch, a dead
    thread or a network thread that stopped looping fail this."""
    worker = (
        worker_alive
        and now - worker_beat < WORKER_STALL_S
        and (batch_started is None or now - batch_started < WORKER_STALL_S)
    )
    network = network_alive and now - network_beat < network_stall_s
    return Health(worker=worker, network=network)
