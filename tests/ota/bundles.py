"""Small real bundles for OTA tests: a real ONNX graph, a real tokenizer, a real manifest.

The OTA layer moves and verifies bytes, so it needs files that are what they claim to be,
not a classifier that classifies well. Once tests/support/tiny_bundle.py (engine branch) is
in main, the integration tests use that instead; these stay for the protocol's unit tests,
which also need ONNX variants the engine never builds (external data, subgraphs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Final

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

LABELS: Final = ("negative", "positive")
# Filler words make model.onnx ~12 KiB: a dozen 1 KiB chunks to interrupt and resume.
VOCAB: Final = {
    **{"[UNK]": 0, "[PAD]": 1, "good": 2, "bad": 3, "film": 4},
    **{f"w{i}": 5 + i for i in range(40)},
}
HIDDEN: Final = 64


def tiny_model(seed: int = 0) -> onnx.ModelProto:
    """input_ids, attention_mask [batch, seq] int64 -> logits [batch, 2] float32."""
    rng = np.random.default_rng(seed)
    embedding = numpy_helper.from_array(
        rng.standard_normal((len(VOCAB), HIDDEN)).astype(np.float32), "embedding"
    )
    projection = numpy_helper.from_array(
        rng.standard_normal((HIDDEN, len(LABELS))).astype(np.float32), "projection"
    )
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"]),
        helper.make_node("ReduceMean", ["embedded"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "projection"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializer=[embedding, projection],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def tokenizer_json() -> bytes:
    tokenizer = Tokenizer(WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    return tokenizer.to_str().encode()


def manifest_json(name: str, version: str, files: dict[str, bytes]) -> bytes:
    document = {
        "format": 1,
        "name": name,
        "version": version,
        "task": "single-label",
        "labels": list(LABELS),
        "max_seq_len": 16,
        "files": {
            file_name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for file_name, data in sorted(files.items())
        },
        "metrics": {},
        "golden": [],
        "card": {
            "intended_use": "tests",
            "training_data": "none",
            "limitations": "random weights",
            "created": "2026-11-23",
        },
    }
    return json.dumps(document, indent=2).encode()


def bundle_files(
    name: str = "sentiment", version: str = "1.1.0", *, model: bytes | None = None, seed: int = 0
) -> dict[str, bytes]:
    payload = {
        "model.onnx": model if model is not None else tiny_model(seed).SerializeToString(),
        "tokenizer.json": tokenizer_json(),
    }
    return {**payload, "manifest.json": manifest_json(name, version, payload)}


def write_bundle(models_dir: Path, files: dict[str, bytes]) -> Path:
    doc = json.loads(files["manifest.json"])
    folder: Path = models_dir / str(doc["name"]) / str(doc["version"])
    folder.mkdir(parents=True)
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    return folder


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path under root with its content (or link target): to prove nothing changed."""
    result: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            result[key] = "-> " + str(path.readlink())
        elif path.is_file():
            result[key] = path.read_bytes()
        else:
            result[key] = "dir"
    return result
