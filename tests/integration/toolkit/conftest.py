"""Fixtures for the model commands: tiny SqueezeBERT checkpoints and synthetic labelled data.

The checkpoints are small and randomly initialised (not MiniLM) so an export or a training run
takes seconds; the data is a keyword task a few steps of training can learn, so accuracy
checks are meaningful.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.support.bundles import SAMPLE_TEXTS, build_tiny_model, build_tiny_tokenizer

POSITIVE_WORDS = ("good", "great", "nice", "happy", "love", "fun", "best")
NEGATIVE_WORDS = ("bad", "terrible", "awful", "sad", "hate", "boring", "worst")
FILLER = ("the", "movie", "film", "story", "was", "is", "this", "it", "plot", "music", "very")
TOPIC_WORDS = {"weather": ("rain", "sun", "wind", "cold"), "alarm": ("smoke", "fire", "alarm")}


def _sentence(rng: random.Random, keywords: list[str]) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
    for word in keywords:
        words.insert(rng.randint(0, len(words)), word)
    return " ".join(words)


def sentiment_rows(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = "positive" if i % 2 else "negative"
        words = POSITIVE_WORDS if label == "positive" else NEGATIVE_WORDS
        rows.append((_sentence(rng, [rng.choice(words)]), label))
    return rows


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SqueezeBERT checkpoint folder (hidden 64, 2 layers, groups 4) with its tokenizer."""
    import torch
    from transformers import SqueezeBertForSequenceClassification

    from edge_agent.toolkit.train.minilm import squeezebert_config
    from tests.support.bundles import build_tiny_tokenizer, tiny_vocab

    torch.manual_seed(0)
    config = squeezebert_config(
        num_labels=2,
        hidden=64,
        layers=2,
        heads=4,
        intermediate=256,
        vocab_size=len(tiny_vocab()),
        max_positions=64,
    )
    folder = tmp_path_factory.mktemp("base")
    SqueezeBertForSequenceClassification(config).save_pretrained(str(folder))
    build_tiny_tokenizer().save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="session")
def tiny_query_base(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_base switched to query pooling (toolkit/train/query_pooling.py)."""
    import shutil

    from transformers import SqueezeBertForSequenceClassification

    from edge_agent.toolkit.train.query_pooling import use_query_pooling

    model = SqueezeBertForSequenceClassification.from_pretrained(str(tiny_base))
    use_query_pooling(model)
    folder = tmp_path_factory.mktemp("query_base")
    model.save_pretrained(str(folder))
    shutil.copy(tiny_base / "tokenizer.json", folder / "tokenizer.json")
    return folder


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import csv

    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["message", "sentiment"])
        writer.writerows(sentiment_rows(400, seed=3))
    return path


@pytest.fixture(scope="session")
def topics_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Multi-label rows: each text mentions zero, one or both topics."""
    rng = random.Random(5)
    path = tmp_path_factory.mktemp("data") / "topics.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(300):
            labels = [t for bit, t in enumerate(sorted(TOPIC_WORDS)) if (i >> bit) & 1]
            keywords = [rng.choice(TOPIC_WORDS[t]) for t in labels]
            text = _sentence(rng, keywords)
            handle.write(json.dumps({"text": text, "topics": labels or ["none"]}) + "\n")
    return path


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


@pytest.fixture(scope="session")
def tiny_dense_last_base(tiny_query_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_query_base with a dense last feed-forward (toolkit/train/dense_last_layer.py) whose
    blocks between the groups are filled, as training fills them."""
    import shutil

    import torch

    from edge_agent.toolkit.train.dense_last_layer import (
        densify_last_feed_forward,
        last_feed_forward,
    )
    from edge_agent.toolkit.train.relative_bias import load_classifier

    model = load_classifier(tiny_query_base)
    densify_last_feed_forward(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for conv in last_feed_forward(model):
            scale = conv.weight.abs().mean()
            conv.weight.add_(torch.randn_like(conv.weight) * scale * (conv.weight == 0))
    folder = tmp_path_factory.mktemp("dense_last_base")
    model.save_pretrained(str(folder))
    shutil.copy(tiny_query_base / "tokenizer.json", folder / "tokenizer.json")
    return folder
