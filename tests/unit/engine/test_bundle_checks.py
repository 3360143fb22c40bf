"""A bundle loads fully or not at all; every refusal names the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent.bundle.keys import BUNDLE_MANIFEST, signed_as
from edge_agent.bundle.layout import BundleError
from edge_agent.bundle.manifest import load_manifest
from edge_agent.bundle.versions import resolve_bundle
from edge_agent.engine.classifier import load_classifier
from edge_agent.models.watch import ModelWatcher
from tests.support.bundles import edit_manifest


class Ed25519Keyring:
    """The smallest real Verifier: one ed25519 public key."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self.key = key

    def verify(self, data: bytes, signature: bytes) -> None:
        self.key.verify(signature, data)


def test_altered_model_is_refused_by_its_hash(tiny_copy: Path) -> None:
    model = tiny_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 differs"):
        load_classifier(tiny_copy)


def test_missing_and_extra_files_are_named(tiny_copy: Path) -> None:
    (tiny_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json: listed in the manifest but missing"):
        load_classifier(tiny_copy)


def test_unlisted_file_is_refused(tiny_copy: Path) -> None:
    (tiny_copy / "notes.txt").write_text("hello")
    with pytest.raises(BundleError, match=r"notes\.txt: not listed"):
        load_classifier(tiny_copy)


def test_label_count_must_match_the_graph(tiny_copy: Path) -> None:
    edit_manifest(tiny_copy, labels=["a", "b", "c"], golden=[])
    with pytest.raises(BundleError, match=r"model.*does not match 3 labels"):
        load_classifier(tiny_copy, precision="int8")


def test_golden_example_that_does_not_reproduce_is_refused(tiny_copy: Path) -> None:
    golden = load_manifest(tiny_copy).golden
    wrong = "positive" if golden[0].label == "negative" else "negative"
    edit_manifest(
        tiny_copy,
        golden=[{"text": golden[0].text, "label": wrong, "score": golden[0].score}],
    )
    with pytest.raises(BundleError, match="golden example"):
        load_classifier(tiny_copy, precision="int8")


def test_golden_score_is_checked_within_tolerance(tiny_copy: Path) -> None:
    example = load_manifest(tiny_copy).golden[0]
    edit_manifest(
        tiny_copy,
        golden=[{"text": example.text, "label": example.label, "score": example.score - 0.01}],
    )
    with pytest.raises(BundleError, match="scored"):
        load_classifier(tiny_copy, precision="int8")


@pytest.mark.parametrize(
    ("content", "refused_by"),
    [
        (b"not a graph", "uses unsupported protobuf wire type"),  # the bundle's ONNX scan
        (b"\x08\x07", "onnxruntime cannot load it"),  # a ModelProto with no graph
    ],
)
def test_graph_that_onnxruntime_cannot_read_is_refused(
    tiny_copy: Path, content: bytes, refused_by: str
) -> None:
    from edge_agent.bundle.layout import sha256_file

    model = tiny_copy / "model.onnx"
    model.write_bytes(content)
    edit_manifest(
        tiny_copy,
        files={
            **json.loads((tiny_copy / "manifest.json").read_text())["files"],
            "model.onnx": {"sha256": sha256_file(model), "size": model.stat().st_size},
        },
    )
    with pytest.raises(BundleError, match=rf"model\.onnx: .*{refused_by}"):
        load_classifier(tiny_copy, precision="int8")


def test_signature_is_required_and_checked_when_a_keyring_is_given(tiny_copy: Path) -> None:
    key = Ed25519PrivateKey.generate()
    keyring = Ed25519Keyring(key.public_key())
    with pytest.raises(BundleError, match=r"manifest\.sig: missing"):
        load_classifier(tiny_copy, keyring=keyring)
    manifest_bytes = (tiny_copy / "manifest.json").read_bytes()
    (tiny_copy / "manifest.sig").write_bytes(key.sign(signed_as(BUNDLE_MANIFEST, manifest_bytes)))
    # The manifest's bare bytes, signed without the context prefix, do not pass.
    with pytest.raises(BundleError, match=r"manifest\.sig: signature check failed"):
        (tiny_copy / "manifest.sig").write_bytes(key.sign(manifest_bytes))
        load_classifier(tiny_copy, keyring=keyring)
    (tiny_copy / "manifest.sig").write_bytes(key.sign(signed_as(BUNDLE_MANIFEST, manifest_bytes)))
    assert load_classifier(tiny_copy, keyring=keyring).manifest.name == "tiny"
    other = Ed25519Keyring(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(BundleError, match=r"manifest\.sig: signature check failed"):
        load_classifier(tiny_copy, keyring=other)
    with pytest.raises(InvalidSignature):
        other.verify(manifest_bytes, key.sign(manifest_bytes))


def test_resolve_prefers_current_then_highest_version(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    model_dir = tmp_path / "tiny"
    for version in ("1.9.0", "1.10.0", "0.5.0"):
        shutil.copytree(tiny_dir, model_dir / version)
    shutil.copytree(tiny_dir, model_dir / ".tmp-9.0.0")
    (model_dir / "2.0.0").mkdir()  # no manifest: an install that never finished
    assert resolve_bundle(tmp_path, "tiny") == model_dir / "1.10.0"
    (model_dir / "current").symlink_to("0.5.0")
    assert resolve_bundle(tmp_path, "tiny") == model_dir / "0.5.0"


def test_resolve_follows_the_daemons_rule_past_a_dangling_current(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """The CLI resolves what the daemon would serve: a `current` naming no installed
    version falls back to the highest one, as at the daemon's start-up."""
    import shutil

    model_dir = tmp_path / "tiny"
    shutil.copytree(tiny_dir, model_dir / "1.0.0")
    (model_dir / "current").symlink_to("3.0.0")
    assert resolve_bundle(tmp_path, "tiny") == model_dir / "1.0.0"
    (store,) = ModelWatcher(tmp_path, ["tiny"]).poll()
    assert store.bundle.path == model_dir / "1.0.0"


def test_resolve_names_the_folder_when_nothing_is_installed(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such model folder"):
        resolve_bundle(tmp_path, "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"empty: no version folder"):
        resolve_bundle(tmp_path, "empty")
    (tmp_path / "empty" / "current").symlink_to("1.0.0")
    with pytest.raises(BundleError, match=r"empty: no version folder"):
        resolve_bundle(tmp_path, "empty")


def test_max_seq_len_beyond_the_graph_is_refused_at_load(tiny_copy: Path) -> None:
    # The tiny graph has 64 positions; the tokenizer would hand it up to 100 tokens.
    edit_manifest(tiny_copy, max_seq_len=100, golden=[])
    with pytest.raises(BundleError, match=r"model.*fails on 100 tokens"):
        load_classifier(tiny_copy, precision="int8")


def test_a_manifest_over_the_format_limit_is_refused_unread(tiny_copy: Path) -> None:
    manifest = tiny_copy / "manifest.json"
    manifest.write_bytes(manifest.read_bytes() + b" " * (1 << 20))
    with pytest.raises(BundleError, match=r"manifest\.json: larger than 1048576 bytes"):
        load_classifier(tiny_copy, precision="int8")


def test_the_engine_runs_the_bytes_it_hashed_not_the_path_reopened(tiny_copy: Path) -> None:
    """Sessions and tokenizers are built from `read_verified` bytes: a file that changes
    after verify_bundle hashed it is refused when read, never run."""
    from edge_agent.bundle.verify import read_verified, verify_bundle

    manifest = verify_bundle(tiny_copy)
    data = read_verified(tiny_copy, manifest, "model.onnx")
    assert data == (tiny_copy / "model.onnx").read_bytes()
    swapped = bytearray(data)
    swapped[-1] ^= 0xFF
    (tiny_copy / "model.onnx").write_bytes(bytes(swapped))  # same size, other bytes
    with pytest.raises(BundleError, match="changed since it was verified"):
        read_verified(tiny_copy, manifest, "model.onnx")
    with pytest.raises(BundleError, match="not listed"):
        read_verified(tiny_copy, manifest, "extra.bin")
