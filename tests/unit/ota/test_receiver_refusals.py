"""The OTA receiver's refusals: what a tampered, forged, mis-scoped or hostile update gets.

Each case is pushed by the operator side of the protocol and delivered as the broker would;
the receiver, keys and files are real. A refusal names its reason and leaves everything
outside the staging folder as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path

import onnx
import pytest

from edge_agent.bundle.keys import (
    BUNDLE_MANIFEST,
    OTA_UPDATE,
    Keyring,
    KeyScope,
    SignatureError,
    signed_as,
)
from edge_agent.bundle.signer import Signer, generate_keypair
from edge_agent.ota.manifest import UpdateRejectedError, chunk_topic, seal
from tests.support.bundles import bundle_files, tiny_onnx_model, write_bundle
from tests.support.keys import Operator
from tests.support.ota_protocol import (
    CHUNK,
    FLEET,
    NOW,
    PREFIX,
    DeviceFactory,
    deliver,
    push,
    retained,
)


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path under root with its content (or link target): to prove nothing changed."""
    result: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            result[key] = "-> " + str(path.readlink())
        elif path.is_file():
            result[key] = path.read_bytes()
        else:
            result[key] = "dir"
    return result


def outside_staging(root: Path) -> dict[str, bytes | str]:
    return {k: v for k, v in tree(root).items() if not k.startswith("state")}


def test_tampered_chunk_is_refused_and_not_written(
    operator: Operator, make_device: DeviceFactory, tmp_path: Path
) -> None:
    device = make_device()
    update = push(operator, bundle_files())
    store = retained(update)
    spec = update.manifest.files["model.onnx"]
    topic = chunk_topic(PREFIX, spec.sha256, CHUNK, 3)
    good = store[topic]
    store[topic] = bytes([good[0] ^ 0xFF]) + good[1:]
    before = outside_staging(tmp_path)

    deliver(device, store)

    rejected = [r for r in device.reports if r.state == "chunk_rejected"]
    assert len(rejected) == 1
    assert rejected[0].document["reason"] == (
        "hash mismatch: model.onnx chunk 3 differs from the signed manifest"
    )
    assert outside_staging(tmp_path) == before
    part = device.state_dir / "ota" / update.manifest.update_id / "bundle" / "model.onnx.part"
    assert part.read_bytes()[3 * CHUNK : 4 * CHUNK] == bytes(CHUNK)  # never written
    assert topic in device.subscribed  # still waiting for a good copy

    # The operator republishes the good chunk (retained): the update completes.
    device.apply(device.receiver.on_message(topic, good))
    assert device.last_state == "installed"


def test_oversize_chunk_is_refused_before_hashing(
    operator: Operator, make_device: DeviceFactory, tmp_path: Path
) -> None:
    device = make_device()
    update = push(operator, bundle_files())
    store = retained(update)
    spec = update.manifest.files["model.onnx"]
    topic = chunk_topic(PREFIX, spec.sha256, CHUNK, 0)
    store[topic] += b"\0" * 10_000
    before = outside_staging(tmp_path)
    deliver(device, store)
    reasons = [r.document["reason"] for r in device.reports if r.state == "chunk_rejected"]
    assert reasons == ["oversize: model.onnx chunk 0 is 11024 bytes, expected 1024"]
    assert outside_staging(tmp_path) == before


