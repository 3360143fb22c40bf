"""Trained checkpoint -> measured INT8 bundle, through the engine's export/quantize/pack path.

The fp32 and INT8 graphs are both run by onnxruntime on the same evaluation rows, so the
report's INT8-vs-fp32 figures are the deployed graphs', not torch's. Only the INT8 graph is
shipped: a MiniLM-sized fp32 graph alone is over the 16 MB bundle budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from edge_agent.bundle.manifest import OutOfScopeRule
from edge_agent.toolkit.train.metrics import (
    Report,
    agreement,
    multi_label_report,
    sigmoid,
    single_label_report,
    softmax,
)

GOLDEN_COUNT: Final = 6
# Training texts that quantization's outlier smoothing measures activation ranges on.
QUANTIZE_CALIBRATION_ROWS: Final = 512
_ORT_BATCH: Final = 64


@dataclass(frozen=True)
class GraphFigures:
    fp32: Report
    int8: Report
    agreement: float
    fp32_logits: np.ndarray
    int8_logits: np.ndarray


@dataclass(frozen=True)
class Deployable:
    """A checkpoint as shipped, and the tokenizer that belongs to it. Pruning renumbers the
    vocabulary, so the training tokenizer's ids are wrong for it (up to 994 places off for
    MiniLM's, and past the end of the embedding for rare pieces): export, measurement,
    golden examples and packing all take the tokenizer from here."""

    folder: Path
    tokenizer: Any

    @property
    def tokenizer_file(self) -> Path:
        return self.folder / "tokenizer.json"


def deploy_checkpoint(checkpoint: Path, work: Path, max_seq_len: int) -> Deployable:
    """The checkpoint as shipped: position embeddings cut at max_seq_len and the never-used
    `[unusedN]` vocabulary rows dropped (same predictions, fewer bytes), with its tokenizer."""
    from edge_agent.toolkit.export.to_onnx import load_checkpoint_tokenizer
    from edge_agent.toolkit.train.minilm import trim_positions
    from edge_agent.toolkit.train.vocab import prune_unused_vocab

    trimmed = trim_positions(checkpoint, work / "deploy-trimmed", max_seq_len)
    prune_unused_vocab(trimmed, work / "deploy")
    folder = work / "deploy"
    return Deployable(folder, load_checkpoint_tokenizer(folder))


def export_graphs(
    deployable: Deployable,
    out_dir: Path,
    *,
    keep_head_fp32: bool = True,
    calibration_texts: Sequence[str] = (),
    max_seq_len: int = 128,
    embedding: bool = False,
) -> tuple[Path, Path]:
    """model.fp32.onnx (checked against transformers by the exporter) and INT8 model.onnx.

    keep_head_fp32=False also stores the pooler as INT8: 0.44 MB less for a 384-wide model.
    `calibration_texts` (training texts, never evaluation rows) let quantization smooth the
    MatMul inputs that have outlier channels (quantize.smooth_outlier_inputs).
    """
    from edge_agent.toolkit.export.quantize import calibration_feeds, quantize_int8
    from edge_agent.toolkit.export.to_onnx import export_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(deployable.folder, out_dir / "model.fp32.onnx", embedding=embedding)
    calibration = calibration_feeds(
        deployable.tokenizer, calibration_texts, max_seq_len, _ORT_BATCH
    )
    int8 = quantize_int8(
        fp32, out_dir / "model.onnx", keep_head_fp32=keep_head_fp32, calibration=calibration
    )
    return Path(fp32), Path(int8)


def graph_logits(
    graph: Path,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_seq_len: int,
    threads: int | None,
    output: str = "logits",
) -> np.ndarray:
    """Logits (or an encoder's `embeddings`) of an ONNX graph for `texts`, batched by length
    as the engine tokenises them."""
    import onnxruntime as ort

    from edge_agent.engine.session import session_options
    from edge_agent.toolkit.export.to_onnx import encode

    session = ort.InferenceSession(
        str(graph), session_options(threads), providers=["CPUExecutionProvider"]
    )
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: np.ndarray | None = None
    for start in range(0, len(order), _ORT_BATCH):
        batch = order[start : start + _ORT_BATCH]
        feeds = encode(tokenizer, [texts[i] for i in batch], max_seq_len)
        logits = np.asarray(session.run([output], feeds)[0])
        if out is None:
            out = np.zeros((len(texts), logits.shape[1]), dtype=np.float32)
        out[batch] = logits
    assert out is not None, "no texts to evaluate"
    return out


def report_from_logits(
    logits: np.ndarray, targets: Sequence[Any], labels: Sequence[str], multi_label: bool
) -> Report:
    if multi_label:
        return multi_label_report(sigmoid(logits) > 0.5, np.asarray(targets), labels)
    return single_label_report(np.argmax(logits, axis=1).tolist(), list(targets), labels)


def measure_graphs(
    fp32: Path,
    int8: Path,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    targets: Sequence[Any],
    labels: Sequence[str],
    max_seq_len: int,
    multi_label: bool,
    threads: int | None = None,
) -> GraphFigures:
    fp32_logits = graph_logits(fp32, tokenizer, texts, max_seq_len=max_seq_len, threads=threads)
    int8_logits = graph_logits(int8, tokenizer, texts, max_seq_len=max_seq_len, threads=threads)
    return GraphFigures(
        fp32=report_from_logits(fp32_logits, targets, labels, multi_label),
        int8=report_from_logits(int8_logits, targets, labels, multi_label),
        agreement=agreement(fp32_logits, int8_logits, multi_label),
        fp32_logits=fp32_logits,
        int8_logits=int8_logits,
    )


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    return sigmoid(logits) if multi_label else softmax(logits)


def pack_int8_bundle(
    models_dir: Path,
    *,
    name: str,
    version: str,
    labels: Sequence[str],
    multi_label: bool,
    max_seq_len: int,
    int8: Path,
    tokenizer_file: Path,
    golden_texts: Sequence[str],
    metrics: Mapping[str, float],
    card: Mapping[str, str],
    reject: OutOfScopeRule | None = None,
    replace: bool = False,
) -> Path:
    """Write the bundle (INT8 graph only) with golden examples picked by the packer."""
    from edge_agent.toolkit.export.pack import pack_bundle

    return pack_bundle(
        models_dir,
        name=name,
        version=version,
        task="multi-label" if multi_label else "single-label",
        labels=labels,
        max_seq_len=max_seq_len,
        model=int8,
        tokenizer=tokenizer_file,
        golden_texts=golden_texts,
        golden_count=GOLDEN_COUNT,
        metrics=metrics,
        card=card,
        reject=reject,
        replace=replace,
    )


def bundle_size(bundle_dir: Path) -> int:
    return sum(p.stat().st_size for p in bundle_dir.iterdir() if p.is_file())
