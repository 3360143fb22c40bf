"""Hugging Face SqueezeBERT -> fp32 ONNX in the fast formulation, checked against transformers.

Python API (used by `edge-agent model export` and the training recipes):

    model = load_hf_classifier(checkpoint_dir)          # SqueezeBertForSequenceClassification
    export_onnx(model, Path("model.fp32.onnx"))         # or export_onnx(checkpoint_dir, ...)
    diff = max_logit_difference(model, Path("model.fp32.onnx"), tokenizer, texts)

The graph interface is the bundle contract: int64 `input_ids` and `attention_mask`
[batch, seq] in, float32 `logits` [batch, labels] out.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

OPSET: Final = 17
EXPORT_TOLERANCE: Final = 1e-4


def load_hf_classifier(checkpoint_dir: Path | str) -> Any:
    """transformers' SqueezeBertForSequenceClassification from a local folder, eval mode (with
    a relative position bias when its config has one: toolkit/train/relative_bias.py)."""
    from edge_agent.toolkit.train.relative_bias import load_classifier

    model: Any = load_classifier(checkpoint_dir)
    model.eval()
    return model


def load_checkpoint_tokenizer(checkpoint_dir: Path) -> Tokenizer:
    """The checkpoint's tokenizer.json, or one converted from its vocab.txt."""
    from tokenizers import Tokenizer

    path = Path(checkpoint_dir) / "tokenizer.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    fast = AutoTokenizer.from_pretrained(str(checkpoint_dir), use_fast=True)
    tokenizer: Tokenizer = fast.backend_tokenizer
    return tokenizer


def export_torch_module(module: Any, out_path: Path, *, opset: int = OPSET) -> Path:
    """torch.onnx.export of any (input_ids, attention_mask) -> logits module.

    The obvious path, kept for comparison (bench/model_bench.py): exporting transformers'
    SqueezeBERT this way yields grouped Conv ops that quantize to slow ConvInteger.
    """
    import torch

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    axes = {0: "batch", 1: "seq"}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns about traced shape arithmetic it handles fine.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (ids, mask),
            str(out_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return out_path


def export_onnx(model_or_dir: Any, out_path: Path, *, embedding: bool = False) -> Path:
    """Write the fp32 ONNX graph of a SqueezeBERT classifier in the fast formulation.

    `model_or_dir`: a transformers SqueezeBertForSequenceClassification or a checkpoint
    folder (config.json + weights). The graph is written op by op from the weights
    (`graph.py`), not traced; check it with `max_logit_difference`. With `embedding` the
    graph's output is the encoder's sentence embedding (`embeddings`) instead of logits.
    """
    from edge_agent.toolkit.export.graph import write_graph

    is_dir = isinstance(model_or_dir, str | Path)
    model = load_hf_classifier(model_or_dir) if is_dir else model_or_dir
    model.eval()
    return write_graph(model, out_path, embedding=embedding)


def hf_logits(model: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(feeds["input_ids"]),
            attention_mask=torch.from_numpy(feeds["attention_mask"]),
        )
    result: np.ndarray = out.logits.numpy()
    return result


def encode(tokenizer: Tokenizer, texts: Sequence[str], max_seq_len: int) -> dict[str, np.ndarray]:
    """Token ids and mask the way the engine builds them (truncate, pad to longest)."""
    from tokenizers import Tokenizer

    from edge_agent.engine.session import configure_tokenizer

    tok = configure_tokenizer(Tokenizer.from_str(tokenizer.to_str()), max_seq_len)
    encodings = tok.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def onnx_logits(path: Path, feeds: dict[str, np.ndarray], threads: int = 1) -> np.ndarray:
    import onnxruntime as ort

    from edge_agent.engine.session import session_options

    session = ort.InferenceSession(
        str(path), session_options(threads), providers=["CPUExecutionProvider"]
    )
    (logits,) = session.run(["logits"], feeds)
    return np.asarray(logits)


def max_logit_difference(
    model: Any,
    onnx_path: Path,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    max_seq_len: int = 128,
    batch_size: int = 16,
) -> float:
    """Largest |logit(transformers) - logit(ONNX)| over `texts`, batched with padding."""
    worst = 0.0
    for start in range(0, len(texts), batch_size):
        feeds = encode(tokenizer, texts[start : start + batch_size], max_seq_len)
        diff = np.abs(hf_logits(model, feeds) - onnx_logits(onnx_path, feeds))
        worst = max(worst, float(diff.max()))
    return worst
