"""Static activation scales: INT8 MatMul inputs quantized with scales fixed at pack time.

DynamicQuantizeMatMul takes one scale per run from the min and max of the whole input
tensor, i.e. over every text of a padded batch: one long or unusual text changes the
rounding of all the others, so a text's label depended on its batch-mates (8 of 872 SST-2
dev labels flipped between batch 1 and batch 16). Here each INT8 MatMul input gets a
scale and zero point calibrated once, on real texts, and stored in the graph:

    QuantizeLinear(x, scale, zero_point) -> MatMulIntegerToFloat(x_q, W_q, scale, w_scale,
                                                                  zero_point, w_zero, bias)

Every element is then rounded the same way whatever else is in the batch, the integer
GEMM's sums are exact, and the fp32 ops around it work row by row (LayerNorm) or add
exact zeros for padding (masked softmax), so a text's logits do not depend on its
batch-mates or its padding. It is also one pass over the input fewer than the dynamic
form (no min/max search), and the same integer GEMM kernel runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

# A quantized activation spans [0, 255] with a zero point, like DynamicQuantizeLinear's.
_LEVELS: Final = 255.0


def activation_ranges(
    model: Any, feeds: Sequence[dict[str, np.ndarray]], names: Sequence[str]
) -> dict[str, tuple[float, float]]:
    """(min, max) of each tensor in `names` over the calibration `feeds`, counting only
    real tokens: a padded position's activations are computed but never read by a real
    token, and letting them widen the range would coarsen every real one's steps."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    probe = type(model)()
    probe.CopyFrom(model)
    known = {output.name for output in probe.graph.output}
    probe.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        for name in names
        if name not in known
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # calibration runs on a workstation beside other jobs
    session = ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    lows: dict[str, float] = {}
    highs: dict[str, float] = {}
    for feed in feeds:
        mask = feed["attention_mask"].astype(bool) if "attention_mask" in feed else None
        for name, value in zip(names, session.run(list(names), feed), strict=True):
            array = np.asarray(value)
            if mask is not None and array.ndim == 3 and array.shape[:2] == mask.shape:
                array = array[mask]  # (real tokens, channels)
            if array.size == 0:
                continue
            lows[name] = min(lows.get(name, 0.0), float(array.min()))
            highs[name] = max(highs.get(name, 0.0), float(array.max()))
    return {name: (lows[name], highs[name]) for name in names if name in lows}


def scale_and_zero_point(low: float, high: float) -> tuple[np.float32, np.uint8]:
    """Asymmetric uint8 quantization of [low, high] (widened to hold 0 exactly)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = np.float32(max(high - low, 1e-8) / _LEVELS)
    zero_point = np.uint8(np.clip(np.rint(-low / float(scale)), 0, _LEVELS))
    return scale, zero_point


def use_static_scales(model: Any, ranges: dict[str, tuple[float, float]]) -> int:
    """Replace every DynamicQuantizeMatMul whose input has a range in `ranges` by a
    QuantizeLinear with that range's scale and a MatMulIntegerToFloat (same weight, weight
    scales, zero points and bias). MatMuls reading the same input share one QuantizeLinear.
    Returns how many were replaced."""
    from onnx import helper, numpy_helper

    graph = model.graph
    quantized: dict[str, tuple[str, str, str]] = {}  # input -> (x_q, scale, zero point)
    nodes = []
    replaced = 0
    for node in graph.node:
        source = node.input[0] if node.op_type == "DynamicQuantizeMatMul" else None
        if source is None or source not in ranges:
            nodes.append(node)
            continue
        if source not in quantized:
            scale, zero_point = scale_and_zero_point(*ranges[source])
            base = f"{node.name}_static"
            graph.initializer.extend([
                numpy_helper.from_array(np.array(scale, np.float32), f"{base}_scale"),
                numpy_helper.from_array(np.array(zero_point, np.uint8), f"{base}_zero"),
            ])  # fmt: skip
            quantized[source] = (f"{base}_x", f"{base}_scale", f"{base}_zero")
            nodes.append(helper.make_node(
                "QuantizeLinear", [source, f"{base}_scale", f"{base}_zero"],
                [f"{base}_x"], name=f"{base}_quantize",
            ))  # fmt: skip
        x_q, scale_name, zero_name = quantized[source]
        weight, weight_scale = node.input[1], node.input[2]
        weight_zero = node.input[3] if len(node.input) > 3 else ""
        bias = [node.input[4]] if len(node.input) > 4 and node.input[4] else []
        nodes.append(helper.make_node(
            "MatMulIntegerToFloat",
            [x_q, weight, scale_name, weight_scale, zero_name, weight_zero, *bias],
            list(node.output), name=node.name, domain="com.microsoft",
        ))  # fmt: skip
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return replaced
