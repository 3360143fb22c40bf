"""The OTA protocol end to end in one process: push side builds messages, receiver installs.

`deliver` plays the broker's part for retained messages: each topic the device subscribes
to gets its retained payload once, in subscription order. The receiver under test is real,
and so are the keys, the files on disk and the bundle.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from edge_agent.bundle.keys import (
    BUNDLE_MANIFEST,
    Keyring,
    signed_as,
)
from edge_agent.ota.actions import Installed
from edge_agent.ota.manifest import Target, update_topic
from edge_agent.ota.receiver import UNSERVED_REASON, OtaReceiver, OtaSettings
from tests.support.bundles import bundle_files, write_bundle
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
