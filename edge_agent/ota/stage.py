"""The filesystem side of an OTA update: staging, resumable chunk storage, atomic install.

Layout under `<state_dir>/ota/`:

    <update_id>/envelope.json        the signed envelope (re-verified on resume)
    <update_id>/bundle/<file>.part   chunks written at their offsets; holes until received
    outcomes/<update_id>.json        terminal result, so a retained manifest is not redone

Nothing is written outside `<state_dir>/ota/` until every file has passed its checks; then
`install_bundle` renames the verified folder into `<models_dir>/<name>/<version>`. Chunk
writes are not fsynced one by one: on resume each chunk slice is re-hashed against the
signed chunk list, so a chunk lost to a power cut is simply fetched again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Final

from edge_agent.bundle.layout import CURRENT_LINK
from edge_agent.bundle.onnx_scan import external_data_problem_in_file
from edge_agent.ota.manifest import FileSpec, UpdateManifest, UpdateRejectedError

ENVELOPE_FILE: Final = "envelope.json"
BUNDLE_DIR: Final = "bundle"
OUTCOMES_DIR: Final = "outcomes"
# Per model, the `created` time of the newest update installed: a signed downgrade created
# before it is a replay of an older decision (receiver._check_admissible).
NEWEST_CREATED_FILE: Final = "newest-created.json"
FREE_SPACE_MARGIN_BYTES: Final = 16 << 20  # what logs and journals keep needing meanwhile
PART_SUFFIX: Final = ".part"
READ_BLOCK: Final = 1 << 20


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class Staging:
    """One update's staging folder. Every path it touches is derived from validated names."""

    def __init__(self, root: Path, manifest: UpdateManifest) -> None:
        self.root = root
        self.manifest = manifest
        self.bundle_dir = root / BUNDLE_DIR
        self.fresh: set[str] = set()  # .part files created empty just now: nothing to re-hash

    @classmethod
    def create(cls, ota_dir: Path, manifest: UpdateManifest, envelope: bytes) -> Staging:
        staging = cls(ota_dir / manifest.update_id, manifest)
        staging.bundle_dir.mkdir(parents=True, exist_ok=True)
        for spec in manifest.files.values():
            part = staging.part_path(spec)
            if not part.exists():
                with open(part, "wb") as handle:
                    handle.truncate(spec.size)  # sparse; never larger than announced
                staging.fresh.add(spec.name)
        write_atomic(staging.root / ENVELOPE_FILE, envelope)
        return staging

    def part_path(self, spec: FileSpec) -> Path:
        return self.bundle_dir / (spec.name + PART_SUFFIX)

    def valid_chunks(self, spec: FileSpec) -> set[int]:
        """Which chunks the .part file already holds, judged by the signed chunk hashes."""
        if spec.name in self.fresh:
            return set()
        part = self.part_path(spec)
        if not part.is_file() or part.stat().st_size != spec.size:
            with open(part, "wb") as handle:
                handle.truncate(spec.size)
            return set()
        valid = set()
        chunk_size = self.manifest.chunk_size
        with open(part, "rb") as handle:
            for index, expected in enumerate(spec.chunk_sha256):
                data = handle.read(spec.chunk_length(index, chunk_size))
                if hashlib.sha256(data).hexdigest() == expected:
                    valid.add(index)
        return valid

    def write_chunk(self, spec: FileSpec, index: int, data: bytes) -> None:
        fd = os.open(self.part_path(spec), os.O_WRONLY)
        try:
            os.pwrite(fd, data, index * self.manifest.chunk_size)
        finally:
            os.close(fd)

    def verify_file(self, spec: FileSpec) -> None:
        """Whole-file size and sha256 against the signed manifest, then fsync."""
        digest = hashlib.sha256()
        size = 0
        with open(self.part_path(spec), "rb") as handle:
            while block := handle.read(READ_BLOCK):
                size += len(block)
                if size > spec.size:
                    raise UpdateRejectedError(f"oversize: {spec.name} is over {spec.size} bytes")
                digest.update(block)
            os.fsync(handle.fileno())
        if size != spec.size:
            raise UpdateRejectedError(f"{spec.name}: {size} bytes, manifest says {spec.size}")
        if digest.hexdigest() != spec.sha256:
            raise UpdateRejectedError(
                f"hash mismatch: {spec.name} sha256 differs from the manifest"
            )

    def read_file(self, spec: FileSpec) -> bytes:
        return self.part_path(spec).read_bytes()

    def scan_onnx(self, spec: FileSpec) -> None:
        """The bundle format's ONNX scan (no external data), before anything is installed."""
        problem = external_data_problem_in_file(self.part_path(spec))
        if problem is not None:
            raise UpdateRejectedError(problem)

    def finalize(self) -> Path:
        """Give verified files their real names; fsync the folder. Returns the bundle folder."""
        for spec in self.manifest.files.values():
            os.replace(self.part_path(spec), self.bundle_dir / spec.name)
        fsync_dir(self.bundle_dir)
        return self.bundle_dir


