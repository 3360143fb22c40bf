"""The model store without MQTT: real tiny bundles, the real loader thread."""

from __future__ import annotations

import gc
import shutil
import time
import weakref
from pathlib import Path

import pytest

from edge_agent.bundle.layout import BundleError
from edge_agent.models.store import BundleRefused, ModelStore, Swapped
from tests.support.bundles import SwapBundles, install


def _wait_swaps(store: ModelStore, timeout_s: float = 20) -> list[Swapped]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        swapped = store.apply_ready()
        if swapped:
            return swapped
        time.sleep(0.02)
    raise AssertionError("nothing became ready to swap")


def test_new_version_is_loaded_aside_and_swapped_only_when_asked(
    tmp_path: Path, bundles: SwapBundles
) -> None:
    models = tmp_path / "models"
    install(bundles.v1, models)
    store = ModelStore.load(models, ["tiny"], threads=1)
    rejected: list[BundleRefused] = []
    store.start_watching(0.05, rejected.append)
    try:
        install(bundles.v2, models)
        deadline = time.monotonic() + 20
        while not store._ready and time.monotonic() < deadline:  # peek: loaded aside
            time.sleep(0.02)
        assert store.versions() == {"tiny": "1.0.0"}, "loaded, but not swapped until asked"
        swapped = _wait_swaps(store)
        assert [(s.version, s.previous_version, s.labels_changed) for s in swapped] == [
            ("2.0.0", "1.0.0", False)
        ]
        assert store.get("tiny").manifest.version == "2.0.0"
        assert store.get("tiny").classify(["the movie was great fun"])[0].label
        install(bundles.v2, models, version="2.1.0", tamper=lambda b: (b / "model.onnx").unlink())
        deadline = time.monotonic() + 10
        while not rejected and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # six polls: one rejection, no retries
        assert [(r.version, r.serving_version) for r in rejected] == [("2.1.0", "2.0.0")]
        assert "model.onnx: listed in the manifest but missing" in rejected[0].reason
        assert store.apply_ready() == []
    finally:
        store.stop_watching()


def test_a_model_without_any_loadable_bundle_is_a_startup_error(
    tmp_path: Path, bundles: SwapBundles
) -> None:
    models = tmp_path / "models"
    install(bundles.v2, models, tamper=lambda b: (b / "tokenizer.json").write_text("{}"))
    # Filed under a version its manifest does not name: results would lie about it.
    shutil.copytree(bundles.v1, models / "tiny" / "1.0.1")
    with pytest.raises(
        BundleError, match=r"manifest says tiny 1\.0\.0, but the folder is tiny/1\.0\.1"
    ):
        ModelStore.load(models, ["tiny"], threads=1)


def test_a_swapped_out_model_is_freed_from_a_frozen_heap_even_in_a_reference_cycle(
    tmp_path: Path, bundles: SwapBundles
) -> None:
    """The service freezes its start-up heap, the first models with it (daemon/service.py):
    the store must still free a model it swaps out, even one that only the cyclic collector
    can free, or every swap would keep an onnxruntime session alive for good."""
    models = tmp_path / "models"
    install(bundles.v1, models)
    store = ModelStore.load(models, ["tiny"], threads=1)
    first = store.get("tiny")
    vars(first)["itself"] = first  # a cycle: reference counting alone never frees it
    gone = weakref.ref(first)
    del first
    gc.freeze()
    store.start_watching(0.05, lambda _: None)
    try:
        install(bundles.v2, models)
        assert [s.version for s in _wait_swaps(store)] == ["2.0.0"]
        deadline = time.monotonic() + 10
        while gone() is not None and time.monotonic() < deadline:  # released by the loader
            time.sleep(0.02)
        assert gone() is None, "the swapped-out model is still alive"
    finally:
        store.stop_watching()
        gc.unfreeze()
