"""The encoder engine on a tiny embedding bundle built through the real export, quantize and
pack path: normalised embeddings, INT8 close to fp32, golden embeddings enforced, and the
wrong kind of bundle refused by either loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_agent.bundle.layout import BundleError
from edge_agent.engine.classifier import load_classifier
from edge_agent.engine.encoder import load_encoder
from tests.support.bundles import SAMPLE_TEXTS, edit_manifest


def test_embeddings_are_normalised_and_int8_follows_fp32(tiny_models: Path) -> None:
    bundle = tiny_models / "encoder" / "1.0.0"
    int8 = load_encoder(bundle, precision="int8", threads=1)
    fp32 = load_encoder(bundle, precision="fp32", threads=1)
    a, truncated = int8.embed(SAMPLE_TEXTS)
    b, _ = fp32.embed(SAMPLE_TEXTS)
    assert a.shape == (len(SAMPLE_TEXTS), int8.dimension) and len(truncated) == len(a)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(axis=1).min()) > 0.95
    # A text's embedding does not depend on its batch-mates (static activation scales).
    alone = np.concatenate([int8.embed([text])[0] for text in SAMPLE_TEXTS])
    assert float((alone * a).sum(axis=1).min()) > 0.9999


def test_a_changed_golden_embedding_refuses_the_bundle(tiny_models: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "encoder" / "1.0.0"
    shutil.copytree(tiny_models / "encoder" / "1.0.0", bundle)
    golden = json.loads((bundle / "manifest.json").read_text())["golden"]
    golden[0]["embedding"] = [-v for v in golden[0]["embedding"]]
    edit_manifest(bundle, golden=golden)
    with pytest.raises(BundleError, match="golden example"):
        load_encoder(bundle, precision="int8", threads=1)


def test_each_loader_refuses_the_other_kind(tiny_models: Path) -> None:
    with pytest.raises(BundleError, match="not a classifier"):
        load_classifier(tiny_models / "encoder" / "1.0.0", threads=1)
    with pytest.raises(BundleError, match="not an embedding bundle"):
        load_encoder(tiny_models / "tiny" / "1.0.0", threads=1)
