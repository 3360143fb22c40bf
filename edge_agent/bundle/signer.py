"""The operator's side of signing (workstation only): key pairs, signatures on bundles.

Devices never import this module: they only verify (edge_agent.bundle.keys).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.bundle.keys import BUNDLE_MANIFEST, KeyFileError, key_id, signed_as
from edge_agent.bundle.layout import MANIFEST_FILE, SIGNATURE_FILE

PRIVATE_KEY_SUFFIX: Final = ".key"
PUBLIC_KEY_SUFFIX: Final = ".pub"


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    key_id: str


def generate_keypair(out_prefix: Path) -> KeyPair:
    """Write `<prefix>.key` (PKCS#8 PEM, created 0600, never overwritten) and `<prefix>.pub`."""
    private_key = Ed25519PrivateKey.generate()
    private_path = out_prefix.with_name(out_prefix.name + PRIVATE_KEY_SUFFIX)
    public_path = out_prefix.with_name(out_prefix.name + PUBLIC_KEY_SUFFIX)
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path}: already exists, refusing to overwrite a key")
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL + mode at creation: the secret never exists on disk with looser permissions.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_key = private_key.public_key()
    public_path.write_bytes(
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private_path, public_path, key_id(public_key))


class Signer:
    """An operator's private key: signs bytes and names itself by key id."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.key_id: Final = key_id(private_key.public_key())

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: cannot load private key: {exc}") from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an ed25519 private key")
        return cls(loaded)

    def sign(self, data: bytes) -> bytes:
        return self._private_key.sign(data)


def sign_bundle(bundle_dir: Path, signer: Signer) -> Path:
    """Write `manifest.sig` over the exact bytes of `manifest.json`, atomically."""
    manifest_bytes = (bundle_dir / MANIFEST_FILE).read_bytes()
    target = bundle_dir / SIGNATURE_FILE
    tmp = bundle_dir / f".{SIGNATURE_FILE}.tmp"
    tmp.write_bytes(signer.sign(signed_as(BUNDLE_MANIFEST, manifest_bytes)))
    os.replace(tmp, target)
    return target
