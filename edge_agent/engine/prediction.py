"""What the engine answers for one text: pure data, shared with the message pipeline.

The pipeline publishes these fields as they are (edge_agent/pipeline/messages.py), so a
result needs no copy of its own; keeping this module free of onnxruntime keeps the
pipeline free of it too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    label: str  # argmax (single-label, after `reject`) or top label (multi-label)
    score: float
    top_k: tuple[LabelScore, ...]
    labels: tuple[str, ...]  # multi-label: all above threshold; single-label: (label,)
    truncated: bool  # the tokenizer cut tokens at max_seq_len
    model: str  # the bundle's name and version: every result names what labelled it
    version: str


@dataclass
class ClassifyTiming:
    """Where a classify call's time went, summed over the calls it is passed to: the
    per-stage figures on the stats topic and /metrics (docs/benchmarks.md)."""

    tokenize_s: float = 0.0
    infer_s: float = 0.0
