"""Watch the models directory by polling `stat`, and decide which bundle each model should run.

Why polling: inotify is Linux-only, needs care with renames and overlay filesystems, and a
models directory changes a few times a year. A poll is one `scandir` plus one `stat` per
version folder and one `readlink`: a few dozen syscalls a second, nothing on a Pi.

Convention (docs/design.md): `<models_dir>/<name>/<version>/manifest.json`; the active version
is the target of the `<name>/current` symlink when there is one, else the highest version.
Dot-folders are staging and ignored. A bundle is identified by its folder and the stat of its
manifest, so a bundle that failed is not retried until something about it changes on disk.

The watcher decides; the model store loads, validates and swaps off the hot path, then tells
the watcher how it went (`mark_loaded` / `mark_failed`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.bundle import manifest as bundle

MANIFEST_FILE: Final = "manifest.json"
CURRENT_LINK: Final = "current"

Version = tuple[int, int, int]
# (folder inode, manifest inode, manifest mtime_ns, manifest size): a rename into place or an
# edit in place changes it; nothing else does.
Stamp = tuple[int, int, int, int]


def version_key(text: str) -> Version | None:
    """The bundle format's version sort key, or None for folders that are not versions."""
    try:
        return bundle.version_key(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class BundleRef:
    name: str
    version: str
    path: Path
    stamp: Stamp


@dataclass(frozen=True)
class ModelSnapshot:
    name: str
    versions: tuple[BundleRef, ...]  # highest version first
    current: str | None  # what the `current` symlink names, if it exists


@dataclass(frozen=True)
class SwapRequest:
    """Load and validate `bundle`, then swap it in for `previous` (None: nothing loaded)."""

    bundle: BundleRef
    previous: BundleRef | None


def scan_model(models_dir: Path, name: str) -> ModelSnapshot:
    model_dir = models_dir / name
    refs: list[tuple[Version, BundleRef]] = []
    try:
        entries = list(os.scandir(model_dir))
    except (FileNotFoundError, NotADirectoryError):
        return ModelSnapshot(name, (), None)
    for entry in entries:
        version = version_key(entry.name)
        if version is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            folder = entry.stat(follow_symlinks=False)
            manifest = os.stat(os.path.join(entry.path, MANIFEST_FILE))
        except FileNotFoundError:
            continue  # a folder still being written by a careless installer
        stamp = (folder.st_ino, manifest.st_ino, manifest.st_mtime_ns, manifest.st_size)
        refs.append((version, BundleRef(name, entry.name, Path(entry.path), stamp)))
    refs.sort(key=lambda pair: pair[0], reverse=True)
    try:
        current: str | None = os.path.basename(os.readlink(model_dir / CURRENT_LINK).rstrip("/"))
    except (FileNotFoundError, OSError):
        current = None
    return ModelSnapshot(name, tuple(ref for _, ref in refs), current)


def highest_installed_version(models_dir: Path, name: str) -> Version | None:
    """The rollback floor for OTA: the highest version folder holding a manifest."""
    versions = scan_model(models_dir, name).versions
    return version_key(versions[0].version) if versions else None


def choose_bundle(
    snapshot: ModelSnapshot, failed: set[tuple[Path, Stamp]], loaded: BundleRef | None
) -> BundleRef | None:
    """The bundle that should be active: None when nothing loadable is there.

    With a `current` link the operator chose a version: if it failed (or is missing), keep the
    loaded one rather than guess. With nothing loaded yet (start-up) or no link, fall back to
    the highest version that has not failed, so a broken drop never leaves a model dark.
    """
    by_version = {ref.version: ref for ref in snapshot.versions}
    usable = [ref for ref in snapshot.versions if (ref.path, ref.stamp) not in failed]
    if snapshot.current is not None:
        chosen = by_version.get(snapshot.current)
        if chosen is not None and (chosen.path, chosen.stamp) not in failed:
            return chosen
        if loaded is not None:
            return loaded
    return usable[0] if usable else None


class ModelWatcher:
    """Stateful edge around `scan_model`/`choose_bundle`: one request per change, no loops."""

    def __init__(self, models_dir: Path, names: Iterable[str]) -> None:
        self._models_dir = models_dir
        self._names = tuple(names)
        self._loaded: dict[str, BundleRef] = {}
        self._pending: dict[str, BundleRef] = {}
        self._failed: dict[tuple[Path, Stamp], str] = {}

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
