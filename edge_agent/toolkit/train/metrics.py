"""Classification metrics (numpy only): accuracy, macro-F1, per-class precision/recall,
the most frequent confusions, multi-label micro-F1, and out-of-scope operating points."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClassScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Report:
    accuracy: float  # single-label: accuracy; multi-label: exact-match ratio
    macro_f1: float
    micro_f1: float
    per_class: tuple[ClassScores, ...]
    confusions: tuple[tuple[str, str, int], ...]  # (true, predicted, count), most frequent first
    rows: int

    @property
    def macro_recall(self) -> float:
        """Mean recall over the classes present (TweetEval's sentiment metric: it does not
        reward a model for leaning towards the frequent neutral class)."""
        present = [c.recall for c in self.per_class if c.support > 0]
        return float(np.mean(present)) if present else 0.0


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
    return out


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _per_class(
    truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]
) -> tuple[ClassScores, ...]:
    """truth/predicted: boolean [rows, classes]."""
    scores = []
    for k, label in enumerate(labels):
        tp = int(np.sum(truth[:, k] & predicted[:, k]))
        fp = int(np.sum(~truth[:, k] & predicted[:, k]))
        fn = int(np.sum(truth[:, k] & ~predicted[:, k]))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(ClassScores(label, precision, recall, _f1(precision, recall), tp + fn))
    return tuple(scores)


def single_label_report(
    predicted: Sequence[int], truth: Sequence[int], labels: Sequence[str], top_confusions: int = 10
) -> Report:
    pred = np.asarray(predicted, dtype=np.int64)
    true = np.asarray(truth, dtype=np.int64)
    eye = np.eye(len(labels), dtype=bool)
    per_class = _per_class(eye[true], eye[pred], labels)
    present = [c for c in per_class if c.support > 0]
    pairs = Counter(
        (labels[t], labels[p]) for t, p in zip(true.tolist(), pred.tolist(), strict=True) if t != p
    )
    accuracy = float(np.mean(pred == true)) if len(true) else 0.0
    return Report(
        accuracy=accuracy,
        macro_f1=float(np.mean([c.f1 for c in present])) if present else 0.0,
        micro_f1=accuracy,
        per_class=per_class,
        confusions=tuple((t, p, n) for (t, p), n in pairs.most_common(top_confusions)),
        rows=len(true),
    )


def multi_label_report(
    predicted: np.ndarray, truth: np.ndarray, labels: Sequence[str], top_confusions: int = 10
) -> Report:
    """predicted/truth: multi-hot [rows, classes]. Confusions: (true label missed, label
    predicted instead) pairs on rows where both happened."""
    pred = np.asarray(predicted) > 0.5
    true = np.asarray(truth) > 0.5
    per_class = _per_class(true, pred, labels)
    present = [c for c in per_class if c.support > 0]
    tp = int(np.sum(true & pred))
    fp = int(np.sum(~true & pred))
    fn = int(np.sum(true & ~pred))
    micro_p = tp / (tp + fp) if tp + fp else 0.0
    micro_r = tp / (tp + fn) if tp + fn else 0.0
    pairs: Counter[tuple[str, str]] = Counter()
    for row_true, row_pred in zip(true, pred, strict=True):
        for missed in np.flatnonzero(row_true & ~row_pred):
            for extra in np.flatnonzero(row_pred & ~row_true):
                pairs[(labels[int(missed)], labels[int(extra)])] += 1
    return Report(
        accuracy=float(np.mean(np.all(pred == true, axis=1))) if len(true) else 0.0,
        macro_f1=float(np.mean([c.f1 for c in present])) if present else 0.0,
        micro_f1=_f1(micro_p, micro_r),
        per_class=per_class,
        confusions=tuple((t, p, n) for (t, p), n in pairs.most_common(top_confusions)),
        rows=len(true),
    )


def primary_metric(logits: np.ndarray, targets: Sequence[Any], multi_label: bool) -> float:
    """The number early stopping maximises: accuracy, or micro-F1 for multi-label."""
    if multi_label:
        pred = logits > 0.0
        true = np.asarray(targets) > 0.5
        tp = float(np.sum(pred & true))
        denom = float(np.sum(pred) + np.sum(true))
        return 2 * tp / denom if denom else 0.0
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(targets)))


def agreement(logits_a: np.ndarray, logits_b: np.ndarray, multi_label: bool) -> float:
    """Share of rows where two models (e.g. INT8 and fp32) give the same prediction."""
    if multi_label:
        return float(np.mean(np.all((logits_a > 0) == (logits_b > 0), axis=1)))
    return float(np.mean(np.argmax(logits_a, axis=1) == np.argmax(logits_b, axis=1)))


def format_report(report: Report, title: str) -> str:
    lines = [
        f"{title}: {report.rows} rows  accuracy {report.accuracy:.4f}  "
        f"macro-F1 {report.macro_f1:.4f}  micro-F1 {report.micro_f1:.4f}",
        f"  {'label':<28} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
    ]
    lines.extend(
        f"  {c.label[:28]:<28} {c.precision:>9.4f} {c.recall:>7.4f} {c.f1:>7.4f} {c.support:>8}"
        for c in report.per_class
    )
    if report.confusions:
        lines.append("  most frequent confusions (true -> predicted: count):")
        lines.extend(f"    {t} -> {p}: {n}" for t, p, n in report.confusions)
    return "\n".join(lines)
