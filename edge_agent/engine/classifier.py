"""The classifier: a bundle's tokenizer and ONNX graph behind `classify(texts)`.

Device side: onnxruntime, tokenizers and numpy only, never torch. A Classifier is built
fully or not at all: hashes (and signature), graph interface, golden examples and a
warm-up all pass before `load_classifier` returns, so a model store can swap it in
without ever serving from a half-checked model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from edge_agent.bundle.layout import FP32_MODEL_FILE, MODEL_FILE, TOKENIZER_FILE, BundleError
from edge_agent.bundle.manifest import Manifest
from edge_agent.bundle.verify import Verifier, verify_bundle
from edge_agent.engine.out_of_scope import out_of_scope_rows
from edge_agent.engine.prediction import ClassifyTiming, LabelScore, Prediction
from edge_agent.engine.session import OUTPUT_NAME, load_tokenizer, open_session
from edge_agent.telemetry.logs import get_logger

Precision = Literal["auto", "int8", "fp32"]
GOLDEN_SCORE_TOLERANCE: Final = 1e-3
# Texts per session run: bounds memory (activations grow with batch x length) while
# keeping the per-run overhead amortised.
MAX_RUN_BATCH: Final = 32
_TIMING_ROUNDS: Final = 5

log = get_logger(__name__)
FloatArray = npt.NDArray[np.float32]


class Classifier:
    """Tokenizer + onnxruntime session + post-processing for one bundle.

    One Classifier is used by one worker thread at a time.
    """

    def __init__(
        self,
        manifest: Manifest,
        tokenizer: Tokenizer,
        session: ort.InferenceSession,
        precision: str,
        bundle_dir: Path,
    ) -> None:
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.session = session
        self.precision = precision
        self.bundle_dir = bundle_dir
        self._labels = manifest.labels
        self._identity = (manifest.name, manifest.version)
        self._thresholds = np.array(
            [manifest.threshold(label) for label in manifest.labels], dtype=np.float32
        )

    def encode(self, texts: Sequence[str]) -> tuple[dict[str, npt.NDArray[np.int64]], list[bool]]:
        """Token ids and mask, padded to the longest text; which texts were truncated."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        truncated = [bool(e.overflowing) for e in encodings]
        return {"input_ids": ids, "attention_mask": mask}, truncated

    def logits(
        self, texts: Sequence[str], timing: ClassifyTiming | None = None
    ) -> tuple[FloatArray, list[bool]]:
        """Raw logits [len(texts), len(labels)] and truncation flags."""
        all_logits: list[FloatArray] = []
        all_truncated: list[bool] = []
        for start in range(0, len(texts), MAX_RUN_BATCH):
            began = time.perf_counter()
            feeds, truncated = self.encode(texts[start : start + MAX_RUN_BATCH])
            tokenized = time.perf_counter()
            (out,) = self.session.run([OUTPUT_NAME], feeds)
            if timing is not None:
                timing.tokenize_s += tokenized - began
                timing.infer_s += time.perf_counter() - tokenized
            all_logits.append(np.asarray(out, dtype=np.float32))
            all_truncated.extend(truncated)
        if not all_logits:
            return np.zeros((0, len(self._labels)), dtype=np.float32), []
        return np.concatenate(all_logits), all_truncated

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


def _timing_feeds(tokenizer: Tokenizer, seq_len: int) -> dict[str, npt.NDArray[np.int64]]:
    """One text of about `seq_len` real tokens: what the daemon mostly runs."""
    encoding = tokenizer.encode(" ".join(["warm up"] * seq_len))
    ids = encoding.ids[:seq_len]
    return {
        "input_ids": np.array([ids], dtype=np.int64),
        "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
    }


def _time_session(session: ort.InferenceSession, feeds: dict[str, npt.NDArray[np.int64]]) -> float:
    """Median seconds for one run of `feeds`."""
    session.run([OUTPUT_NAME], feeds)  # first run allocates; not representative
    times = []
    for _ in range(_TIMING_ROUNDS):
        start = time.perf_counter()
        session.run([OUTPUT_NAME], feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _choose_precision(
    bundle_dir: Path,
    manifest: Manifest,
    tokenizer: Tokenizer,
    precision: Precision,
    threads: int | None,
) -> tuple[str, str, ort.InferenceSession]:
    """(precision, file, session): auto times both graphs when the bundle has both."""
    has_fp32 = FP32_MODEL_FILE in manifest.files
    if precision == "fp32":
        if not has_fp32:
            raise BundleError(f"{bundle_dir / FP32_MODEL_FILE}: fp32 requested but not in bundle")
        return "fp32", FP32_MODEL_FILE, open_session(bundle_dir / FP32_MODEL_FILE, threads)
    int8 = open_session(bundle_dir / MODEL_FILE, threads)
    if precision == "int8" or not has_fp32:
        return "int8", MODEL_FILE, int8
    fp32 = open_session(bundle_dir / FP32_MODEL_FILE, threads)
    feeds = _timing_feeds(tokenizer, min(32, manifest.max_seq_len))
    int8_s, fp32_s = _time_session(int8, feeds), _time_session(fp32, feeds)
    chosen = "int8" if int8_s <= fp32_s else "fp32"
    log.info(
        "precision_chosen",
        model=manifest.name,
        version=manifest.version,
        precision=chosen,
        int8_ms=round(int8_s * 1e3, 3),
        fp32_ms=round(fp32_s * 1e3, 3),
    )
    if chosen == "int8":
        return "int8", MODEL_FILE, int8
    return "fp32", FP32_MODEL_FILE, fp32


def load_classifier(
    bundle_dir: Path,
    *,
    precision: Precision = "auto",
    threads: int | None = None,
    keyring: Verifier | None = None,
) -> Classifier:
    """Load a bundle fully or raise BundleError: signature, hashes, interface, golden, warm-up."""
    if precision not in ("auto", "int8", "fp32"):
        raise ValueError(f"precision must be auto, int8 or fp32, not {precision!r}")
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir, keyring)
    tokenizer = load_tokenizer(bundle_dir / TOKENIZER_FILE, manifest.max_seq_len)
    chosen, model_file, session = _choose_precision(
        bundle_dir, manifest, tokenizer, precision, threads
    )
    classifier = Classifier(manifest, tokenizer, session, chosen, bundle_dir)
    # Warm-up doubles as two checks: the graph takes inputs of max_seq_len tokens (the
    # longest the tokenizer will hand it), and its logits match the manifest's labels.
    longest = " ".join(["warm up"] * manifest.max_seq_len)
    try:
        logits, _ = classifier.logits([longest])
    except Exception as error:  # onnxruntime raises its own untyped exceptions
        raise BundleError(
            f"{bundle_dir / model_file}: fails on {manifest.max_seq_len} tokens "
            f"(max_seq_len too long for the graph?): {error}"
        ) from error
    if logits.shape != (1, len(manifest.labels)):
        raise BundleError(
            f"{bundle_dir / model_file}: logits shape {list(logits.shape)[1:]} does not match "
            f"{len(manifest.labels)} labels in the manifest"
        )
    check_golden(classifier, model_file)
    return classifier
