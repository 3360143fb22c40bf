"""The OTA protocol end to end in one process: push side builds messages, receiver installs.

`deliver` plays the broker's part for retained messages: each topic the device subscribes
to gets its retained payload once, in subscription order. The receiver under test is real,
and so are the keys, the files on disk and the bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
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
from edge_agent.ota.actions import Installed
from edge_agent.ota.manifest import Target, UpdateRejectedError, chunk_topic, seal, update_topic
from edge_agent.ota.receiver import UNSERVED_REASON, OtaReceiver, OtaSettings
from tests.support.bundles import bundle_files, tiny_onnx_model, write_bundle
from tests.support.keys import Operator
from tests.support.ota_protocol import (
    CHUNK,
    DEVICE,
    FLEET,
    NOW,
    PREFIX,
    Device,
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


def test_valid_update_installs_bundle_byte_for_byte(
    operator: Operator, make_device: DeviceFactory, tmp_path: Path
) -> None:
    device = make_device()
    files = bundle_files(version="1.1.0")
    update = push(operator, files)
    assert len(update.messages) > 14  # model.onnx alone is a dozen 1 KiB chunks

    actions = deliver(device, retained(update))

    installed = device.models_dir / "sentiment" / "1.1.0"
    assert [a for a in actions if isinstance(a, Installed)] == [
        Installed("sentiment", "1.1.0", installed)
    ]
    assert {p.name: p.read_bytes() for p in installed.iterdir()} == {
        **files,
        "manifest.sig": operator.signer.sign(signed_as(BUNDLE_MANIFEST, files["manifest.json"])),
    }
    operator.keyring.verify(
        signed_as(BUNDLE_MANIFEST, files["manifest.json"]),
        (installed / "manifest.sig").read_bytes(),
    )
    states = [r.state for r in device.reports]
    assert states[0] == "downloading" and states[-2:] == ["verified", "installed"]
    assert device.reports[-1].document["received"] == update.manifest.total_chunks
    assert not (device.state_dir / "ota" / update.manifest.update_id).exists()
    assert not any("/blob/" in topic for topic in device.subscribed)


def test_fleet_update_installs_and_swap_result_is_reported(
    operator: Operator, make_device: DeviceFactory
) -> None:
    device = make_device()
    deliver(device, retained(push(operator, bundle_files(), target=Target(fleet=FLEET))))
    assert device.last_state == "installed"
    device.apply(device.receiver.on_swap_result("sentiment", "1.1.0", None))
    assert device.last_state == "swapped"
    assert device.reports[-1].topic == f"{PREFIX}/device/{DEVICE}/report"


def test_bundle_no_route_uses_is_installed_and_says_it_will_not_be_served(
    operator: Operator, make_device: DeviceFactory
) -> None:
    routed = make_device(served=frozenset({"sentiment"}))
    deliver(routed, retained(push(operator, bundle_files(version="1.1.0"))))
    assert (routed.last_state, routed.last_reason) == ("installed", "None")

    unrouted = make_device(served=frozenset({"intent"}))
    deliver(unrouted, retained(push(operator, bundle_files(version="1.2.0"))))
    assert (unrouted.last_state, unrouted.last_reason) == ("installed", UNSERVED_REASON)
    assert (unrouted.models_dir / "sentiment" / "1.2.0" / "model.onnx").is_file()


def test_update_flips_current_symlink_when_one_is_in_use(
    operator: Operator, make_device: DeviceFactory
) -> None:
    device = make_device()
    write_bundle(device.models_dir, bundle_files(version="1.0.0"))
    (device.models_dir / "sentiment" / "current").symlink_to("1.0.0")
    deliver(device, retained(push(operator, bundle_files(version="1.1.0"))))
    assert device.last_state == "installed"
    assert (device.models_dir / "sentiment" / "current").readlink() == Path("1.1.0")


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


def test_an_install_that_fails_on_the_disk_is_tried_again_on_the_next_delivery(
    operator: Operator, make_device: DeviceFactory
) -> None:
    """Before, any failure while installing was recorded as a final outcome: a transient
    disk error refused that update for ever."""
    device = make_device()
    blocker = device.models_dir / "sentiment"
    device.models_dir.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the model folder goes")  # the install's rename fails
    update = retained(push(operator, bundle_files(version="2.0.0")))
    deliver(device, update)
    assert device.last_state == "failed"
    assert device.last_reason.startswith("install failed:")

    blocker.unlink()
    deliver(device, update)  # the retained update again, as on a reconnect
    assert device.last_state == "installed"
    assert (device.models_dir / "sentiment" / "2.0.0" / "model.onnx").is_file()


def test_at_most_two_updates_download_at_once_and_a_stalled_one_gives_its_slot_back(
    operator: Operator, make_device: DeviceFactory
) -> None:
    now = [NOW]
    device = make_device(clock=lambda: now[0])
    updates = [
        retained(push(operator, bundle_files(name=name, version="2.0.0")))
        for name in ("alpha", "beta", "gamma")
    ]
    for update in updates[:2]:  # manifests only: their chunks never come
        manifest_topic = next(topic for topic in update if "/blob/" not in topic)
        device.apply(device.receiver.on_message(manifest_topic, update[manifest_topic]))
    third_topic = next(topic for topic in updates[2] if "/blob/" not in topic)
    device.apply(device.receiver.on_message(third_topic, updates[2][third_topic]))
    assert device.last_state == "failed"
    assert device.last_reason == "busy: 2 updates already downloading"

    now[0] = NOW + timedelta(minutes=11)  # no chunk for longer than the stall timeout
    device.apply(device.receiver.on_message(third_topic, updates[2][third_topic]))
    stalled = [r.document for r in device.reports if r.document.get("state") == "failed"]
    assert [r["reason"] for r in stalled[1:3]] == ["stalled: no chunk for 10 minutes"] * 2
    assert device.last_state == "downloading"  # gamma got a slot
    deliver(device, updates[2])
    assert device.last_state == "installed"


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


def test_interrupted_transfer_resumes_after_restart(
    operator: Operator, make_device: DeviceFactory
) -> None:
    update = push(operator, bundle_files())
    store = retained(update)
    first = make_device()
    deliver(first, store, max_chunks=7)
    assert first.last_state == "downloading"
    received = {t for t in first.asked if "/blob/" in t} - first.subscribed
    assert len(received) == 7

    # Restart: a new receiver over the same folders. It asks only for what is missing.
    second = make_device()
    assert second.reports[0].state == "downloading"
    assert second.reports[0].document["received"] == 7
    deliver(second, store)
    asked_again = {t for t in second.asked if "/blob/" in t}
    assert asked_again.isdisjoint(received)
    assert len(asked_again) == update.manifest.total_chunks - 7
    assert second.last_state == "installed"
    assert (second.models_dir / "sentiment" / "1.1.0" / "model.onnx").read_bytes() == (
        bundle_files()["model.onnx"]
    )


def test_chunks_lost_from_staging_are_fetched_again(
    operator: Operator, make_device: DeviceFactory
) -> None:
    """A power cut may lose unsynced chunk writes: resume re-hashes, it does not trust."""
    update = push(operator, bundle_files())
    store = retained(update)
    first = make_device()
    deliver(first, store, max_chunks=7)
    part = first.state_dir / "ota" / update.manifest.update_id / "bundle" / "model.onnx.part"
    data = bytearray(part.read_bytes())
    data[0:CHUNK] = bytes(CHUNK)
    part.write_bytes(bytes(data))

    second = make_device()
    assert second.reports[0].document["received"] == 6
    deliver(second, store)
    assert second.last_state == "installed"


def test_retained_manifest_of_a_finished_update_is_ignored_after_restart(
    operator: Operator, make_device: DeviceFactory
) -> None:
    store = retained(push(operator, bundle_files()))
    deliver(make_device(), store)
    again = make_device()
    deliver(again, store)
    assert again.reports == []
    assert not any("/blob/" in t for t in again.subscribed)


def test_same_bundle_via_device_and_fleet_is_installed_once(
    operator: Operator, make_device: DeviceFactory
) -> None:
    files = bundle_files()
    device = make_device()
    deliver(device, retained(push(operator, files)))
    deliver(device, retained(push(operator, files, target=Target(fleet=FLEET))))
    assert device.last_state == "installed"
    assert device.last_reason == "already installed"


def test_update_topics_follow_the_prefix(make_device: DeviceFactory) -> None:
    device = make_device()
    assert device.subscribed == {
        update_topic(PREFIX, device=DEVICE),
        update_topic(PREFIX, fleet=FLEET),
    }


def test_keyring_without_the_operator_key_refuses(
    operator: Operator, make_device: DeviceFactory
) -> None:
    device = make_device(keyring=Keyring({}))
    deliver(device, retained(push(operator, bundle_files())))
    assert device.last_state == "rejected"
    assert "unknown key id" in device.last_reason


def test_start_after_reconnect_resubscribes_chunks_in_flight(
    operator: Operator, make_device: DeviceFactory
) -> None:
    """A broker that did not keep the session forgot the chunk subscriptions too."""
    update = push(operator, bundle_files())
    device = make_device()
    deliver(device, retained(update), max_chunks=3)
    waiting = {t for t in device.subscribed if "/blob/" in t}
    assert waiting
    device.subscribed.clear()  # the connection dropped
    device.apply(device.receiver.start())
    assert {t for t in device.subscribed if "/blob/" in t} == waiting
    deliver(device, retained(update))
    assert device.last_state == "installed"


def test_staged_update_whose_key_is_no_longer_trusted_is_dropped_on_restart(
    operator: Operator, make_device: DeviceFactory
) -> None:
    update = push(operator, bundle_files())
    first = make_device()
    deliver(first, retained(update), max_chunks=3)
    staged = first.state_dir / "ota" / update.manifest.update_id
    assert staged.is_dir()
    second = make_device(keyring=Keyring({}))
    assert second.last_state == "rejected"
    assert "unknown key id" in second.last_reason
    assert not staged.exists()


def test_update_needing_a_newer_agent_is_refused(
    operator: Operator, make_device: DeviceFactory
) -> None:
    device = make_device()
    deliver(device, retained(push(operator, bundle_files(), min_agent_version="9.0.0")))
    assert device.last_state == "rejected"
    assert device.last_reason == "needs agent 9.0.0, this is 0.1.0"


@pytest.mark.skipif(
    not os.access("/dev/shm", os.W_OK), reason="needs a second filesystem (/dev/shm)"
)
def test_state_dir_on_another_filesystem_installs_by_copy(
    operator: Operator, tmp_path: Path
) -> None:
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same filesystem here")
        models_dir = tmp_path / "models"
        models_dir.mkdir()
        receiver = OtaReceiver(
            OtaSettings(device_id=DEVICE, prefix=PREFIX), operator.keyring, models_dir,
            Path(shm), clock=lambda: NOW,
        )  # fmt: skip
        device = Device(models_dir, Path(shm), receiver, set(), [])
        device.apply(receiver.start())
        files = bundle_files()
        deliver(device, retained(push(operator, files)))
        assert device.last_state == "installed"
        installed = models_dir / "sentiment" / "1.1.0"
        assert (installed / "model.onnx").read_bytes() == files["model.onnx"]
        assert not (models_dir / "sentiment" / ".tmp-1.1.0").exists()


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


def test_a_stray_high_version_folder_does_not_freeze_updates(
    operator: Operator, make_device: DeviceFactory
) -> None:
    """Before: any `<model>/99.0.0/manifest.json` became the rollback floor, so every real
    update was refused as a downgrade until someone removed it by hand."""
    device = make_device()
    stray = device.models_dir / "sentiment" / "99.0.0"
    stray.mkdir(parents=True)
    (stray / "manifest.json").write_bytes(bundle_files(version="99.0.0")["manifest.json"])
    deliver(device, retained(push(operator, bundle_files(version="1.1.0"))))
    assert device.last_state == "installed", device.last_reason
    # A real bundle still sets the floor: nothing older than it goes in unsigned-as-downgrade.
    write_bundle(device.models_dir, bundle_files(version="2.0.0"))
    deliver(device, retained(push(operator, bundle_files(version="1.5.0"))))
    assert device.last_reason.startswith(
        "rollback: version 1.5.0 is not newer than installed 2.0.0"
    )