def test_unknown_key_is_refused_naming_the_key(
    operator: Operator, make_device: DeviceFactory, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    stranger = Signer.from_file(generate_keypair(tmp_path / "other" / "k").private_path)
    device = make_device()
    before = outside_staging(tmp_path)
    deliver(device, retained(push(operator, bundle_files(), signer=stranger)))
    assert device.last_state == "rejected"
    assert device.last_reason == (
        f"bad signature: unknown key id {stranger.key_id!r}: not in the trusted keys"
    )
    assert not any("/blob/" in t for t in device.subscribed)
    assert outside_staging(tmp_path) == before


def test_wrong_key_claiming_a_trusted_key_id_is_refused(
    operator: Operator, make_device: DeviceFactory, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    stranger = Signer.from_file(generate_keypair(tmp_path / "other" / "k").private_path)
    update = push(operator, bundle_files())
    envelope = json.loads(update.envelope)
    payload = base64.b64decode(envelope["payload"])
    envelope["signature"] = base64.b64encode(stranger.sign(payload)).decode()
    device = make_device()
    device.apply(device.receiver.on_manifest(json.dumps(envelope).encode()))
    assert device.last_state == "rejected"
    assert device.last_reason == (
        f"bad signature: signature does not verify with key id {operator.signer.key_id!r}"
    )


def test_payload_altered_after_signing_is_refused(
    operator: Operator, make_device: DeviceFactory
) -> None:
    update = push(operator, bundle_files())
    envelope = json.loads(update.envelope)
    payload = base64.b64decode(envelope["payload"]).replace(b'"1.1.0"', b'"9.9.9"')
    envelope["payload"] = base64.b64encode(payload).decode()
    device = make_device()
    device.apply(device.receiver.on_manifest(json.dumps(envelope).encode()))
    assert device.last_state == "rejected"
    assert "signature does not verify" in device.last_reason


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (b"not json", "manifest envelope is not JSON"),
        (b'{"format": 1, "key_id": "ab", "payload": "e30="}', "missing signature"),
        (b'{"format": 1, "key_id": "ab", "signature": "!!", "payload": "e30="}', "invalid base64"),
    ],
)
def test_malformed_envelopes_are_refused(
    make_device: DeviceFactory, envelope: bytes, reason: str
) -> None:
    device = make_device()
    device.apply(device.receiver.on_manifest(envelope))
    assert device.last_state == "rejected"
    assert reason in device.last_reason


def test_expired_manifest_is_refused(operator: Operator, make_device: DeviceFactory) -> None:
    update = push(operator, bundle_files(), expires_in=timedelta(hours=1))
    device = make_device(clock=NOW + timedelta(hours=2))
    deliver(device, retained(update))
    assert device.last_state == "rejected"
    assert device.last_reason == "expired at 2026-11-23T10:40:00+00:00"
    assert not (device.models_dir / "sentiment").exists()


def test_downgrade_is_refused_unless_signed_as_one(
    operator: Operator, make_device: DeviceFactory, tmp_path: Path
) -> None:
    device = make_device()
    write_bundle(device.models_dir, bundle_files(version="2.0.0"))
    before = outside_staging(tmp_path)
    deliver(device, retained(push(operator, bundle_files(version="1.5.0"))))
    assert device.last_state == "rejected"
    assert device.last_reason.startswith(
        "rollback: version 1.5.0 is not newer than installed 2.0.0"
    )
    assert outside_staging(tmp_path) == before

    deliver(device, retained(push(operator, bundle_files(version="1.5.0"), downgrade=True)))
    assert device.last_state == "installed"
    assert (device.models_dir / "sentiment" / "current").readlink() == Path("1.5.0")


def test_a_replayed_downgrade_older_than_the_last_update_is_refused(
    operator: Operator, make_device: DeviceFactory
) -> None:
    """A validly signed downgrade that the device never saw (it was offline), replayed from
    the broker's history after a newer update went in, would undo that newer decision."""
    device = make_device(clock=NOW + timedelta(hours=4))
    deliver(device, retained(push(operator, bundle_files(version="2.0.0"))))
    assert device.last_state == "installed"
    old_downgrade = push(
        operator, bundle_files(version="1.5.0"), downgrade=True, now=NOW + timedelta(hours=1)
    )
    deliver(
        device,
        retained(push(operator, bundle_files(version="3.0.0"), now=NOW + timedelta(hours=2))),
    )
    assert device.last_state == "installed"

    deliver(device, retained(old_downgrade))
    assert device.last_state == "rejected"
    assert device.last_reason.startswith("stale downgrade: created 2026-11-23T10:40:00+00:00")
    assert not (device.models_dir / "sentiment" / "1.5.0").exists()

    fresh = push(
        operator, bundle_files(version="1.5.0"), downgrade=True, now=NOW + timedelta(hours=3)
    )
    deliver(device, retained(fresh))
    assert device.last_state == "installed"
    assert (device.models_dir / "sentiment" / "current").readlink() == Path("1.5.0")


