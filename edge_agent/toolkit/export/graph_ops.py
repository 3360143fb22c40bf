"""The pieces graph.py writes SqueezeBERT with: a small ONNX builder and grouped MatMuls.

A grouped 1x1 convolution becomes a Split of the channels, one 2D MatMul per group and a
Concat (graph.py's docstring says why that shape is the fast one). Weights arrive as torch
tensors and leave as ONNX initializers; onnx is imported inside the builder so that this
module, like the rest of the toolkit, costs nothing until an export runs.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

# Node-name prefix of the relative position bias lookup: a few hundred values read by every
# layer, kept fp32 when the word embeddings' Gather is quantized (quantize.py).
RELATIVE_BIAS_NODE: Final = "relative_bias"


class GraphBuilder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        from onnx import helper

        domain = attrs.pop("domain", "")
        out = self.name(hint or op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=out, domain=domain, **attrs)
        )
        return out


def float_array(tensor: Any) -> np.ndarray:
    array: np.ndarray = tensor.detach().cpu().numpy().astype(np.float32)
    return array


def grouped_weight(conv: Any) -> np.ndarray:
    """Conv1d(k=1, groups=g) weight (cout, cin/g, 1) -> (g, cin/g, cout/g) for x @ w."""
    w = float_array(conv.weight)[:, :, 0]
    g = conv.groups
    cout, cin_g = w.shape
    return np.ascontiguousarray(w.reshape(g, cout // g, cin_g).transpose(0, 2, 1))


def split_channels(graph: GraphBuilder, x: str, weight: np.ndarray) -> list[str]:
    """(b, l, c) -> one (b, l, cin/g) tensor per group of `weight` (g, cin/g, cout/g): one
    copy, like a Transpose would be."""
    groups, cin_g, _ = weight.shape
    if groups == 1:
        return [x]
    from onnx import helper

    parts = [graph.name("group") for _ in range(groups)]
    # Sizes spelled out: without them onnxruntime 1.32's common-subexpression pass merges two
    # Splits of one tensor into different numbers of parts (q and k groups 2 and 3).
    sizes = graph.const("sizes", np.full(groups, cin_g, dtype=np.int64))
    graph.nodes.append(
        helper.make_node("Split", [x, sizes], parts, name=parts[0] + "_split", axis=-1)
    )
    return parts


def concat_channels(graph: GraphBuilder, parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else graph.op("Concat", parts, axis=-1)


def matmuls_per_group(
    graph: GraphBuilder, parts: list[str], weight: np.ndarray, bias: np.ndarray | None = None
) -> list[str]:
    """Group g's (b, l, cin/g) @ weight[g] (cin/g, cout/g) [+ bias of group g], one 2D
    MatMul each: onnxruntime pre-packs 2D weights only, and a 1D bias right after the
    MatMul becomes the integer GEMM's own bias input on quantization (quantize.py)."""
    groups = weight.shape[0]
    biases = [None] * groups if bias is None else list(bias.reshape(groups, -1))
    outputs = []
    for part, w, b in zip(parts, weight, biases, strict=True):
        y = graph.op("MatMul", [part, graph.const("w", np.ascontiguousarray(w))])
        if b is not None:
            y = graph.op("Add", [y, graph.const("bias", np.ascontiguousarray(b))])
        outputs.append(y)
    return outputs


def grouped_matmul(
    graph: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray | None = None
) -> str:
    """x @ block-diagonal weight (g, cin/g, cout/g) [+ bias]: (b, l, cin) -> (b, l, cout)."""
    parts = split_channels(graph, x, weight)
    return concat_channels(graph, matmuls_per_group(graph, parts, weight, bias))


def from_heads(graph: GraphBuilder, y: str, channels: int) -> str:
    """(b, heads, l, d) -> (b, l, c)."""
    shape = graph.const("shape", np.array([0, 0, channels], dtype=np.int64))
    return graph.op("Reshape", [graph.op("Transpose", [y], perm=[0, 2, 1, 3]), shape])


def grouped_vecmat(vector: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """vector @ block-diagonal weight, for folding biases through a grouped layer."""
    groups, cin_g, _ = weight.shape
    parts = vector.reshape(groups, 1, cin_g) @ weight
    result: np.ndarray = parts.reshape(-1)
    return result


def first_token(graph: GraphBuilder, x: str, axis: int, count: int = 1) -> str:
    """x[..., 0:count, ...] along `axis`, keeping the axis."""
    zero, end = (graph.const("index", np.array([i], dtype=np.int64)) for i in (0, count))
    return graph.op("Slice", [x, zero, end, graph.const("axes", np.array([axis], np.int64))])


def relative_position_bias(
    graph: GraphBuilder, table: np.ndarray, buckets: np.ndarray, length: str
) -> str:
    """(1, heads, l, l): table[bucket of (i, j)] per head, for the batch's length l (`length`,
    a 1-element int64 tensor) cut from the buckets of the longest input."""
    ends = graph.op("Concat", [length, length], axis=0)
    zeros = graph.const("index", np.array([0, 0], dtype=np.int64))
    axes = graph.const("axes", np.array([0, 1], dtype=np.int64))
    cut = graph.op("Slice", [graph.const("buckets", buckets), zeros, ends, axes])
    table_name = graph.const("relative_bias", table)
    values = graph.op("Gather", [table_name, cut], RELATIVE_BIAS_NODE, axis=0)  # l, l, h
    heads_first = graph.op("Transpose", [values], perm=[2, 0, 1])
    return graph.op("Unsqueeze", [heads_first, graph.const("axes", np.array([0], np.int64))])
