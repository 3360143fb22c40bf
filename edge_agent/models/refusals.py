"""Bundles refused, and loads in flight, kept on disk: a restart does not try them again.

Without it a bundle refused at hot-swap was remembered in memory only: after a reboot the
agent picked it again as the newest version. Worse, a bundle that crashes the process while
it loads (a fault inside onnxruntime is no Python exception) was retried on every restart,
a crash loop no `except` can stop. So a load is written down before it starts and crossed
out when it ends; one still written down at start-up is one the agent died loading.

A bundle is named by its folder and the stat of its manifest (bundle/versions.py), so a
refused bundle is tried again as soon as it changes on disk. The file is small JSON in the
state directory, replaced atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from edge_agent.bundle.versions import BundleRef, Stamp
from edge_agent.telemetry.logs import get_logger

FILE_NAME: Final = "refused-bundles.json"
IN_FLIGHT: Final = "(loading)"
DIED_LOADING: Final = (
    "the agent stopped while loading this bundle (a crash inside onnxruntime?); "
    "not tried again until it changes on disk"
)

log = get_logger(__name__)

Key = tuple[Path, Stamp]


class RefusalLog:
    def __init__(self, state_dir: Path) -> None:
        """Raises OSError when the state directory cannot be made."""
        state_dir.mkdir(parents=True, exist_ok=True)
        self._path = state_dir / FILE_NAME
        self._entries: dict[str, dict[str, object]] = {}
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            if isinstance(raw, dict):
                self._entries = {k: v for k, v in raw.items() if isinstance(v, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as error:  # a damaged file must not stop the agent
            log.warning("refusals_unreadable", path=str(self._path), error=repr(error))
        for entry in self._entries.values():
            if entry.get("reason") == IN_FLIGHT:
                entry["reason"] = DIED_LOADING
        self._save()

    def refused(self) -> dict[Key, str]:
        """Every bundle refused so far (or that the agent died loading), with the reason."""
        found: dict[Key, str] = {}
        for entry in self._entries.values():
            stamp = entry.get("stamp")
            if isinstance(stamp, list) and len(stamp) == 4:
                key = (Path(str(entry.get("path"))), (stamp[0], stamp[1], stamp[2], stamp[3]))
                found[key] = str(entry.get("reason"))
        return found

    def loading(self, ref: BundleRef) -> None:
        self._set(ref, IN_FLIGHT)

    def loaded(self, ref: BundleRef) -> None:
        if self._entries.pop(self._key(ref), None) is not None:
            self._save()

    def refuse(self, ref: BundleRef, reason: str) -> None:
        self._set(ref, reason)

    def _set(self, ref: BundleRef, reason: str) -> None:
        self._entries[self._key(ref)] = {
            "path": str(ref.path),
            "stamp": list(ref.stamp),
            "version": ref.version,
            "reason": reason[:2000],
        }
        self._save()

    @staticmethod
    def _key(ref: BundleRef) -> str:
        return f"{ref.path}|{','.join(map(str, ref.stamp))}"

    def _save(self) -> None:
        temporary = self._path.with_name(f".{FILE_NAME}.tmp")
        try:
            temporary.write_text(json.dumps(self._entries, indent=1), encoding="utf-8")
            os.replace(temporary, self._path)
        except OSError as error:  # a full disk costs the memory across restarts, not a model
            log.error("refusals_unsaved", path=str(self._path), error=repr(error))
