"""Watch the models directory by polling `stat`: one swap request per change, no loops.

Why polling: inotify is Linux-only, needs care with renames and overlay filesystems, and a
models directory changes a few times a year. A poll is one `scandir` plus one `stat` per
version folder and one `readlink`: a few dozen syscalls a second, nothing on a Pi.

Which bundle should be active is the bundle format's rule (edge_agent.bundle.versions); the
watcher remembers what is loaded, pending and failed around it. The model store loads,
validates and swaps off the hot path, then tells the watcher how it went (`mark_loaded` /
`mark_failed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_agent.bundle.versions import BundleRef, Stamp, choose_bundle, scan_model


@dataclass(frozen=True)
class SwapRequest:
    """Load and validate `bundle`, then swap it in for `previous` (None: nothing loaded)."""

    bundle: BundleRef
    previous: BundleRef | None


class ModelWatcher:
    """Stateful edge around `scan_model`/`choose_bundle`: one request per change, no loops."""

    def __init__(
        self,
        models_dir: Path,
        names: Iterable[str],
        failed: Mapping[tuple[Path, Stamp], str] | None = None,
    ) -> None:
        """`failed`: bundles refused before (a previous run's, kept on disk)."""
        self._models_dir = models_dir
        self._names = tuple(names)
        self._loaded: dict[str, BundleRef] = {}
        self._pending: dict[str, BundleRef] = {}
        self._failed: dict[tuple[Path, Stamp], str] = dict(failed or {})

    def poll(self) -> list[SwapRequest]:
        requests = []
        for name in self._names:
            if name in self._pending:
                continue  # one load at a time per model
            snapshot = scan_model(self._models_dir, name)
            loaded = self._loaded.get(name)
            chosen = choose_bundle(snapshot, set(self._failed), loaded)
            if chosen is None or chosen == loaded:
                continue
            self._pending[name] = chosen
            requests.append(SwapRequest(chosen, loaded))
        return requests

    def mark_loaded(self, bundle: BundleRef) -> None:
        self._pending.pop(bundle.name, None)
        self._loaded[bundle.name] = bundle

    def mark_failed(self, bundle: BundleRef, reason: str) -> None:
        self._pending.pop(bundle.name, None)
        self._failed[(bundle.path, bundle.stamp)] = reason

    def failure(self, bundle: BundleRef) -> str | None:
        return self._failed.get((bundle.path, bundle.stamp))

    def loaded(self, name: str) -> BundleRef | None:
        return self._loaded.get(name)