def test_a_bundle_manifest_signature_never_passes_as_an_update_signature(
    operator: Operator, make_device: DeviceFactory
) -> None:
    """Domain separation: the same key signs bundle manifests and OTA updates. A signature
    over the payload's bytes made as a bundle manifest's (manifest.sig) does not open the
    envelope, and an update's signature does not sign a bundle."""
    update = push(operator, bundle_files())
    envelope = json.loads(update.envelope)
    payload = base64.b64decode(envelope["payload"])
    as_bundle = operator.signer.sign(signed_as(BUNDLE_MANIFEST, payload))
    envelope["signature"] = base64.b64encode(as_bundle).decode()
    device = make_device()
    device.apply(device.receiver.on_manifest(json.dumps(envelope).encode()))
    assert device.last_state == "rejected"
    assert device.last_reason.startswith("bad signature")
    with pytest.raises(SignatureError):
        operator.keyring.verify(
            signed_as(BUNDLE_MANIFEST, payload),
            base64.b64decode(json.loads(update.envelope)["signature"]),
        )


def test_a_key_scoped_to_other_models_or_fleets_cannot_update_this_one(
    operator: Operator, make_device: DeviceFactory
) -> None:
    key_id = operator.signer.key_id
    public = operator.public_key
    cases = (
        ("2.0.1", KeyScope(models=frozenset({"intent"})), "may not sign model 'sentiment'"),
        ("2.0.2", KeyScope(fleets=frozenset({"garage"})), f"may not sign for fleet '{FLEET}'"),
    )
    for version, scope, reason in cases:
        device = make_device(keyring=Keyring.from_files([public], {key_id: scope}))
        deliver(device, retained(push(operator, bundle_files(version=version))))
        assert device.last_state == "rejected"
        assert device.last_reason == f"key id '{key_id}' {reason}"
        assert not (device.models_dir / "sentiment" / version).exists()
    allowed = KeyScope(frozenset({"sentiment"}), frozenset({FLEET}))
    device = make_device(keyring=Keyring.from_files([public], {key_id: allowed}))
    deliver(device, retained(push(operator, bundle_files(version="2.0.3"))))
    assert device.last_state == "installed"


def _sealed(operator: Operator, edit: dict[str, object]) -> bytes:
    """A signed payload the push side would never build (it validates): a hostile operator."""
    update = push(operator, bundle_files())
    payload = json.loads(base64.b64decode(json.loads(update.envelope)["payload"]))
    payload.update(edit)
    return seal(json.dumps(payload).encode(), operator.signer)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({"name": "../../etc"}, "model name '../../etc' is not allowed"),
        ({"version": "1.0.0/../../x"}, "version '1.0.0/../../x' is not MAJOR.MINOR.PATCH"),
        (
            {"files": {"../model.onnx": {"sha256": "0" * 64, "size": 1, "chunks": ["0" * 64]}}},
            "file not allowed in a bundle: '../model.onnx'",
        ),
        ({"target": {"device": "pi-8"}}, "update targets device 'pi-8', not this device"),
        ({"chunk_size": 1 << 30}, "chunk_size 1073741824 is outside"),
    ],
)
def test_hostile_signed_fields_are_refused(
    operator: Operator,
    make_device: DeviceFactory,
    tmp_path: Path,
    edit: dict[str, object],
    reason: str,
) -> None:
    device = make_device()
    before = outside_staging(tmp_path)
    device.apply(device.receiver.on_manifest(_sealed(operator, edit)))
    assert device.last_state == "rejected"
    assert reason in device.last_reason
    assert outside_staging(tmp_path) == before


def test_extra_file_is_refused(operator: Operator, make_device: DeviceFactory) -> None:
    files = {**bundle_files(), "run.sh": b"#!/bin/sh\nrm -rf /\n"}
    with pytest.raises(UpdateRejectedError, match=re.escape("not allowed in a bundle: 'run.sh'")):
        push(operator, files)
    device = make_device()
    extra = {"sha256": hashlib.sha256(b"x").hexdigest(), "size": 1, "chunks": ["0" * 64]}
    files_field = json.loads(
        base64.b64decode(json.loads(push(operator, bundle_files()).envelope)["payload"])
    )["files"]
    device.apply(
        device.receiver.on_manifest(_sealed(operator, {"files": {**files_field, "run.sh": extra}}))
    )
    assert device.last_state == "rejected"
    assert device.last_reason == "file not allowed in a bundle: 'run.sh'"


