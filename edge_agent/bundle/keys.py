"""The keys a device trusts: ed25519 public keys for bundles and OTA manifests.

On top of the `cryptography` library. The operator holds a private key (PEM, mode 0600;
its side is edge_agent.bundle.signer); devices list trusted public keys in their config. A
key is named by its key id, the first 16 hex digits of sha256 over the raw 32-byte public
key, so a signature can say which key made it and an error can say which key failed.

One key signs two kinds of document, so each signature covers a context prefix naming the
kind (`signed_as`): a bundle manifest's signature can never pass as an OTA update's, or the
reverse, whatever bytes an attacker shapes to parse as both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

KEY_ID_HEX_CHARS: Final = 16
SIGNATURE_BYTES: Final = 64
# What is signed is context + document (domain separation); format 1 of each.
BUNDLE_MANIFEST: Final = b"edge-agent bundle manifest v1\n"
OTA_UPDATE: Final = b"edge-agent ota update v1\n"


def signed_as(context: bytes, document: bytes) -> bytes:
    """The bytes a signature over `document` of kind `context` covers."""
    return context + document


class SignatureError(Exception):
    """A signature is missing, malformed, made by an unknown key, or does not verify."""


class KeyFileError(Exception):
    """A key file cannot be read or does not hold an ed25519 key."""


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_CHARS]


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        loaded = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: cannot load public key: {exc}") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an ed25519 public key")
    return loaded


class Keyring:
    """The public keys a device trusts, by key id. Satisfies the engine's `Verifier` protocol."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> Keyring:
        keys = {}
        for path in paths:
            public_key = load_public_key(path)
            keys[key_id(public_key)] = public_key
        return cls(keys)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def __bool__(self) -> bool:
        return bool(self._keys)

    def verify_with(self, data: bytes, signature: bytes, signer_key_id: str) -> None:
        """Verify a signature that names its key (OTA envelopes)."""
        public_key = self._keys.get(signer_key_id)
        if public_key is None:
            raise SignatureError(f"unknown key id {signer_key_id!r}: not in the trusted keys")
        _check_length(signature)
        try:
            public_key.verify(signature, data)
        except InvalidSignature:
            raise SignatureError(
                f"signature does not verify with key id {signer_key_id!r}"
            ) from None

    def verify(self, data: bytes, signature: bytes) -> None:
        """Verify a bare signature (manifest.sig carries no key id): any trusted key will do."""
        if not self._keys:
            raise SignatureError("no trusted keys configured")
        _check_length(signature)
        for public_key in self._keys.values():
            try:
                public_key.verify(signature, data)
            except InvalidSignature:
                continue
            return
        raise SignatureError(
            "signature does not verify with any trusted key id (" + ", ".join(self.key_ids) + ")"
        )


def _check_length(signature: bytes) -> None:
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureError(
            f"malformed signature: {len(signature)} bytes, expected {SIGNATURE_BYTES}"
        )
