"""Write a model bundle: files, hashes, golden examples computed by the engine itself.

Python API (used by `edge-agent model pack` and the training recipes):

    bundle_dir = pack_bundle(
        Path("models"), name="sentiment", version="1.0.0", task="single-label",
        labels=["negative", "positive"], max_seq_len=128,
        model=Path("model.onnx"), fp32_model=Path("model.fp32.onnx"),
        tokenizer=Path("tokenizer.json"), golden_texts=validation_texts[:200],
        metrics={"accuracy": 0.91}, card={"intended_use": "...", ...},
    )

Golden examples are predicted by running the staged bundle through `edge_agent.engine.classifier`
(the same code the device runs), so a bundle always reproduces its own goldens. The most
confident texts are kept, spread over labels, because a confident prediction's score
moves least between CPUs whose integer kernels round differently; for the same reason a
text whose reject score (the manifest's `reject`) lies within GOLDEN_REJECT_MARGIN of the
threshold is never a golden example. A text whose INT8 score moves by more than
PORTABLE_GOLDEN_MARGIN when the same integers run in a kernel that cannot saturate is
taken only when too few others are left: with full-range int8 weights (`model quantize
--weights int8`) x86 CPUs without VNNI saturate int8 sums where ARM and VNNI CPUs do not,
and a golden recorded on one must reproduce on the other (a re-pack of intent with int8
weights, packed on such an x86 machine, missed by 2.5e-3 on aarch64). With the default
int7 weights nothing saturates and every text passes this test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from edge_agent.bundle.layout import (
    FP32_MODEL_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    sha256_file,
)
from edge_agent.bundle.manifest import (
    CARD_FIELDS,
    FileEntry,
    GoldenExample,
    Manifest,
    OutOfScopeRule,
    Task,
    parse_manifest,
)
from edge_agent.engine.out_of_scope import in_scope_scores

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from edge_agent.engine.classifier import Classifier
    from edge_agent.engine.prediction import Prediction

# In the reject score's units (a probability, or logits for energy). INT8 scores differ
# between x86 and emulated ARM by under 1e-4 (deploy/check-arm64.sh); 100 times that is safe.
GOLDEN_REJECT_MARGIN: Final = 0.01
# A quarter of engine.GOLDEN_SCORE_TOLERANCE (1e-3): the rest is left for rounding that
# differs between CPUs' kernels.
PORTABLE_GOLDEN_MARGIN: Final = 2.5e-4


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(bundle_dir: Path, manifest: Manifest) -> None:
    text = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n"
    raw = text.encode("utf-8")
    parse_manifest(raw, bundle_dir / MANIFEST_FILE)  # never write what we could not read
    (bundle_dir / MANIFEST_FILE).write_bytes(raw)


def choose_golden(
    texts: Sequence[str],
    predictions: Sequence[Prediction],
    fp32_predictions: Sequence[Prediction] | None,
    count: int,
    near_reject_threshold: frozenset[int] = frozenset(),
    *,
    unsaturated: Sequence[Prediction] | None = None,
) -> tuple[GoldenExample, ...]:
    """Up to `count` confident examples, round-robin over labels (most confident label
    first), INT8 and fp32 agreeing, none of the texts whose index is in
    `near_reject_threshold`. Given `unsaturated` (the INT8 graph's predictions with uint8
    weights), texts whose label changes are left out and texts whose score moves by more
    than PORTABLE_GOLDEN_MARGIN are taken only when too few others remain."""
    portable: dict[str, list[tuple[float, int]]] = {}
    moving: list[tuple[float, int]] = []  # (how far the score moves, index)
    for index, prediction in enumerate(predictions):
        fp32 = fp32_predictions[index] if fp32_predictions is not None else None
        if fp32 is not None and fp32.label != prediction.label:
            continue
        if index in near_reject_threshold:
            continue
        twin = unsaturated[index] if unsaturated is not None else None
        if twin is not None and twin.label != prediction.label:
            continue
        moved = 0.0 if twin is None else abs(twin.score - prediction.score)
        if moved > PORTABLE_GOLDEN_MARGIN:
            moving.append((moved, index))
            continue
        margin = prediction.score - (
            prediction.top_k[1].score if len(prediction.top_k) > 1 else 0.0
        )
        portable.setdefault(prediction.label, []).append((margin, index))
    # Labels whose best example is the most confident come first: with many labels and few
    # goldens, an alphabetical round-robin picked labels with no confident example at all,
    # and a 0.58 score moved by 3e-3 between x86 and ARM (over the 1e-3 tolerance).
    queues = sorted(
        (sorted(items, reverse=True) for _, items in sorted(portable.items())),
        key=lambda queue: -queue[0][0],
    )
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0)[1])
    # Short of portable texts (a barely trained model on a saturating CPU), the ones that
    # move least: such a bundle reproduces its goldens on CPUs like the one that packed it.
    chosen += [index for _, index in sorted(moving)[: count - len(chosen)]]
    golden = []
    for index in chosen:
        prediction = predictions[index]
        fp32 = fp32_predictions[index] if fp32_predictions is not None else None
        golden.append(
            GoldenExample(
                text=texts[index],
                label=prediction.label,
                score=round(prediction.score, 6),
                score_fp32=None if fp32 is None else round(fp32.score, 6),
            )
        )
    return tuple(golden)


def pack_bundle(
    models_dir: Path,
    *,
    name: str,
    version: str,
    task: Task,
    labels: Sequence[str],
    max_seq_len: int,
    model: Path,
    tokenizer: Path | Tokenizer,
    fp32_model: Path | None = None,
    golden_texts: Sequence[str] = (),
    golden_count: int = 4,
    metrics: Mapping[str, float] | None = None,
    card: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    reject: OutOfScopeRule | None = None,
    min_agent_version: str | None = None,
    replace: bool = False,
) -> Path:
    """Write `<models_dir>/<name>/<version>/` atomically and return it.

    `model` is the INT8 graph (becomes model.onnx), `fp32_model` the optional fp32 one.
    The bundle is staged in `.tmp-<version>`, loaded through the engine to compute its
    golden examples, then renamed into place and loaded once more as a self-check.
    """
    from edge_agent.engine.classifier import load_classifier

    final = Path(models_dir) / name / version
    if final.exists() and not replace:
        raise FileExistsError(f"{final}: bundle already exists")
    staging = final.parent / f".tmp-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(model, staging / MODEL_FILE)
    if fp32_model is not None:
        shutil.copyfile(fp32_model, staging / FP32_MODEL_FILE)
    if isinstance(tokenizer, str | Path):
        shutil.copyfile(tokenizer, staging / TOKENIZER_FILE)
    else:
        tokenizer.save(str(staging / TOKENIZER_FILE))
    files = {
        p.name: FileEntry(sha256=sha256_file(p), size=p.stat().st_size)
        for p in sorted(staging.iterdir())
    }
    full_card = {field: "" for field in CARD_FIELDS}
    full_card["created"] = datetime.now(UTC).replace(microsecond=0).isoformat()
    full_card.update(card or {})
    manifest = Manifest(
        name=name,
        version=version,
        task=task,
        labels=tuple(labels),
        max_seq_len=max_seq_len,
        files=files,
        thresholds=dict(thresholds or {}),
        reject=reject,
        metrics={k: float(v) for k, v in (metrics or {}).items()},
        card=full_card,
        min_agent_version=min_agent_version,
    )
    write_manifest(staging, manifest)
    if golden_texts and task == "embedding":
        golden = _golden_embeddings(staging, list(golden_texts)[:golden_count])
        manifest = dataclasses.replace(manifest, golden=golden)
        write_manifest(staging, manifest)
    elif golden_texts:
        texts = list(golden_texts)
        classifiers = [load_classifier(staging, precision="int8", threads=1)]
        if fp32_model is not None:
            classifiers.append(load_classifier(staging, precision="fp32", threads=1))
        runs = [_classify_one_by_one(c, texts) for c in classifiers]
        near = frozenset().union(*(near_threshold for _, near_threshold in runs))
        fp32 = runs[1][0] if fp32_model is not None else None
        twin = _unsaturated_twin(classifiers[0])
        unsaturated = _classify_one_by_one(twin, texts)[0] if twin is not None else None
        golden = choose_golden(texts, runs[0][0], fp32, golden_count, near, unsaturated=unsaturated)
        manifest = dataclasses.replace(manifest, golden=golden)
        write_manifest(staging, manifest)
    for path in staging.iterdir():
        _fsync(path)
    _fsync(staging)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    _fsync(final.parent)
    # The bundle must load as shipped.
    if task == "embedding":
        from edge_agent.engine.encoder import load_encoder

        load_encoder(final, precision="auto", threads=1)
    else:
        load_classifier(final, precision="auto", threads=1)
    return final


def _golden_embeddings(staging: Path, texts: list[str]) -> tuple[GoldenExample, ...]:
    """The INT8 graph's embedding of each text, one text per run as the engine checks them."""
    from edge_agent.engine.encoder import load_encoder

    encoder = load_encoder(staging, precision="int8", threads=1)
    golden = []
    for text in texts:
        (vector,), _ = encoder.embed([text])
        golden.append(
            GoldenExample(
                text=text, label="", score=0.0, embedding=tuple(round(float(v), 6) for v in vector)
            )
        )
    return tuple(golden)


