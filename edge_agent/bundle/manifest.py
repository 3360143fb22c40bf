"""manifest.json: its schema, parsed and validated into a frozen `Manifest`.

Pure: bytes in, a `Manifest` or a `BundleError` naming the file out. Checking the files the
manifest lists is `edge_agent.bundle.verify`; running the model is `edge_agent.engine`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from edge_agent.bundle.layout import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    MODEL_FILE,
    SIGNATURE_FILE,
    TOKENIZER_FILE,
    BundleError,
    read_small,
)

TASKS: Final = ("single-label", "multi-label", "embedding")
NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VERSION_PATTERN: Final = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
CARD_FIELDS: Final = ("intended_use", "training_data", "limitations", "created")
# How the out-of-scope rule measures confidence (edge_agent/engine/out_of_scope.py).
SCORE_KINDS: Final = ("probability", "energy")

Task = Literal["single-label", "multi-label", "embedding"]


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class OutOfScopeRule:
    """Single-label out-of-scope rule (the manifest's `reject`): `score` below `threshold`
    -> `label` (edge_agent/engine/out_of_scope.py: `probability` or `energy`)."""

    label: str
    threshold: float
    score: str = "probability"


@dataclass(frozen=True)
class GoldenExample:
    """A text whose prediction the engine must reproduce on load.

    `score` is for `model.onnx`; `score_fp32` (optional) for `model.fp32.onnx`, because
    INT8 and fp32 scores differ by more than the 1e-3 tolerance on some inputs. An
    embedding bundle's examples carry the `embedding` instead (label "" and score 0).
    """

    text: str
    label: str
    score: float
    score_fp32: float | None = None
    embedding: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    task: Task
    labels: tuple[str, ...]
    max_seq_len: int
    files: dict[str, FileEntry]
    golden: tuple[GoldenExample, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    reject: OutOfScopeRule | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    card: dict[str, str] = field(default_factory=dict)
    min_agent_version: str | None = None
    format: int = FORMAT_VERSION

    def threshold(self, label: str) -> float:
        return self.thresholds.get(label, 0.5)

    def to_json(self) -> dict[str, Any]:
        """The manifest as written to manifest.json (stable key order)."""
        data: dict[str, Any] = {
            "format": self.format,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "labels": list(self.labels),
            "max_seq_len": self.max_seq_len,
        }
        if self.thresholds:
            data["thresholds"] = dict(self.thresholds)
        if self.reject is not None:
            data["reject"] = {
                "label": self.reject.label,
                "threshold": self.reject.threshold,
                "score": self.reject.score,
            }
        data["files"] = {
            name: {"sha256": entry.sha256, "size": entry.size}
            for name, entry in sorted(self.files.items())
        }
        data["metrics"] = dict(self.metrics)
        data["golden"] = [_golden_json(example) for example in self.golden]
        data["card"] = dict(self.card)
        if self.min_agent_version is not None:
            data["min_agent_version"] = self.min_agent_version
        return data


def _golden_json(example: GoldenExample) -> dict[str, Any]:
    if example.embedding is not None:
        return {"text": example.text, "embedding": list(example.embedding)}
    data: dict[str, Any] = {"text": example.text, "label": example.label, "score": example.score}
    if example.score_fp32 is not None:
        data["score_fp32"] = example.score_fp32
    return data


def version_key(version: str) -> tuple[int, int, int]:
    """Sort key for a `MAJOR.MINOR.PATCH` version; ValueError if it is not one."""
    match = VERSION_PATTERN.fullmatch(version)
    if match is None:
        raise ValueError(f"not a MAJOR.MINOR.PATCH version: {version!r}")
    return int(match[1]), int(match[2]), int(match[3])


def load_manifest(bundle_dir: Path) -> Manifest:
    """Parse and validate manifest.json's schema (no file hashes checked here)."""
    return parse_manifest(read_manifest_bytes(bundle_dir), bundle_dir / MANIFEST_FILE)


def read_manifest_bytes(bundle_dir: Path) -> bytes:
    """manifest.json's bytes, at most MAX_MANIFEST_BYTES of them (BundleError otherwise)."""
    return read_small(bundle_dir / MANIFEST_FILE, MAX_MANIFEST_BYTES, "cannot read")


def parse_manifest(raw: bytes, path: Path | str = MANIFEST_FILE) -> Manifest:
    """Validate manifest bytes; `path` only names the file in errors."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path}: not valid UTF-8 JSON: {error}") from error
    try:
        return _manifest_from_json(data)
    except (TypeError, ValueError, KeyError) as error:
        raise BundleError(f"{path}: {error}") from error


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise ValueError(f"missing field {key!r}")
    value = data[key]
    # bool is an int subclass; a manifest saying `"max_seq_len": true` is a mistake.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ValueError(f"field {key!r} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise ValueError(f"field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _manifest_from_json(data: Any) -> Manifest:
    if not isinstance(data, dict):
        raise ValueError("manifest must be a JSON object")
    fmt = _require(data, "format", int)
    if fmt != FORMAT_VERSION:
        raise ValueError(f"unsupported format {fmt} (this agent reads format {FORMAT_VERSION})")
    name = _require(data, "name", str)
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"name {name!r} must match {NAME_PATTERN.pattern}")
    version = _require(data, "version", str)
    version_key(version)
    task = _require(data, "task", str)
    if task not in TASKS:
        raise ValueError(f"task {task!r} must be one of {', '.join(TASKS)}")
    labels = _require(data, "labels", list)
    if task == "embedding":
        if labels:
            raise ValueError("an embedding bundle has no labels (labels must be [])")
    elif not labels or not all(isinstance(label, str) and label for label in labels):
        raise ValueError("labels must be a non-empty list of non-empty strings")
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be unique")
    max_seq_len = _require(data, "max_seq_len", int)
    if not 2 < max_seq_len <= 4096:
        raise ValueError(f"max_seq_len {max_seq_len} out of range (3..4096)")
    files = _parse_files(_require(data, "files", dict))
    thresholds = _parse_thresholds(data.get("thresholds", {}), labels, task)
    reject = _parse_reject(data.get("reject"), task)
    golden = tuple(_parse_golden(item, task) for item in data.get("golden", []))
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise ValueError("metrics must map names to numbers")
    card = data.get("card", {})
    if not isinstance(card, dict) or not all(isinstance(v, str) for v in card.values()):
        raise ValueError("card must map fields to strings")
    min_agent = data.get("min_agent_version")
    if min_agent is not None:
        version_key(str(min_agent))
    return Manifest(
        name=name,
        version=version,
        task=task,
        labels=tuple(labels),
        max_seq_len=max_seq_len,
        files=files,
        golden=golden,
        thresholds=thresholds,
        reject=reject,
        metrics={str(k): float(v) for k, v in metrics.items()},
        card={str(k): v for k, v in card.items()},
        min_agent_version=min_agent,
    )


def _parse_files(files: dict[str, Any]) -> dict[str, FileEntry]:
    entries: dict[str, FileEntry] = {}
    for name, entry in files.items():
        if "/" in name or name.startswith(".") or name in (MANIFEST_FILE, SIGNATURE_FILE):
            raise ValueError(f"files: {name!r} is not a plain bundle file name")
        if not isinstance(entry, dict):
            raise ValueError(f"files[{name!r}] must be an object")
        digest = _require(entry, "sha256", str)
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"files[{name!r}].sha256 is not 64 lower-case hex digits")
        size = _require(entry, "size", int)
        entries[name] = FileEntry(sha256=digest, size=size)
    for required in (MODEL_FILE, TOKENIZER_FILE):
        if required not in entries:
            raise ValueError(f"files must list {required}")
    return entries


def _parse_thresholds(raw: Any, labels: list[str], task: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ValueError("thresholds must be an object")
    if raw and task != "multi-label":
        raise ValueError("thresholds are only for multi-label bundles")
    thresholds: dict[str, float] = {}
    for label, value in raw.items():
        if label not in labels:
            raise ValueError(f"thresholds: unknown label {label!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"thresholds[{label!r}] must be a number in [0, 1]")
        thresholds[label] = float(value)
    return thresholds


def _parse_reject(raw: Any, task: str) -> OutOfScopeRule | None:
    if raw is None:
        return None
    if task != "single-label":
        raise ValueError("reject is only for single-label bundles")
    if not isinstance(raw, dict):
        raise ValueError("reject must be an object")
    label = _require(raw, "label", str)
    threshold = _require(raw, "threshold", (int, float))
    score = raw.get("score", "probability")
    if score not in SCORE_KINDS:
        raise ValueError(f"reject.score {score!r}: expected one of {', '.join(SCORE_KINDS)}")
    if score == "probability" and not 0 <= threshold <= 1:
        raise ValueError("reject.threshold must be in [0, 1] for score 'probability'")
    if not math.isfinite(threshold):
        raise ValueError("reject.threshold must be a finite number")
    return OutOfScopeRule(label=label, threshold=float(threshold), score=score)


def _parse_golden(raw: Any, task: str) -> GoldenExample:
    if not isinstance(raw, dict):
        raise ValueError("golden examples must be objects")
    if task == "embedding":
        vector = _require(raw, "embedding", list)
        if not vector or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in vector
        ):
            raise ValueError("golden embedding must be a non-empty list of finite numbers")
        return GoldenExample(
            text=_require(raw, "text", str),
            label="",
            score=0.0,
            embedding=tuple(float(v) for v in vector),
        )
    score_fp32 = raw.get("score_fp32")
    if score_fp32 is not None and not isinstance(score_fp32, int | float):
        raise ValueError("golden score_fp32 must be a number")
    return GoldenExample(
        text=_require(raw, "text", str),
        label=_require(raw, "label", str),
        score=float(_require(raw, "score", (int, float))),
        score_fp32=None if score_fp32 is None else float(score_fp32),
    )
