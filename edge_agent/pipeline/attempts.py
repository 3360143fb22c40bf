"""Persistent attempt counter: how one poison message is kept from crash-looping a device.

A message that kills the process is redelivered by the broker after the restart (that is
what at-least-once means), kills it again, and so on. To break the loop the agent counts,
on disk and *before* processing, how many runs started a message without finishing it.
When the count reaches `limits.max_attempts` the message is dead-lettered and acknowledged
instead of processed.

Messages are keyed by a hash of topic + payload (the broker assigns new packet ids on
redelivery after a reconnect, so ids cannot be the key). Identical messages in flight at
the same time share one count per run, so a sensor repeating "OK" is not mistaken for a
crash loop.

The journal is append-only `<key> <count>` lines, last one wins, compacted when it grows.
Lines are written with write() but not fsync'd: a process crash (what we defend against)
keeps what the kernel has; fsync per batch would wear an SD card for no gain.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Final, TextIO

JOURNAL_NAME: Final = "attempts.log"
MAX_ENTRIES: Final = 10_000  # messages that never finish (session expired) must not grow it forever
COMPACT_SLACK: Final = 1_000


def message_key(topic: str, payload: bytes) -> str:
    digest = hashlib.sha256(topic.encode("utf-8", errors="surrogatepass"))
    digest.update(b"\x00")
    digest.update(payload)
    return digest.hexdigest()[:32]


class AttemptLog:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self._path = state_dir / JOURNAL_NAME
        self._lock = threading.Lock()
        self._counts: dict[str, int] = _replay(self._path)
        self._in_flight: Counter[str] = Counter()
        self._journal: TextIO = self._rewrite()

    def begin(self, key: str) -> int:
        """Record that processing starts; returns how many earlier attempts did not finish."""
        return self.begin_all([key])[0]

    def begin_all(self, keys: list[str]) -> list[int]:
        """`begin` for a batch, with one write to the journal for all of them."""
        with self._lock:
            previous = []
            for key in keys:
                if self._in_flight[key] == 0:
                    self._set(key, self._counts.get(key, 0) + 1)
                self._in_flight[key] += 1
                previous.append(self._counts[key] - 1)
            self._journal.flush()
            return previous

    def failed(self, key: str) -> int:
        """Processing raised (without crashing): count one more attempt; returns the total."""
        with self._lock:
            self._set(key, self._counts.get(key, 0) + 1)
            self._journal.flush()
            return self._counts[key]

    def finish(self, key: str) -> None:
        """The message is done (its result, error or dead letter acknowledged): forget it."""
        self.finish_all([key])

    def finish_all(self, keys: list[str]) -> None:
        """`finish` for a batch, with one write to the journal for all of them."""
        with self._lock:
            for key in keys:
                self._in_flight[key] -= 1
                if self._in_flight[key] > 0:
                    continue
                del self._in_flight[key]
                if key in self._counts:
                    del self._counts[key]
                    self._journal.write(f"{key} 0\n")
            self._journal.flush()

    def previous_attempts(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0) - (1 if self._in_flight[key] else 0)

    def close(self) -> None:
        with self._lock:
            self._journal.close()

    def _set(self, key: str, count: int) -> None:
        self._counts.pop(key, None)  # re-insert so dict order is "least recently touched"
        self._counts[key] = count
        if len(self._counts) > MAX_ENTRIES:
            oldest = next(iter(self._counts))
            del self._counts[oldest]
        self._journal.write(f"{key} {count}\n")  # the caller flushes
        self._lines += 1
        if self._lines > 2 * len(self._counts) + COMPACT_SLACK:
            self._journal.close()
            self._journal = self._rewrite()

    def _rewrite(self) -> TextIO:
        """Write the live counts to a fresh journal and atomically replace the old one."""
        temporary = self._path.with_name(JOURNAL_NAME + ".tmp")
        with temporary.open("w", encoding="ascii") as out:
            for key, count in self._counts.items():
                out.write(f"{key} {count}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self._path)
        self._lines = len(self._counts)
        return self._path.open("a", encoding="ascii")


def _replay(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="ascii", errors="replace").splitlines()
    except FileNotFoundError:
        return counts
    for line in lines:
        key, _, number = line.partition(" ")
        # A crash can leave a torn last line; anything malformed is skipped.
        if len(key) != 32 or not number.isdigit():
            continue
        count = int(number)
        counts.pop(key, None)
        if count > 0:
            counts[key] = count
    while len(counts) > MAX_ENTRIES:
        del counts[next(iter(counts))]
    return counts
