"""Tiny bundles built once per session through the real export, quantize and pack path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.bundles import build_tiny_bundle


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    build_tiny_bundle(models)
    build_tiny_bundle(models, name="multi", task="multi-label", labels=("alarm", "door", "light"))
    build_tiny_bundle(models, name="int8only", with_fp32=False)
    build_tiny_bundle(models, name="encoder", task="embedding")
    return models


@pytest.fixture(scope="session")
def tiny_dir(tiny_models: Path) -> Path:
    return tiny_models / "tiny" / "1.0.0"


@pytest.fixture(scope="session")
def multi_dir(tiny_models: Path) -> Path:
    return tiny_models / "multi" / "1.0.0"


@pytest.fixture
def tiny_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle that a test may damage."""
    copy = tmp_path / "tiny" / "1.0.0"
    shutil.copytree(tiny_dir, copy)
    return copy