def test_bundle_manifest_disagreeing_with_signed_update_is_refused(
    operator: Operator, make_device: DeviceFactory, tmp_path: Path
) -> None:
    files = bundle_files(version="1.1.0")
    mixed = bundle_files(version="1.1.0", seed=1)  # another model with the same name/version
    files["manifest.json"] = mixed["manifest.json"]
    device = make_device()
    before = outside_staging(tmp_path)
    deliver(device, retained(push(operator, files)))
    assert device.last_state == "rejected"
    assert device.last_reason == "bundle manifest.json files differ from the signed update"
    assert outside_staging(tmp_path) == before
    assert not (device.state_dir / "ota" / push(operator, files).manifest.update_id).exists()


def test_onnx_with_external_data_is_refused(
    operator: Operator, make_device: DeviceFactory, tmp_path: Path
) -> None:
    model = tiny_onnx_model()
    first_tensor = model.graph.initializer[0].name  # the scan meets initializers in order
    onnx.external_data_helper.convert_model_to_external_data(
        model,
        all_tensors_to_one_file=True,
        location="../../../../nonexistent-dir/weights.bin",
        size_threshold=0,
    )
    files = bundle_files(model=model.SerializeToString())
    device = make_device()
    before = outside_staging(tmp_path)
    deliver(device, retained(push(operator, files)))
    assert device.last_state == "rejected"
    assert device.last_reason == f"ONNX tensor '{first_tensor}' references external data"
    assert outside_staging(tmp_path) == before


def test_hostile_unsigned_envelopes_are_refused_briefly_and_never_crash(
    make_device: DeviceFactory,
) -> None:
    """Before: an envelope nested 500,000 deep raised RecursionError out of the receiver,
    and an unknown key id was echoed whole (1 MB per message into the retained report, the
    events topic and the log)."""
    device = make_device()
    nested = b"[" * 500_000 + b"]" * 500_000
    device.apply(device.receiver.on_manifest(nested[:1_000_000]))
    assert device.last_state == "rejected" and "nested too deeply" in device.last_reason
    huge_key = {"format": 1, "key_id": "k" * 900_000, "signature": "AA==", "payload": "AA=="}
    device.apply(device.receiver.on_manifest(json.dumps(huge_key).encode()))
    assert device.last_state == "rejected"
    assert "not 16 hex digits" in device.last_reason and len(device.last_reason) < 200
    assert all(len(report.payload) < 2000 for report in device.reports)


def test_a_signed_bundle_manifest_over_the_format_limit_is_refused_before_download(
    operator: Operator, make_device: DeviceFactory
) -> None:
    """manifest.json is read whole on every start: a signed one of up to 1 GiB was accepted.
    `model push` refuses to build one; a manifest signed some other way is refused here."""
    files = bundle_files()
    files["manifest.json"] = files["manifest.json"] + b" " * (1 << 20)  # valid JSON, 1 MiB+
    with pytest.raises(UpdateRejectedError, match=r"manifest\.json: size must be"):
        push(operator, files)
    doc = json.loads(
        base64.b64decode(json.loads(push(operator, bundle_files()).envelope)["payload"])
    )
    size = (1 << 20) + 1
    doc["files"]["manifest.json"]["size"] = size
    doc["files"]["manifest.json"]["chunks"] = ["0" * 64] * -(-size // doc["chunk_size"])
    payload = json.dumps(doc).encode()
    envelope = {
        "format": 1,
        "key_id": operator.signer.key_id,
        "signature": base64.b64encode(
            operator.signer.sign(signed_as(OTA_UPDATE, payload))
        ).decode(),
        "payload": base64.b64encode(payload).decode(),
    }
    device = make_device()
    device.apply(device.receiver.on_manifest(json.dumps(envelope).encode()))
    assert device.last_state == "rejected"
    assert device.last_reason == "manifest.json: size must be an integer in [0, 1048576]"
    assert not any("/blob/" in topic for topic in device.asked)  # nothing was fetched
