"""The classifier: a bundle's tokenizer and ONNX graph behind `classify(texts)`.

Device side: onnxruntime, tokenizers and numpy only, never torch. A Classifier is built
fully or not at all: hashes (and signature), graph interface, golden examples and a
warm-up all pass before `load_classifier` returns, so a model store can swap it in
without ever serving from a half-checked model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from edge_agent.bundle.layout import FP32_MODEL_FILE, BundleError
from edge_agent.bundle.verify import Verifier
from edge_agent.engine.out_of_scope import out_of_scope_rows
from edge_agent.engine.prediction import ClassifyTiming, LabelScore, Prediction
from edge_agent.engine.runner import BundleRunner, FloatArray, Precision, open_bundle

GOLDEN_SCORE_TOLERANCE: Final = 1e-3


class Classifier(BundleRunner):
    """A bundle's graph with its post-processing: logits -> probabilities -> labels."""

    @property
    def _labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def _identity(self) -> tuple[str, str]:
        return self.manifest.name, self.manifest.version

    @functools.cached_property
    def _thresholds(self) -> FloatArray:
        labels = self.manifest.labels
        return np.array([self.manifest.threshold(label) for label in labels], dtype=np.float32)

    def logits(
        self, texts: Sequence[str], timing: ClassifyTiming | None = None
    ) -> tuple[FloatArray, list[bool]]:
        """Raw logits [len(texts), len(labels)] and truncation flags."""
        return self.run(texts, len(self._labels), timing)

    def scores(self, logits: FloatArray) -> FloatArray:
        """Probabilities: softmax (single-label) or independent sigmoids (multi-label)."""
        if self.manifest.task == "multi-label":
            sigmoid: FloatArray = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
            return sigmoid
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        softmax: FloatArray = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        return softmax

    def classify(
        self, texts: Sequence[str], top_k: int = 3, timing: ClassifyTiming | None = None
    ) -> list[Prediction]:
        logits, truncated = self.logits(texts, timing)
        return self.predictions(logits, truncated, top_k)

    def predictions(
        self, logits: FloatArray, truncated: Sequence[bool], top_k: int = 3
    ) -> list[Prediction]:
        """What `classify` answers for these logits (from `logits`)."""
        probabilities = self.scores(logits)
        reject = self.manifest.reject
        out_of_scope = (
            out_of_scope_rows(logits, self._labels, reject.label, reject.score, reject.threshold)
            if reject is not None
            else np.zeros(len(logits), dtype=bool)
        )
        return [
            self._predict(row, cut, bool(out), top_k)
            for row, cut, out in zip(probabilities, truncated, out_of_scope, strict=True)
        ]

    def _predict(
        self, probabilities: FloatArray, truncated: bool, out_of_scope: bool, top_k: int
    ) -> Prediction:
        order = np.argsort(-probabilities, kind="stable")
        ranked = tuple(
            LabelScore(self._labels[i], float(probabilities[i])) for i in order[: max(top_k, 1)]
        )
        best = ranked[0]
        if self.manifest.task == "multi-label":
            above = tuple(self._labels[i] for i in order if probabilities[i] >= self._thresholds[i])
            return Prediction(
                best.label, best.score, ranked[:top_k], above, truncated, *self._identity
            )
        reject = self.manifest.reject
        label = reject.label if reject is not None and out_of_scope else best.label
        return Prediction(label, best.score, ranked[:top_k], (label,), truncated, *self._identity)


def check_golden(classifier: Classifier, model_file: str) -> None:
    """Reproduce the manifest's golden examples: labels exactly, scores within 1e-3."""
    golden = classifier.manifest.golden
    if not golden:
        return
    fp32 = classifier.precision == "fp32" and model_file == FP32_MODEL_FILE
    # One text per run, as pack records them. Bundles with static activation scales (the
    # toolkit's default since sentiment 1.1.3 / intent 1.1.2) give these scores at any
    # batch; older ones quantize activations per run, and padding from batch-mates would
    # shift their scores, so the check keeps to batch one for every bundle.
    predictions = [classifier.classify([example.text])[0] for example in golden]
    for example, prediction in zip(golden, predictions, strict=True):
        expected = example.score_fp32 if fp32 else example.score
        path = classifier.bundle_dir / model_file
        if prediction.label != example.label:
            raise BundleError(
                f"{path}: golden example {example.text[:40]!r} gave {prediction.label!r}, "
                f"expected {example.label!r}"
            )
        if expected is not None and abs(prediction.score - expected) > GOLDEN_SCORE_TOLERANCE:
            raise BundleError(
                f"{path}: golden example {example.text[:40]!r} scored {prediction.score:.5f}, "
                f"expected {expected:.5f}"
            )


def load_classifier(
    bundle_dir: Path,
    *,
    precision: Precision = "auto",
    threads: int | None = None,
    keyring: Verifier | None = None,
) -> Classifier:
    """Load a bundle fully or raise BundleError: signature, hashes, interface, golden, warm-up."""
    opened = open_bundle(
        Path(bundle_dir), embedding=False, precision=precision, threads=threads, keyring=keyring
    )
    bundle_dir, manifest, model_file = opened.bundle_dir, opened.manifest, opened.model_file
    classifier = Classifier(
        manifest, opened.tokenizer, opened.session, opened.precision, bundle_dir
    )
    # The warm-up doubles as a check that the logits match the manifest's labels.
    logits = classifier.check_longest_input(model_file)
    if logits.shape != (1, len(manifest.labels)):
        raise BundleError(
            f"{bundle_dir / model_file}: logits shape {list(logits.shape)[1:]} does not match "
            f"{len(manifest.labels)} labels in the manifest"
        )
    check_golden(classifier, model_file)
    return classifier
