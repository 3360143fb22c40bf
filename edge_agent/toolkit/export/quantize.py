"""fp32 ONNX -> INT8 ONNX, and how often INT8 agrees with fp32.

Python API:

    quantize_int8(Path("model.fp32.onnx"), Path("model.onnx"), calibration=feeds)
    agreement = argmax_agreement(fp32_path, int8_path, tokenizer, texts)

MatMul weights are stored as INT8 with a scale per output channel. Given calibration feeds
(encoded real texts), every MatMul input is quantized with a scale fixed at this point
(activation_scales.py), so a text's logits do not depend on its batch-mates; without them
activations are quantized per batch at run time (onnxruntime's DynamicQuantizeMatMul).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# A MatMul input is rescaled when its widest channel's range is this many times the median's.
OUTLIER_RATIO: Final = 8.0
# ...and always when one of these ops produced it: GELU outputs are long-tailed in every
# trained model measured here (docs/benchmarks.md, INT8 fidelity).
ALWAYS_SMOOTHED_AFTER: Final = frozenset({"Gelu", "FastGelu"})
# How MatMul weights are stored (quantize_int8's `weights`):
#   int7  int8 storage, values in [-64, 64]: the same integers on every CPU (default);
#   int8  the full [-127, 127]: one bit finer, but saturates on x86 without VNNI;
#   uint8 int8's integers plus 128: does not saturate, about 20% slower on x86 without VNNI.
# onnxruntime's x86 kernel for CPUs without VNNI (AVX2) multiplies uint8 activations by int8
# weights with VPMADDUBSW, which adds products in pairs into saturating 16-bit sums: with
# |w| <= 64, 2 * 255 * 64 = 32,640 always fits. This is quantize_dynamic's reduce_range.
INT7_WEIGHT_MAX: Final = 64
INT8_WEIGHT_MAX: Final = 127
_WEIGHT_MAX: Final = {"int7": INT7_WEIGHT_MAX, "int8": INT8_WEIGHT_MAX, "uint8": INT8_WEIGHT_MAX}
WEIGHT_FORMATS: Final = tuple(_WEIGHT_MAX)
# Which input holds the weight's zero point, per integer MatMul op (the weight is input 1).
_WEIGHT_ZERO_INPUT: Final = {"DynamicQuantizeMatMul": 3, "MatMulIntegerToFloat": 5}


def _is_weight_matmul(node: Any, weights: dict[str, Any], skip_prefix: str) -> bool:
    """A MatMul whose second input is a constant weight, and not named skip_prefix*."""
    return bool(
        node.op_type == "MatMul"
        and len(node.input) > 1
        and node.input[1] in weights
        and not (skip_prefix and node.name.startswith(skip_prefix))
    )


def _input_users(graph: Any) -> dict[str, int]:
    """How many node inputs read each tensor name (a weight read once can be replaced)."""
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    return users


def calibration_feeds(
    tokenizer: Tokenizer, texts: Sequence[str], max_seq_len: int, batch_size: int = 64
) -> list[dict[str, np.ndarray]]:
    """`texts` encoded the way the engine does, in batches: the `calibration` of quantize_int8."""
    from edge_agent.toolkit.export.to_onnx import encode

    return [
        encode(tokenizer, texts[start : start + batch_size], max_seq_len)
        for start in range(0, len(texts), batch_size)
    ]


def quantize_matmul_weights(
    model: Any, *, skip_prefix: str = "", weight_max: int = INT8_WEIGHT_MAX
) -> int:
    """Replace every MatMul with a constant weight by a DynamicQuantizeMatMul whose INT8
    weight has one symmetric scale per output channel (per group for batched weights),
    its values in [-weight_max, weight_max].

    onnxruntime's `quantize_dynamic(per_channel=True)` writes scales that its own kernel
    rejects for batched (groups, cin/g, cout/g) weights; the kernel does accept scales
    shaped (groups, 1, cout/g), which this pass writes. Per-channel scales roughly halve
    INT8/fp32 disagreement on real sentences (docs/benchmarks.md). Returns the count.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    users = _input_users(graph)
    replaced = 0
    nodes = []
    for node in graph.node:
        if not _is_weight_matmul(node, weights, skip_prefix):
            nodes.append(node)
            continue
        weight_name = node.input[1]
        w = numpy_helper.to_array(weights[weight_name]).astype(np.float32)
        scale = np.maximum(np.abs(w).max(axis=-2, keepdims=True), 1e-12) / float(weight_max)
        if w.ndim == 2:
            scale = scale[0]  # (cout,) for a 2D weight
        quantized = np.clip(np.rint(w / scale), -weight_max, weight_max).astype(np.int8)
        base = f"{node.name}_q"
        graph.initializer.extend([
            numpy_helper.from_array(quantized, f"{base}_w"),
            numpy_helper.from_array(scale.astype(np.float32), f"{base}_scale"),
            numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), f"{base}_zero"),
        ])  # fmt: skip
        nodes.append(helper.make_node(
            "DynamicQuantizeMatMul",
            [node.input[0], f"{base}_w", f"{base}_scale", f"{base}_zero"],
            list(node.output), name=base, domain="com.microsoft",
        ))  # fmt: skip
        if users.get(weight_name) == 1:
            graph.initializer.remove(weights[weight_name])
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return replaced


