"""Refuse ONNX models that reference external data files, without importing `onnx`.

An ONNX tensor may say "my bytes live in file X" (TensorProto.data_location = EXTERNAL,
external_data = [{"location": X}, ...]). Runtimes resolve X relative to the model, and
crafted locations (`../../etc/...`, absolute paths, symlinks) have been a repeated path
traversal class in ONNX tooling. A bundle is self-contained by contract, so any external
reference is refused.

Why a hand-written protobuf wire reader: the daemon must not import `onnx` (toolkit only),
and onnxruntime exposes no "does this model use external data" check; it would follow the
reference while loading, which is the thing we refuse to do. The wire format needs ~60 lines:
walk only the message fields that can hold a TensorProto (graph initializers, node attributes,
subgraphs, functions, training info, sparse tensors) and skip everything else by length.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Final

WIRE_VARINT: Final = 0
WIRE_FIXED64: Final = 1
WIRE_BYTES: Final = 2
WIRE_FIXED32: Final = 5
MAX_DEPTH: Final = 64
DATA_LOCATION_EXTERNAL: Final = 1

# Field numbers from onnx.proto: message kind -> {field number: nested message kind}.
MODEL: Final = "ModelProto"
GRAPH: Final = "GraphProto"
NODE: Final = "NodeProto"
ATTRIBUTE: Final = "AttributeProto"
TENSOR: Final = "TensorProto"
SPARSE: Final = "SparseTensorProto"
FUNCTION: Final = "FunctionProto"
TRAINING: Final = "TrainingInfoProto"
NESTED: Final[dict[str, dict[int, str]]] = {
    MODEL: {7: GRAPH, 20: TRAINING, 25: FUNCTION},
    TRAINING: {1: GRAPH, 2: GRAPH},
    FUNCTION: {7: NODE},
    GRAPH: {1: NODE, 5: TENSOR, 15: SPARSE},
    NODE: {5: ATTRIBUTE},
    ATTRIBUTE: {5: TENSOR, 6: GRAPH, 10: TENSOR, 11: GRAPH, 22: SPARSE, 23: SPARSE},
    SPARSE: {1: TENSOR, 2: TENSOR},
    TENSOR: {},
}
TENSOR_NAME_FIELD: Final = 8
TENSOR_EXTERNAL_DATA_FIELD: Final = 13
TENSOR_DATA_LOCATION_FIELD: Final = 14


class OnnxCheckError(Exception):
    """The model is malformed or references external data; the message says which tensor."""


def check_no_external_data(model: bytes | memoryview) -> None:
    _walk(memoryview(model), MODEL, 0)


def external_data_problem(model: bytes | memoryview) -> str | None:
    """The refusal reason, or None. Returns rather than raises so that no traceback keeps
    slices of a memory-mapped model alive after the caller closes the map."""
    try:
        check_no_external_data(model)
    except OnnxCheckError as exc:
        return str(exc)
    return None


def external_data_problem_in_file(path: Path) -> str | None:
    """The same check on a file, mapped rather than read: an fp32 model may not fit in a
    Pi's memory twice."""
    if path.stat().st_size == 0:
        return external_data_problem(b"")
    with (
        open(path, "rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
        memoryview(mapped) as view,
    ):
        return external_data_problem(view)


def _walk(data: memoryview, kind: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise OnnxCheckError("ONNX model nests subgraphs too deeply")
    nested = NESTED[kind]
    tensor_name = ""
    external = False
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        field, wire = key >> 3, key & 7
        if wire == WIRE_VARINT:
            value, position = _varint(data, position)
            if kind == TENSOR and field == TENSOR_DATA_LOCATION_FIELD:
                external = external or value == DATA_LOCATION_EXTERNAL
        elif wire == WIRE_BYTES:
            length, position = _varint(data, position)
            end = position + length
            if end > len(data):
                raise OnnxCheckError("ONNX model is truncated (field runs past the end)")
            if field in nested:
                _walk(data[position:end], nested[field], depth + 1)
            elif kind == TENSOR and field == TENSOR_EXTERNAL_DATA_FIELD:
                external = True
            elif kind == TENSOR and field == TENSOR_NAME_FIELD:
                tensor_name = bytes(data[position:end]).decode("utf-8", "replace")
            position = end
        elif wire == WIRE_FIXED64:
            position += 8
        elif wire == WIRE_FIXED32:
            position += 4
        else:
            raise OnnxCheckError(f"ONNX model uses unsupported protobuf wire type {wire}")
        if field in nested and wire != WIRE_BYTES:
            raise OnnxCheckError(f"ONNX {kind} field {field} has the wrong wire type")
    if position != len(data):
        raise OnnxCheckError("ONNX model is truncated (fixed-width field runs past the end)")
    if external:
        raise OnnxCheckError(f"ONNX tensor {tensor_name!r} references external data")


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if position >= len(data):
            raise OnnxCheckError("ONNX model is truncated (varint runs past the end)")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
    raise OnnxCheckError("ONNX model holds a varint longer than 10 bytes")
