"""Check a bundle folder without running it: signature, manifest, listed files, ONNX scan.

`verify_bundle` is the one gate every bundle passes, wherever it came from (a local drop,
the CLI, an OTA install), before the engine opens it. manifest.json is read once, and the
signature, when a keyring is given, is checked over exactly those bytes before they are
parsed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from edge_agent.bundle.keys import BUNDLE_MANIFEST, Keyring, signed_as
from edge_agent.bundle.layout import (
    MANIFEST_FILE,
    MAX_SIGNATURE_BYTES,
    ONNX_FILES,
    SIGNATURE_FILE,
    BundleError,
    read_small,
    sha256_file,
)
from edge_agent.bundle.manifest import Manifest, parse_manifest, read_manifest_bytes
from edge_agent.bundle.onnx_scan import external_data_problem_in_file


class Verifier(Protocol):
    """Checks a detached signature (edge_agent.bundle.keys.Keyring implements it; its return
    value, the key id, also lets a Keyring check that key's scope)."""

    def verify(self, data: bytes, signature: bytes) -> object: ...  # raises on failure


def verify_bundle(bundle_dir: Path, keyring: Verifier | None = None) -> Manifest:
    """The bundle's manifest, once signature (with a keyring), hashes and ONNX files pass."""
    manifest_path = bundle_dir / MANIFEST_FILE
    raw = read_manifest_bytes(bundle_dir)
    signer = verify_signature(bundle_dir, raw, keyring) if keyring is not None else None
    manifest = parse_manifest(raw, manifest_path)
    if isinstance(keyring, Keyring) and isinstance(signer, str):
        problem = keyring.scope_problem(signer, model=manifest.name, fleet=None)
        if problem is not None:
            raise BundleError(f"{bundle_dir / SIGNATURE_FILE}: {problem}")
    verify_files(bundle_dir, manifest)
    for name in sorted(ONNX_FILES & manifest.files.keys()):
        problem = external_data_problem_in_file(bundle_dir / name)
        if problem is not None:
            raise BundleError(f"{bundle_dir / name}: {problem}")
    return manifest


def verify_signature(bundle_dir: Path, manifest_bytes: bytes, keyring: Verifier) -> object:
    """manifest.sig must be a valid signature over manifest.json's exact bytes (in the bundle
    manifest context); returns what the verifier returns (a Keyring: the signer's key id)."""
    signature_path = bundle_dir / SIGNATURE_FILE
    signature = read_small(signature_path, MAX_SIGNATURE_BYTES, "missing; signatures are required")
    try:
        return keyring.verify(signed_as(BUNDLE_MANIFEST, manifest_bytes), signature)
    except Exception as error:  # the verifier's own exception type is its business
        raise BundleError(f"{signature_path}: signature check failed: {error}") from error


def check_sizes(bundle_dir: Path, manifest: Manifest) -> None:
    """Every listed file exists with its size: the cheap half of verify_files."""
    for name, entry in manifest.files.items():
        path = bundle_dir / name
        try:
            size = path.stat().st_size
        except OSError as error:
            raise BundleError(f"{path}: listed in the manifest but missing") from error
        if size != entry.size:
            raise BundleError(f"{path}: size {size} differs from the manifest's {entry.size}")


def read_verified(bundle_dir: Path, manifest: Manifest, name: str) -> bytes:
    """A listed file's bytes, read once and checked against the manifest's size and sha256.

    The engine builds sessions and tokenizers from these bytes, never by opening the path
    again: a file swapped after `verify_bundle` hashed it (a local writer racing a load)
    can then not be what runs, signed bundle or not.
    """
    path = bundle_dir / name
    entry = manifest.files.get(name)
    if entry is None:
        raise BundleError(f"{path}: not listed in the manifest")
    try:
        with path.open("rb") as handle:
            data = handle.read(entry.size + 1)
    except OSError as error:
        raise BundleError(f"{path}: cannot read: {error.strerror or error}") from error
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise BundleError(f"{path}: changed since it was verified (size or sha256 differs)")
    return data


def verify_files(bundle_dir: Path, manifest: Manifest) -> None:
    """Every listed file exists with its size and sha256, and nothing else is there."""
    check_sizes(bundle_dir, manifest)
    for name, entry in manifest.files.items():
        path = bundle_dir / name
        if sha256_file(path) != entry.sha256:
            raise BundleError(f"{path}: sha256 differs from the manifest (corrupt or altered)")
    allowed = {*manifest.files, MANIFEST_FILE, SIGNATURE_FILE}
    extra = sorted(p.name for p in bundle_dir.iterdir() if p.name not in allowed)
    if extra:
        raise BundleError(f"{bundle_dir / extra[0]}: not listed in the manifest")