def discard_staging(ota_dir: Path, update_id: str) -> None:
    shutil.rmtree(ota_dir / update_id, ignore_errors=True)


def install_bundle(bundle_dir: Path, models_dir: Path, name: str, version: str) -> Path:
    """Move a verified bundle to `<models_dir>/<name>/<version>` atomically; fsync parents."""
    model_dir = models_dir / name
    if not model_dir.is_dir():
        model_dir.mkdir(parents=True)
        fsync_dir(models_dir)
    destination = model_dir / version
    if destination.exists():
        raise UpdateRejectedError(f"{name}/{version} already exists in the models directory")
    try:
        os.rename(bundle_dir, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # state_dir on another filesystem: copy next to the target first, then rename there.
        temporary = model_dir / f".tmp-{version}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        for source in bundle_dir.iterdir():
            with open(source, "rb") as src, open(temporary / source.name, "wb") as dst:
                shutil.copyfileobj(src, dst, READ_BLOCK)
                dst.flush()
                os.fsync(dst.fileno())
        fsync_dir(temporary)
        os.rename(temporary, destination)
    fsync_dir(model_dir)
    return destination


def point_current(models_dir: Path, name: str, version: str) -> None:
    """Flip `<models_dir>/<name>/current` to `version` atomically (symlink, then rename)."""
    model_dir = models_dir / name
    temporary = model_dir / ".current.tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(version)
    os.replace(temporary, model_dir / CURRENT_LINK)
    fsync_dir(model_dir)


def record_outcome(ota_dir: Path, update_id: str, outcome: dict[str, object]) -> None:
    outcomes = ota_dir / OUTCOMES_DIR
    outcomes.mkdir(parents=True, exist_ok=True)
    write_atomic(outcomes / f"{update_id}.json", json.dumps(outcome).encode())


def check_free_space(ota_dir: Path, manifest: UpdateManifest) -> None:
    """Staging holds the bundle once and installing copies it once more, on a device whose
    models and state share one SD card: refuse up front rather than fail half-way (a full
    disk would also stall the logs and the attempt journal)."""
    ota_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(ota_dir).free
    needed = 2 * manifest.total_bytes + FREE_SPACE_MARGIN_BYTES
    if free < needed:
        raise UpdateRejectedError(
            f"not enough free space: the update needs {needed} bytes, {free} are free"
        )


def record_created(ota_dir: Path, name: str, created: datetime) -> None:
    """Remember the signing time of the newest update installed for model `name`."""
    newest = newest_created(ota_dir, name)
    if newest is not None and newest >= created:
        return
    path = ota_dir / NEWEST_CREATED_FILE
    known = _read_created(path)
    known[name] = created.isoformat()
    ota_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(known, sort_keys=True).encode())


def newest_created(ota_dir: Path, name: str) -> datetime | None:
    value = _read_created(ota_dir / NEWEST_CREATED_FILE).get(name)
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _read_created(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}  # absent, or damaged: the version floor still holds on its own
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def has_outcome(ota_dir: Path, update_id: str) -> bool:
    return (ota_dir / OUTCOMES_DIR / f"{update_id}.json").is_file()


def staged_update_ids(ota_dir: Path) -> list[str]:
    if not ota_dir.is_dir():
        return []
    return sorted(
        entry.name
        for entry in ota_dir.iterdir()
        if entry.name != OUTCOMES_DIR and (entry / ENVELOPE_FILE).is_file()
    )
