"""What the kernel says about a process under /proc (Linux): memory figures, thread states."""

from __future__ import annotations

from pathlib import Path


def status_kib(pid: int, field: str) -> int:
    """A kB figure from /proc/<pid>/status, e.g. VmRSS (resident) or VmHWM (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def thread_states(pid: int) -> list[str]:
    """The one-letter state of each thread (T: stopped by a signal, t: by a tracer)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue  # the thread ended while we looked: it runs no more
        states.append(stat.rpartition(")")[2].split()[0])  # after the parenthesised name
    return states