def as_unsigned_weights(model: Any) -> int:
    """Store every integer MatMul's int8 weight (and zero point) as the same integers
    plus 128 in uint8, in place. onnxruntime's x86 kernels for CPUs without VNNI (AVX2)
    multiply uint8 activations by int8 weights with VPMADDUBSW, whose 16-bit pair sums
    saturate; uint8 weights take a kernel that does not (about 20% slower there; ARM's
    kernels and VNNI's do not saturate). The numbers computed are the same. See
    docs/benchmarks.md, INT8 fidelity. Returns how many weights changed."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    changed = 0
    for node in model.graph.node:
        zero_input = _WEIGHT_ZERO_INPUT.get(node.op_type)
        if zero_input is None or node.input[1] not in initializers:
            continue
        names = [node.input[1]]
        if len(node.input) > zero_input and node.input[zero_input]:
            names.append(node.input[zero_input])
        arrays = [numpy_helper.to_array(initializers[name]) for name in names]
        if arrays[0].dtype != np.int8:
            continue
        for name, array in zip(names, arrays, strict=True):
            shifted = (array.astype(np.int16) + 128).astype(np.uint8)
            initializers[name].CopyFrom(numpy_helper.from_array(shifted, name))
        changed += 1
    return changed


def approximate_gelu(model: Any) -> int:
    """Exact (erf) GELU -> its tanh form (com.microsoft FastGelu), about a third cheaper in
    onnxruntime's CPU kernels. The two differ by at most 4.7e-4 (at |x| = 2.7), a hundredth
    of one INT8 step of the activation that follows, so only the INT8 graph uses it; the
    fp32 export stays exact. Returns how many were replaced."""
    replaced = 0
    for node in model.graph.node:
        if node.op_type == "Gelu" and node.domain == "com.microsoft":
            node.op_type = "FastGelu"
            replaced += 1
    return replaced


def fold_bias_adds(model: Any) -> int:
    """Move `Add(DynamicQuantizeMatMul(x, W), b)` with a constant 1D bias b into the
    DynamicQuantizeMatMul's own bias input: the GEMM adds it while writing its output, where
    a separate Add would read and write the whole activation again. onnxruntime takes a
    fused bias for 2D weights only. Returns how many Adds were removed."""
    from onnx import numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {output.name for output in graph.output}
    removed: set[int] = set()  # id() of the Adds: node names may be empty in other graphs
    for node in graph.node:
        if node.op_type != "DynamicQuantizeMatMul" or len(node.input) != 4:
            continue
        readers = consumers.get(node.output[0], [])
        if node.output[0] in outputs or len(readers) != 1 or readers[0].op_type != "Add":
            continue
        add = readers[0]
        bias_name = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        weight_shape = tuple(weights[node.input[1]].dims)
        if bias_name not in weights or len(weight_shape) != 2:
            continue
        if tuple(weights[bias_name].dims) != weight_shape[1:]:
            continue
        if numpy_helper.to_array(weights[bias_name]).dtype != np.float32:
            continue
        node.input.append(bias_name)
        node.output[0] = add.output[0]
        removed.add(id(add))
    kept = [node for node in graph.node if id(node) not in removed]
    del graph.node[:]
    graph.node.extend(kept)
    return len(removed)


def smooth_outlier_inputs(
    model: Any,
    feeds: Sequence[dict[str, np.ndarray]],
    *,
    outlier_ratio: float = OUTLIER_RATIO,
    always_after: frozenset[str] = ALWAYS_SMOOTHED_AFTER,
    skip_prefix: str = "",
) -> int:
    """SmoothQuant-style rescaling (Xiao et al., 2023) of the weight MatMuls whose input has
    outlier channels on the calibration `feeds`, or is the output of an op in `always_after`.

    Each MatMul input gets one activation scale (per run, or calibrated); a channel that reaches
    15x the others' range leaves the rest a handful of INT8 steps (a grouped student's first FFN
    output did that and cost 2 points of INT8/fp32 agreement). For such a MatMul, x @ W becomes
    (x / s) @ (s W) with s = sqrt(channel range of x / channel range of W): exact in fp32, and
    the outliers move into the weight, which has a scale per output channel. The price is one
    elementwise Mul per rescaled MatMul. GELU outputs are rescaled whatever their ratio: in a
    grouped graph each group's tail stays under the ratio, and rescaling them anyway took
    INT8/fp32 agreement on the sentiment model from 98.4% to 99.7% (docs/benchmarks.md).
    Returns how many were rescaled.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    targets = [node for node in graph.node if _is_weight_matmul(node, weights, skip_prefix)]
    if not targets or not feeds:
        return 0
    probe = type(model)()
    probe.CopyFrom(model)
    inputs = sorted({node.input[0] for node in targets})
    probe.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in inputs
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    ranges: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(inputs, session.run(inputs, feed), strict=True):
            # per input channel; a grouped input (b, g, l, cin/g) keeps its group axis
            axes = (0, 2) if value.ndim == 4 else tuple(range(value.ndim - 1))
            peak = np.abs(value).max(axis=axes, keepdims=value.ndim == 4)
            ranges[name] = np.maximum(ranges[name], peak) if name in ranges else peak
    users = _input_users(graph)
    producer = {output: node.op_type for node in graph.node for output in node.output}
    smoothing: dict[str, Any] = {}  # MatMul name -> the Mul node that feeds it
    for node in targets:
        x_range = np.maximum(ranges[node.input[0]], 1e-6)
        always = producer.get(node.input[0]) in always_after
        if not always and x_range.max() < outlier_ratio * np.median(x_range):
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        w_range = np.maximum(np.abs(w).max(axis=-1), 1e-6)  # per input channel
        scale = np.sqrt(x_range.reshape(w_range.shape) / w_range).astype(np.float32)
        base = f"{node.name}_smooth"
        graph.initializer.extend([
            numpy_helper.from_array((1.0 / scale).reshape(x_range.shape), f"{base}_inv"),
            numpy_helper.from_array(w * scale[..., None], f"{base}_w"),
        ])  # fmt: skip
        smoothing[node.name] = helper.make_node(
            "Mul", [node.input[0], f"{base}_inv"], [f"{base}_x"], name=base
        )
        if users[node.input[1]] == 1:
            graph.initializer.remove(weights[node.input[1]])
        node.input[0], node.input[1] = f"{base}_x", f"{base}_w"
    nodes = []
    for node in graph.node:
        if node.name in smoothing:
            nodes.append(smoothing[node.name])
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(smoothing)


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    *,
    quantize_embeddings: bool = True,
    keep_head_fp32: bool = True,
    calibration: Sequence[dict[str, np.ndarray]] = (),
    tanh_gelu: bool = True,
    weights: str = "int7",
    static_activations: bool = True,
) -> Path:
    """INT8: every MatMul's weights stored INT8 with per-output-channel scales.

    Given `calibration` feeds (encoded real texts) and `static_activations`, each MatMul
    input is quantized with a scale and zero point calibrated on those feeds and stored in
    the graph (activation_scales.py): a text's logits are then the same whatever its
    batch-mates and padding. Without calibration activations are quantized per batch at
    run time, and scores move with the batch (docs/benchmarks.md, batch independence).

    With `quantize_embeddings` the word-embedding table is stored as INT8 too (Gather then
    DequantizeLinear on the few looked-up rows): for squeezebert-uncased shapes the file
    shrinks from 123 MB to 54 MB at no measurable speed cost. With `keep_head_fp32` the
    pooler and classifier (once per text, not per token) stay fp32. Given `calibration`,
    MatMuls whose inputs have outlier channels are smoothed first
    (`smooth_outlier_inputs`). Biases after MatMuls become the integer GEMMs' own
    (`fold_bias_adds`), and with `tanh_gelu` GELU takes its tanh form (`approximate_gelu`).
    `weights` is one of WEIGHT_FORMATS: int7 (default) computes the same integers on every
    CPU; on the sentiment model it agrees with fp32 on 99.5% of held-out texts at batch 1
    everywhere, where int8 gives 99.7% on ARM and VNNI but 95.8% on x86 without VNNI
    (docs/benchmarks.md, INT8 fidelity).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edge_agent.toolkit.export.activation_scales import activation_ranges, use_static_scales
    from edge_agent.toolkit.export.graph import HEAD_PREFIX
    from edge_agent.toolkit.export.graph_ops import RELATIVE_BIAS_NODE

    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, not {weights!r}")
    model = onnx.load(str(fp32_path))
    skip = HEAD_PREFIX if keep_head_fp32 else ""
    smooth_outlier_inputs(model, calibration, skip_prefix=skip)
    ranges: dict[str, tuple[float, float]] = {}
    if calibration and static_activations:
        # measured on the fp32 graph, smoothing included: what each integer MatMul reads
        constants = {init.name: init for init in model.graph.initializer}
        matmuls = [n for n in model.graph.node if _is_weight_matmul(n, constants, skip)]
        inputs = sorted({node.input[0] for node in matmuls})
        ranges = activation_ranges(model, calibration, inputs)
    quantize_matmul_weights(model, skip_prefix=skip, weight_max=_WEIGHT_MAX[weights])
    fold_bias_adds(model)
    use_static_scales(model, ranges)
    if weights == "uint8":
        as_unsigned_weights(model)
    if tanh_gelu:
        approximate_gelu(model)
    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(int8_path))
    if quantize_embeddings:
        # quantize_dynamic logs a "consider pre-processing" hint on the root logger; the
        # hint is about static quantization of CNNs and does not apply here.
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
        quantize_dynamic(
            str(int8_path),
            str(int8_path),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Gather"],
            nodes_to_exclude=[
                n.name for n in model.graph.node if n.name.startswith(RELATIVE_BIAS_NODE)
            ],
            # onnx's shape inference does not know onnxruntime's contrib ops; every
            # tensor they produce here is float32.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return int8_path


def argmax_agreement(
    fp32_path: Path,
    int8_path: Path,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    max_seq_len: int = 128,
    batch_size: int = 32,
    threads: int | None = None,
) -> float:
    """Fraction of `texts` whose INT8 argmax equals the fp32 argmax."""
    import onnxruntime as ort

    from edge_agent.engine.session import session_options
    from edge_agent.toolkit.export.to_onnx import encode

    if not texts:
        raise ValueError("argmax agreement needs at least one text")
    sessions = [
        ort.InferenceSession(str(p), session_options(threads), providers=["CPUExecutionProvider"])
        for p in (fp32_path, int8_path)
    ]
    same = 0
    for start in range(0, len(texts), batch_size):
        feeds = encode(tokenizer, texts[start : start + batch_size], max_seq_len)
        fp32, int8 = (np.asarray(s.run(["logits"], feeds)[0]) for s in sessions)
        same += int((fp32.argmax(axis=1) == int8.argmax(axis=1)).sum())
    return same / len(texts)
