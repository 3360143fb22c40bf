"""ed25519 keys for bundles and OTA manifests, on top of the `cryptography` library.

The operator holds a private key (PEM, mode 0600); devices list trusted public keys in their
config. A key is named by its key id, the first 16 hex digits of sha256 over the raw 32-byte
public key, so a signature can say which key made it and an error can say which key failed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_ID_HEX_CHARS: Final = 16
SIGNATURE_BYTES: Final = 64
PRIVATE_KEY_SUFFIX: Final = ".key"
PUBLIC_KEY_SUFFIX: Final = ".pub"
MANIFEST_FILE: Final = "manifest.json"
SIGNATURE_FILE: Final = "manifest.sig"


class SignatureError(Exception):
    """A signature is missing, malformed, made by an unknown key, or does not verify."""


class KeyFileError(Exception):
    """A key file cannot be read or does not hold an ed25519 key."""


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_CHARS]


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


def sign_bundle(bundle_dir: Path, signer: Signer) -> Path:
    """Write `manifest.sig` over the exact bytes of `manifest.json`, atomically."""
    manifest_bytes = (bundle_dir / MANIFEST_FILE).read_bytes()
    target = bundle_dir / SIGNATURE_FILE
    tmp = bundle_dir / f".{SIGNATURE_FILE}.tmp"
    tmp.write_bytes(signer.sign(manifest_bytes))
    os.replace(tmp, target)
    return target


def verify_bundle(bundle_dir: Path, keyring: Keyring) -> None:
    """Check `manifest.sig` against `manifest.json`; raises SignatureError naming the bundle."""
    sig_path = bundle_dir / SIGNATURE_FILE
    if not sig_path.is_file():
        raise SignatureError(f"{bundle_dir}: missing {SIGNATURE_FILE}")
    try:
        keyring.verify((bundle_dir / MANIFEST_FILE).read_bytes(), sig_path.read_bytes())
    except SignatureError as exc:
        raise SignatureError(f"{bundle_dir}: {exc}") from None
