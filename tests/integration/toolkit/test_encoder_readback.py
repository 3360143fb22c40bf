"""An encoder bundle's INT8 graph reads back into a transformers checkpoint
(recipes/repack_bundle.py, read_per_group_encoder), so a distillation round can continue from
a shipped bundle when its training checkpoint is gone (recipes/build_encoder.py --init-bundle).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.toolkit.export.to_onnx import load_checkpoint_tokenizer
from edge_agent.toolkit.train.bundle import Deployable, export_graphs, graph_logits
from edge_agent.toolkit.train.data import encode_texts
from edge_agent.toolkit.train.embedding import student_embeddings
from edge_agent.toolkit.train.query_pooling import sentence_pooling
from recipes.repack_bundle import read_per_group_encoder
from tests.support.bundles import SAMPLE_TEXTS

MAX_SEQ_LEN = 64


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("pooling", ["mean", "query", "query, dense last feed-forward"])
def test_an_encoder_graph_reads_back_into_the_checkpoint_it_was_exported_from(
    tiny_base: Path,
    tiny_query_base: Path,
    tiny_dense_last_base: Path,
    tmp_path: Path,
    pooling: str,
) -> None:
    from edge_agent.toolkit.train.dense_last_layer import has_dense_last_feed_forward
    from edge_agent.toolkit.train.relative_bias import load_classifier

    if pooling.startswith("query"):  # toolkit/train/query_pooling.py: the read-back must pool alike
        tiny_base = tiny_query_base
    dense_last = pooling.endswith("dense last feed-forward")
    if dense_last:  # toolkit/train/dense_last_layer.py: and keep the last layer dense
        tiny_base = tiny_dense_last_base
    tokenizer = load_checkpoint_tokenizer(tiny_base)
    _, int8 = export_graphs(
        Deployable(tiny_base, tokenizer),
        tmp_path,
        calibration_texts=SAMPLE_TEXTS,
        max_seq_len=MAX_SEQ_LEN,
        embedding=True,
    )
    vocab = json.loads((tiny_base / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    read_back = read_per_group_encoder(int8, vocab, vocab)
    original = load_classifier(tiny_base).eval()
    for key in ("num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size"):
        assert getattr(read_back.config, key) == getattr(original.config, key), key
    assert sentence_pooling(read_back.config) == pooling.split(",", maxsplit=1)[0]
    assert has_dense_last_feed_forward(read_back.config) == dense_last
    for key in ("q_groups", "intermediate_groups", "output_groups"):
        assert getattr(read_back.config, key) == getattr(original.config, key), key

    ids = encode_texts(tokenizer, SAMPLE_TEXTS, MAX_SEQ_LEN)
    mine = _normalised(student_embeddings(read_back, ids))
    theirs = _normalised(student_embeddings(original, ids))
    graph = _normalised(
        graph_logits(
            int8, tokenizer, SAMPLE_TEXTS, max_seq_len=MAX_SEQ_LEN, threads=1, output="embeddings"
        )
    )
    # The read-back weights differ from the original ones by the weights' rounding to 7 bits
    # alone (a fraction of a percent of each column's range; activations stay fp32 here), so
    # the same function up to that; the INT8 graph adds its activations' rounding on top.
    assert (mine * theirs).sum(axis=1).min() > 0.999
    assert (mine * graph).sum(axis=1).min() > 0.99


def test_a_task_student_can_start_from_an_encoder_bundle(tmp_path: Path) -> None:
    """recipes/build_models.py --init-encoder models/encoder/<version>: the bundle's graph is
    read back into a checkpoint folder, the kind squeezebert_from_encoder loads (a rebuild then
    needs the shipped bundle only, not the encoder's training checkpoint on one machine)."""
    from transformers import SqueezeBertForSequenceClassification

    from recipes.build_models import encoder_checkpoint
    from tests.support.bundles import build_tiny_bundle, build_tiny_tokenizer

    bundle = build_tiny_bundle(tmp_path / "models", name="encoder", task="embedding")
    tokenizer = build_tiny_tokenizer()
    assert encoder_checkpoint(tmp_path, tmp_path / "work", tokenizer) == tmp_path  # not a bundle

    folder = encoder_checkpoint(bundle, tmp_path / "work", tokenizer)

    assert folder is not None and folder != bundle
    read_back = SqueezeBertForSequenceClassification.from_pretrained(str(folder)).eval()
    ids = encode_texts(tokenizer, SAMPLE_TEXTS, MAX_SEQ_LEN)
    mine = _normalised(student_embeddings(read_back, ids))
    graph = _normalised(
        graph_logits(
            bundle / "model.onnx",
            tokenizer,
            SAMPLE_TEXTS,
            max_seq_len=MAX_SEQ_LEN,
            threads=1,
            output="embeddings",
        )
    )
    assert (mine * graph).sum(axis=1).min() > 0.99  # as in the read-back test above
