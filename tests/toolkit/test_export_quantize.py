"""Export and quantization through the real path, checked against transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from transformers import SqueezeBertConfig, SqueezeBertForSequenceClassification

from edge_agent.toolkit.export import export_onnx, hf_logits, max_logit_difference, onnx_logits
from edge_agent.toolkit.quantize import argmax_agreement, quantize_int8
from tests.support.tiny_bundle import SAMPLE_TEXTS, build_tiny_model, build_tiny_tokenizer


def _model(**groups: Any) -> Any:
    config = SqueezeBertConfig(
        vocab_size=300,
        hidden_size=48,
        embedding_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=40,
        num_labels=3,  # type: ignore[call-arg]  # a PretrainedConfig kwarg
        **groups,
    )
    torch.manual_seed(3)
    model: Any = SqueezeBertForSequenceClassification(config)
    model.eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.3)  # biases too: the graph folds several of them
    return model


@pytest.mark.parametrize(
    "groups",
    [
        {},  # squeezebert-uncased grouping: q, k, v, intermediate, output = 4; post = 1
        {"q_groups": 2, "k_groups": 3, "v_groups": 1},  # unequal: q, k, v apart
        {"post_attention_groups": 2, "intermediate_groups": 1, "output_groups": 3},
        {  # every group 1: BERT's layers (how pretrained BERT weights are loaded)
            "q_groups": 1,
            "k_groups": 1,
            "v_groups": 1,
            "intermediate_groups": 1,
            "output_groups": 1,
        },
    ],
)
def test_export_matches_transformers_with_padding(groups: dict[str, Any], tmp_path: Path) -> None:
    model = _model(**groups)
    path = export_onnx(model, tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 300, size=(3, 17)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 9:] = 0  # padded rows exercise the attention mask
    mask[2, 3:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    assert np.abs(hf_logits(model, feeds) - onnx_logits(path, feeds)).max() <= 1e-4


def test_exported_graph_has_the_contract_interface(tmp_path: Path) -> None:
    graph = onnx.load(str(export_onnx(build_tiny_model(2, 0), tmp_path / "m.onnx"))).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.output] == ["logits"]
    assert not any(node.op_type == "Conv" for node in graph.node)


def test_int8_uses_integer_matmuls_and_agrees_with_fp32(tmp_path: Path) -> None:
    model = build_tiny_model(2, 0)
    fp32 = export_onnx(model, tmp_path / "fp32.onnx")
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx")
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert "ConvInteger" not in ops
    assert int8.stat().st_size < fp32.stat().st_size
    tokenizer = build_tiny_tokenizer()
    agreement = argmax_agreement(fp32, int8, tokenizer, list(SAMPLE_TEXTS), max_seq_len=32)
    assert agreement >= 11 / 12
    assert max_logit_difference(model, fp32, tokenizer, list(SAMPLE_TEXTS)) <= 1e-4


@pytest.mark.parametrize(
    ("x_shape", "w_shape"),
    [((2, 40, 16), (16, 8)), ((2, 4, 40, 8), (4, 8, 6))],  # plain and grouped (b, g, l, c/g)
)
def test_smoothing_outlier_channels_brings_int8_closer_to_fp32(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...]
) -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edge_agent.toolkit.quantize import quantize_matmul_weights, smooth_outlier_inputs

    rng = np.random.default_rng(2)
    weight = rng.normal(size=w_shape).astype(np.float32)

    def inputs() -> np.ndarray:
        x = rng.normal(size=x_shape).astype(np.float32)
        x[..., 3] *= 60.0  # one loud channel, like a trained model's outlier neuron
        return x

    def graph() -> Any:
        return helper.make_model(
            helper.make_graph(
                [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                "one_matmul",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                [numpy_helper.from_array(weight, "w")],
            ),
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        )

    def run(model: Any, x: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return np.asarray(session.run(["y"], {"x": x})[0])

    calibration = [{"x": inputs()} for _ in range(3)]
    test = inputs()
    exact = test @ weight
    smoothed_fp32 = graph()
    assert smooth_outlier_inputs(smoothed_fp32, calibration) == 1
    np.testing.assert_allclose(run(smoothed_fp32, test), exact, rtol=1e-4, atol=1e-3)
    errors = {}
    for name, smooth in (("plain", False), ("smoothed", True)):
        model = graph()
        if smooth:
            smooth_outlier_inputs(model, calibration)
        quantize_matmul_weights(model)
        errors[name] = float(np.abs(run(model, test) - exact).mean())
    assert errors["smoothed"] < 0.5 * errors["plain"], errors
    quiet = graph()  # no outlier channel: nothing to smooth, the graph is left alone
    assert smooth_outlier_inputs(quiet, [{"x": rng.normal(size=x_shape).astype(np.float32)}]) == 0
