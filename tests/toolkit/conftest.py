"""A tiny Hugging Face SqueezeBERT checkpoint folder, as `save_pretrained` writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_bundle import SAMPLE_TEXTS, build_tiny_model, build_tiny_tokenizer


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoint")
    build_tiny_model(num_labels=2, seed=1).save_pretrained(folder)
    build_tiny_tokenizer().save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="session")
def texts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    lines = [*SAMPLE_TEXTS, "a much longer sentence " * 20, "door"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
