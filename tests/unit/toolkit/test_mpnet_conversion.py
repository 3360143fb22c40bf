"""MPNet as a SqueezeBERT with a relative position bias: the same logits in torch and in the
product's graph, checked on a small random MPNet (the real one is the sentiment-large bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from transformers import MPNetConfig, MPNetForSequenceClassification

from edge_agent.toolkit.export.graph_ops import RELATIVE_BIAS_NODE
from edge_agent.toolkit.export.quantize import quantize_int8
from edge_agent.toolkit.export.to_onnx import export_onnx, hf_logits, onnx_logits
from edge_agent.toolkit.train.mpnet import bert_to_mpnet_ids, squeezebert_from_mpnet
from edge_agent.toolkit.train.relative_bias import has_relative_bias, load_classifier

LENGTH = 37  # past MPNet's 8 exact distances, into its logarithmic buckets


def _mpnet() -> Any:
    config = MPNetConfig(
        vocab_size=30527,  # BERT's 30,522 ids shifted by four, as all-mpnet-base-v2's
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=LENGTH + 3,
        num_labels=3,
    )
    torch.manual_seed(5)
    model: Any = MPNetForSequenceClassification(config)
    model.eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.3)
        # a bias on the scale of the scores, so that leaving it out shows
        model.mpnet.encoder.relative_attention_bias.weight.normal_(std=3.0)
    return model


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = rng.integers(999, 30522, size=(3, LENGTH)).astype(np.int64)  # BERT-uncased ids
    ids[:, 0] = 101  # [CLS]
    mask = np.ones_like(ids)
    mask[1, 20:] = 0  # padded rows exercise the mask beside the bias
    mask[2, 4:] = 0
    ids[mask == 0] = 0  # [PAD]
    return {"input_ids": ids, "attention_mask": mask}


def _mpnet_logits(model: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        out = model(
            input_ids=bert_to_mpnet_ids()[torch.from_numpy(feeds["input_ids"])],
            attention_mask=torch.from_numpy(feeds["attention_mask"]),
        )
    result: np.ndarray = out.logits.numpy()
    return result


def test_converted_model_computes_mpnets_logits_in_torch_and_in_the_graph(
    tmp_path: Path,
) -> None:
    mpnet = _mpnet()
    converted = squeezebert_from_mpnet(mpnet)
    feeds = _feeds()
    expected = _mpnet_logits(mpnet, feeds)
    assert np.abs(expected).max() > 0.1  # a model whose logits say something
    assert np.abs(hf_logits(converted, feeds) - expected).max() <= 1e-4
    graph = export_onnx(converted, tmp_path / "model.fp32.onnx")
    assert np.abs(onnx_logits(graph, feeds) - expected).max() <= 1e-4


def test_the_bias_is_what_makes_them_equal() -> None:
    mpnet = _mpnet()
    converted = squeezebert_from_mpnet(mpnet)
    with torch.no_grad():
        converted.transformer.encoder.relative_attention_bias.weight.zero_()
    feeds = _feeds()
    assert np.abs(hf_logits(converted, feeds) - _mpnet_logits(mpnet, feeds)).max() > 1e-2


def test_a_saved_checkpoint_loads_back_with_its_bias(tmp_path: Path) -> None:
    converted = squeezebert_from_mpnet(_mpnet())
    converted.save_pretrained(str(tmp_path / "checkpoint"))
    loaded = load_classifier(tmp_path / "checkpoint")
    assert has_relative_bias(loaded.config)
    feeds = _feeds()
    assert np.array_equal(hf_logits(loaded, feeds), hf_logits(converted, feeds))


def test_quantization_keeps_the_bias_table_in_fp32(tmp_path: Path) -> None:
    converted = squeezebert_from_mpnet(_mpnet())
    fp32 = export_onnx(converted, tmp_path / "model.fp32.onnx")
    int8 = quantize_int8(fp32, tmp_path / "model.onnx", calibration=[_feeds()])
    graph = onnx.load(str(int8)).graph
    tables = {init.name: init for init in graph.initializer}
    lookups = [n for n in graph.node if n.name.startswith(RELATIVE_BIAS_NODE)]
    assert len(lookups) == 1 and lookups[0].op_type == "Gather"
    assert tables[lookups[0].input[0]].data_type == onnx.TensorProto.FLOAT
    # ...while the word embeddings are INT8
    assert any(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2 for t in tables.values())
