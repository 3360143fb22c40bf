"""The wire-format scanner against models written by the real `onnx` package."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_agent.bundle.onnx_scan import OnnxCheckError, check_no_external_data
from tests.support.bundles import tiny_onnx_model


def _externalise(tensor: TensorProto) -> TensorProto:
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "/etc/shadow"
    tensor.ClearField("raw_data")
    return tensor


def test_self_contained_model_passes() -> None:
    check_no_external_data(tiny_onnx_model().SerializeToString())


def test_external_initializer_is_refused_naming_the_tensor() -> None:
    model = tiny_onnx_model()
    tensor = model.graph.initializer[1]
    _externalise(tensor)
    with pytest.raises(
        OnnxCheckError, match=f"ONNX tensor '{tensor.name}' references external data"
    ):
        check_no_external_data(model.SerializeToString())


def test_external_data_location_flag_alone_is_refused() -> None:
    model = tiny_onnx_model()
    tensor = model.graph.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL
    with pytest.raises(OnnxCheckError, match=f"'{tensor.name}'"):
        check_no_external_data(model.SerializeToString())


def test_external_tensor_inside_a_subgraph_attribute_is_refused() -> None:
    constant = numpy_helper.from_array(np.ones(3, dtype=np.float32), "hidden_const")
    then_graph = helper.make_graph(
        [helper.make_node("Constant", [], ["out"], value=_externalise(constant))],
        "then",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])],
    )
    else_graph = helper.make_graph(
        [
            helper.make_node(
                "Constant",
                [],
                ["out"],
                value=numpy_helper.from_array(np.zeros(3, dtype=np.float32)),
            )
        ],
        "else",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)],
        "outer",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(OnnxCheckError, match="'hidden_const' references external data"):
        check_no_external_data(model.SerializeToString())


def test_model_saved_with_external_data_by_onnx_is_refused() -> None:
    model = tiny_onnx_model()
    onnx.external_data_helper.convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0
    )
    with pytest.raises(OnnxCheckError, match="references external data"):
        check_no_external_data(model.SerializeToString())


@pytest.mark.parametrize("cut", [1, 7, 100, -1])
def test_truncated_model_is_refused(cut: int) -> None:
    data = tiny_onnx_model().SerializeToString()
    with pytest.raises(OnnxCheckError, match="truncated"):
        check_no_external_data(data[:cut])


def test_garbage_is_refused() -> None:
    with pytest.raises(OnnxCheckError):
        check_no_external_data(b"\x0f\xff\xff\xff")
