"""Which version of a model is active: the one resolver, for the daemon and the CLI alike.

Convention (docs/bundle-format.md): `<models_dir>/<name>/<version>/manifest.json`. The
active version is the target of the `<name>/current` symlink when there is one, else the
highest semantic version. Dot-folders are staging and ignored. A bundle is identified by
its folder and the stat of its manifest, so a bundle that failed to load is not tried again
until something about it changes on disk.

Pure decisions over a `scan_model` snapshot; the stateful watch around them is
`edge_agent.models.watch`.
"""

from __future__ import annotations

import os
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

from edge_agent.bundle.layout import CURRENT_LINK, MANIFEST_FILE, BundleError
from edge_agent.bundle.manifest import load_manifest
from edge_agent.bundle.manifest import version_key as strict_version_key
from edge_agent.bundle.verify import check_sizes

Version = tuple[int, int, int]
# (folder inode, manifest inode, manifest mtime_ns, manifest size): a rename into place or an
# edit in place changes it; nothing else does.
Stamp = tuple[int, int, int, int]


def version_key(text: str) -> Version | None:
    """The bundle format's version sort key, or None for folders that are not versions."""
    try:
        return strict_version_key(text)
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


def scan_model(models_dir: Path, name: str) -> ModelSnapshot:
    """One `scandir` of the model's folder, one `stat` per version, one `readlink`: cheap
    enough to poll every second on a Pi (why polling: edge_agent/models/watch.py)."""
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
    except OSError:
        current = None
    return ModelSnapshot(name, tuple(ref for _, ref in refs), current)


def highest_installed_version(models_dir: Path, name: str) -> Version | None:
    """The rollback floor for OTA: the highest version that is plausibly a bundle (its
    manifest parses, names this model and version, and every file it lists is there with
    its size). A stray `99.0.0/manifest.json` alone must not freeze every later update."""
    for ref in scan_model(models_dir, name).versions:
        if _plausible(ref):
            return version_key(ref.version)
    return None


def _plausible(ref: BundleRef) -> bool:
    """Cheap checks only (no hashing): loading does the rest."""
    try:
        manifest = load_manifest(ref.path)
    except BundleError:
        return False
    if (manifest.name, manifest.version) != (ref.name, ref.version):
        return False
    try:
        check_sizes(ref.path, manifest)
    except BundleError:
        return False
    return True


def choose_bundle(
    snapshot: ModelSnapshot,
    failed: Set[tuple[Path, Stamp]] = frozenset(),
    loaded: BundleRef | None = None,
) -> BundleRef | None:
    """The bundle that should be active: None when nothing loadable is there.

    With a `current` link the operator chose a version: if it failed (or is missing), keep the
    loaded one rather than guess. With nothing loaded yet (start-up, or the CLI) or no link,
    fall back to the highest version that has not failed, so a broken drop never leaves a
    model dark.
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


def resolve_bundle(models_dir: Path, name: str) -> Path:
    """The folder the daemon would serve model `name` from (CLI: `classify --model`)."""
    chosen = choose_bundle(scan_model(models_dir, name))
    if chosen is not None:
        return chosen.path
    model_dir = models_dir / name
    if not model_dir.is_dir():
        raise BundleError(f"{model_dir}: no such model folder")
    raise BundleError(f"{model_dir}: no version folder with a {MANIFEST_FILE}")
