from __future__ import annotations

import os
import time
from pathlib import Path

from edge_agent.bundle.versions import highest_installed_version, scan_model
from edge_agent.models.watch import ModelWatcher
from tests.support.bundles import bundle_files, write_bundle


def _install(models_dir: Path, version: str) -> Path:
    """The documented safe install: write a dot-folder, then rename into place."""
    staged = write_bundle(models_dir / ".staging", bundle_files(version=version))
    target = models_dir / "sentiment" / version
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staged, target)
    return target


def test_highest_version_is_chosen_and_dot_folders_ignored(tmp_path: Path) -> None:
    _install(tmp_path, "1.2.0")
    _install(tmp_path, "1.10.0")
    (tmp_path / "sentiment" / ".tmp-9.0.0").mkdir()
    (tmp_path / "sentiment" / "2.0.0").mkdir()  # no manifest yet: not a bundle
    watcher = ModelWatcher(tmp_path, ["sentiment"])
    (request,) = watcher.poll()
    assert request.bundle.version == "1.10.0" and request.previous is None
    assert highest_installed_version(tmp_path, "sentiment") == (1, 10, 0)
    assert watcher.poll() == []  # pending: not asked twice while loading


def test_new_version_and_current_flip_are_detected(tmp_path: Path) -> None:
    _install(tmp_path, "1.0.0")
    watcher = ModelWatcher(tmp_path, ["sentiment"])
    (first,) = watcher.poll()
    watcher.mark_loaded(first.bundle)
    assert watcher.poll() == []

    _install(tmp_path, "1.1.0")
    (second,) = watcher.poll()
    assert (second.bundle.version, second.previous) == ("1.1.0", first.bundle)
    watcher.mark_loaded(second.bundle)

    link = tmp_path / "sentiment" / "current"
    link.symlink_to("1.0.0")
    (third,) = watcher.poll()
    assert third.bundle.version == "1.0.0"


def test_failed_bundle_is_not_retried_until_it_changes(tmp_path: Path) -> None:
    _install(tmp_path, "1.0.0")
    watcher = ModelWatcher(tmp_path, ["sentiment"])
    (first,) = watcher.poll()
    watcher.mark_loaded(first.bundle)
    broken = _install(tmp_path, "1.1.0")
    (attempt,) = watcher.poll()
    watcher.mark_failed(attempt.bundle, "golden example 0 gives negative, expected positive")
    for _ in range(3):
        assert watcher.poll() == []
    assert watcher.failure(attempt.bundle) is not None
    assert watcher.loaded("sentiment") == first.bundle

    time.sleep(0.01)
    manifest = broken / "manifest.json"
    manifest.write_bytes(manifest.read_bytes() + b"\n")  # fixed in place: a new stamp
    (retry,) = watcher.poll()
    assert retry.bundle.version == "1.1.0" and retry.bundle != attempt.bundle


def test_failed_current_target_keeps_the_loaded_bundle(tmp_path: Path) -> None:
    _install(tmp_path, "1.0.0")
    _install(tmp_path, "1.1.0")
    link = tmp_path / "sentiment" / "current"
    link.symlink_to("1.0.0")
    watcher = ModelWatcher(tmp_path, ["sentiment"])
    (first,) = watcher.poll()
    watcher.mark_loaded(first.bundle)
    _install(tmp_path, "2.0.0")
    tmp_link = tmp_path / "sentiment" / ".current.tmp"
    tmp_link.symlink_to("2.0.0")
    os.replace(tmp_link, link)
    (attempt,) = watcher.poll()
    watcher.mark_failed(attempt.bundle, "truncated model.onnx")
    assert watcher.poll() == []  # not 1.1.0: the operator pinned a version, keep what runs


def test_startup_falls_back_past_a_broken_current(tmp_path: Path) -> None:
    _install(tmp_path, "1.0.0")
    _install(tmp_path, "1.1.0")
    (tmp_path / "sentiment" / "current").symlink_to("1.1.0")
    watcher = ModelWatcher(tmp_path, ["sentiment"])
    (attempt,) = watcher.poll()
    watcher.mark_failed(attempt.bundle, "bad hash")
    (fallback,) = watcher.poll()
    assert fallback.bundle.version == "1.0.0"


def test_missing_model_folder_is_quiet(tmp_path: Path) -> None:
    assert scan_model(tmp_path, "absent").versions == ()
    assert ModelWatcher(tmp_path, ["absent"]).poll() == []