def _unsaturated_twin(classifier: Classifier) -> Classifier | None:
    """The classifier's INT8 graph with its int8 weights as uint8 (the same integers), for
    the arithmetic of CPUs whose kernels do not saturate; None when it has no int8 weights."""
    import onnx
    import onnxruntime as ort

    from edge_agent.engine.classifier import Classifier
    from edge_agent.engine.session import session_options
    from edge_agent.toolkit.export.quantize import as_unsigned_weights

    model = onnx.load(str(classifier.bundle_dir / MODEL_FILE))
    if not as_unsigned_weights(model):
        return None
    session = ort.InferenceSession(
        model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"]
    )
    return Classifier(
        classifier.manifest, classifier.tokenizer, session, "int8", classifier.bundle_dir
    )


def _classify_one_by_one(
    classifier: Classifier, texts: Sequence[str]
) -> tuple[list[Prediction], frozenset[int]]:
    """Batch-of-one predictions, as `engine.check_golden` reproduces them (with static
    activation scales the same at any batch; dynamic ones move with padding), and the indices
    of the texts whose reject score lies within GOLDEN_REJECT_MARGIN of the threshold."""
    reject = classifier.manifest.reject
    labels = classifier.manifest.labels
    predictions: list[Prediction] = []
    near: set[int] = set()
    for index, text in enumerate(texts):
        logits, truncated = classifier.logits([text])
        predictions += classifier.predictions(logits, truncated)
        if reject is not None:
            score = in_scope_scores(logits, labels, reject.label, reject.score)[0]
            if abs(score - reject.threshold) < GOLDEN_REJECT_MARGIN:
                near.add(index)
    return predictions, frozenset(near)
