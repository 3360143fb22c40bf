from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edge_agent.bundle.keys import KeyFileError, Keyring, KeyScope, SignatureError, load_public_key
from edge_agent.bundle.layout import BundleError
from edge_agent.bundle.signer import Signer, generate_keypair, sign_bundle
from edge_agent.bundle.verify import verify_bundle
from tests.support.bundles import bundle_files, write_bundle


def test_keygen_writes_private_key_0600_and_public_key(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "operator")
    assert pair.private_path == tmp_path / "operator.key"
    assert stat.S_IMODE(pair.private_path.stat().st_mode) == 0o600
    assert pair.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    raw = load_public_key(pair.public_path).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert pair.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert re.fullmatch(r"[0-9a-f]{16}", pair.key_id)
    assert Signer.from_file(pair.private_path).key_id == pair.key_id


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "operator")
    before = pair.private_path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keypair(tmp_path / "operator")
    assert pair.private_path.read_bytes() == before


def test_signed_bundle_verifies_and_tampering_is_caught(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "k")
    bundle = write_bundle(tmp_path / "models", bundle_files())
    sig = sign_bundle(bundle, Signer.from_file(pair.private_path))
    assert sig.name == "manifest.sig" and len(sig.read_bytes()) == 64
    keyring = Keyring.from_files([pair.public_path])
    assert verify_bundle(bundle, keyring).version == "1.1.0"

    manifest = bundle / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"1.1.0", b"1.1.1"))
    with pytest.raises(
        BundleError, match=f"does not verify with any trusted key id .{pair.key_id}"
    ):
        verify_bundle(bundle, keyring)


def test_bundle_signed_by_another_key_and_unsigned_bundle_are_refused(tmp_path: Path) -> None:
    trusted = generate_keypair(tmp_path / "trusted")
    other = generate_keypair(tmp_path / "other")
    bundle = write_bundle(tmp_path / "models", bundle_files())
    keyring = Keyring.from_files([trusted.public_path])
    with pytest.raises(BundleError, match=r"manifest\.sig: missing"):
        verify_bundle(bundle, keyring)
    sign_bundle(bundle, Signer.from_file(other.private_path))
    with pytest.raises(BundleError, match=trusted.key_id):
        verify_bundle(bundle, keyring)


def test_verify_with_names_the_key(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "k")
    signer = Signer.from_file(pair.private_path)
    keyring = Keyring.from_files([pair.public_path])
    keyring.verify_with(b"data", signer.sign(b"data"), pair.key_id)
    with pytest.raises(SignatureError, match=f"does not verify with key id '{pair.key_id}'"):
        keyring.verify_with(b"other", signer.sign(b"data"), pair.key_id)
    with pytest.raises(SignatureError, match="unknown key id 'feedfacefeedface'"):
        keyring.verify_with(b"data", signer.sign(b"data"), "feedfacefeedface")
    with pytest.raises(SignatureError, match="malformed signature: 3 bytes"):
        keyring.verify_with(b"data", b"abc", pair.key_id)


def test_non_key_files_are_refused_clearly(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    with pytest.raises(KeyFileError, match=r"junk\.pub: cannot load public key"):
        Keyring.from_files([junk])
    with pytest.raises(KeyFileError, match="cannot load private key"):
        Signer.from_file(junk)
    with pytest.raises(SignatureError, match="no trusted keys configured"):
        Keyring({}).verify(b"x", bytes(64))


def test_a_scoped_key_signs_only_its_models(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "team")
    bundle = write_bundle(tmp_path / "models", bundle_files(name="sentiment"))
    sign_bundle(bundle, Signer.from_file(pair.private_path))
    own = Keyring.from_files([pair.public_path], {pair.key_id: KeyScope(frozenset({"sentiment"}))})
    assert verify_bundle(bundle, own).name == "sentiment"
    other = Keyring.from_files([pair.public_path], {pair.key_id: KeyScope(frozenset({"intent"}))})
    with pytest.raises(BundleError, match=f"key id '{pair.key_id}' may not sign model 'sentiment'"):
        verify_bundle(bundle, other)
    with pytest.raises(KeyFileError, match="which no trusted key has"):
        Keyring.from_files([pair.public_path], {"feedfacefeedface": KeyScope()})
