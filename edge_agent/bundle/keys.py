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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class KeyScope:
    """What one trusted key may sign: bundles and updates of these models, updates for these
    fleets (empty: any)."""

    models: frozenset[str] = frozenset()
    fleets: frozenset[str] = frozenset()


class Keyring:
    """The public keys a device trusts, by key id, each optionally limited to some models
    and fleets. Satisfies the engine's `Verifier` protocol."""

    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        scopes: Mapping[str, KeyScope] | None = None,
    ) -> None:
        self._keys = dict(keys)
        self._scopes = dict(scopes or {})

    @classmethod
    def from_files(
        cls, paths: Iterable[Path], scopes: Mapping[str, KeyScope] | None = None
    ) -> Keyring:
        keys = {}
        for path in paths:
            public_key = load_public_key(path)
            keys[key_id(public_key)] = public_key
        unknown = sorted(set(scopes or {}) - set(keys))
        if unknown:
            raise KeyFileError(f"scope for key id {unknown[0]!r}, which no trusted key has")
        return cls(keys, scopes)

    def scope_problem(self, signer_key_id: str, *, model: str, fleet: str | None) -> str | None:
        """Why `signer_key_id` may not sign for this model (and fleet), or None."""
        scope = self._scopes.get(signer_key_id)
        if scope is None:
            return None
        if scope.models and model not in scope.models:
            return f"key id {signer_key_id!r} may not sign model {model!r}"
        if scope.fleets and fleet not in scope.fleets:
            return f"key id {signer_key_id!r} may not sign for fleet {fleet!r}"
        return None

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

    def verify(self, data: bytes, signature: bytes) -> str:
        """Verify a bare signature (manifest.sig carries no key id): any trusted key will do;
        returns the key id that verified it."""
        if not self._keys:
            raise SignatureError("no trusted keys configured")
        _check_length(signature)
        for signer_key_id, public_key in self._keys.items():
            try:
                public_key.verify(signature, data)
            except InvalidSignature:
                continue
            return signer_key_id
        raise SignatureError(
            "signature does not verify with any trusted key id (" + ", ".join(self.key_ids) + ")"
        )


def _check_length(signature: bytes) -> None:
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureError(
            f"malformed signature: {len(signature)} bytes, expected {SIGNATURE_BYTES}"
        )
