"""fp32 ONNX -> INT8 ONNX (dynamic quantization), and how often INT8 agrees with fp32.

Python API:

    quantize_int8(Path("model.fp32.onnx"), Path("model.onnx"))
    agreement = argmax_agreement(fp32_path, int8_path, tokenizer, texts)

Dynamic quantization stores MatMul weights as INT8 and quantizes activations per batch at
run time, so it needs no calibration data; onnxruntime fuses it into integer GEMMs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def quantize_matmul_weights(model: Any, *, skip_prefix: str = "") -> int:
    """Replace every MatMul with a constant weight by a DynamicQuantizeMatMul whose INT8
    weight has one symmetric scale per output channel (per group for batched weights).

    onnxruntime's `quantize_dynamic(per_channel=True)` writes scales that its own kernel
    rejects for batched (groups, cin/g, cout/g) weights; the kernel does accept scales
    shaped (groups, 1, cout/g), which this pass writes. Per-channel scales roughly halve
    INT8/fp32 disagreement on real sentences (docs/benchmarks.md). Returns the count.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    replaced = 0
    nodes = []
    for node in graph.node:
        weight_name = node.input[1] if len(node.input) > 1 else ""
        if (
            node.op_type != "MatMul"
            or weight_name not in weights
            or (skip_prefix and node.name.startswith(skip_prefix))
        ):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[weight_name]).astype(np.float32)
        scale = np.maximum(np.abs(w).max(axis=-2, keepdims=True), 1e-12) / 127.0
        if w.ndim == 2:
            scale = scale[0]  # (cout,) for a 2D weight
        quantized = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
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


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    *,
    quantize_embeddings: bool = True,
    keep_head_fp32: bool = True,
) -> Path:
    """Dynamic INT8: every MatMul's weights stored INT8 with per-output-channel scales,
    activations quantized at run time (no calibration data needed).

    With `quantize_embeddings` the word-embedding table is stored as INT8 too (Gather then
    DequantizeLinear on the few looked-up rows): for squeezebert-uncased shapes the file
    shrinks from 123 MB to 54 MB at no measurable speed cost. With `keep_head_fp32` the
    pooler and classifier (once per text, not per token) stay fp32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edge_agent.toolkit.onnx_graph import HEAD_PREFIX

    model = onnx.load(str(fp32_path))
    quantize_matmul_weights(model, skip_prefix=HEAD_PREFIX if keep_head_fp32 else "")
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

    from edge_agent.engine import session_options
    from edge_agent.toolkit.export import encode

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
