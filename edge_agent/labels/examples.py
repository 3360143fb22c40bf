"""An examples file: labels, each with a few example texts, read into a frozen `ExampleSet`.

Pure: bytes in, an `ExampleSet` or a `LabelsError` naming the file and the problem out. Two
forms, chosen by the file's suffix:

YAML (`.yaml` / `.yml`)::

    other: other          # label of a message close to none of the labels (default "other")
    threshold: auto       # or a similarity in [-1, 1.2]; auto: from the examples
    labels:
      alarm:                          # a list of examples ...
        - smoke detected in the kitchen
        - water leak under the sink
      maintenance:                    # ... or examples and negatives
        examples: [filter needs replacing, battery low on sensor 4]
        negatives: [battery fully charged]

CSV (`.csv`): a header with `text` and `label` columns and an optional `negative` column
(`1`/`true`/`yes` marks a row that is *not* its label); other and threshold take their
defaults.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from edge_agent.labels.rule import LEXICAL_SIMILARITY_WEIGHT

DEFAULT_OTHER: Final = "other"
AUTO: Final = "auto"
MAX_FILE_BYTES: Final = 4 * 1024 * 1024
MAX_LABELS: Final = 1000
MAX_EXAMPLES: Final = 20_000
MAX_TEXT_CHARS: Final = 2000
SUFFIXES: Final = (".yaml", ".yml", ".csv")


class LabelsError(Exception):
    """An examples file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class LabelExamples:
    name: str
    examples: tuple[str, ...]
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExampleSet:
    labels: tuple[LabelExamples, ...]
    other: str = DEFAULT_OTHER
    threshold: float | None = None  # None: auto, from the examples (rule.auto_threshold)
    digest: str = ""  # sha256 of the file's bytes: which label set labelled a result

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def revision(self) -> str:
        return self.digest[:8]

    @property
    def texts(self) -> list[str]:
        """Every label's examples, label by label (the order of `labels`)."""
        return [text for label in self.labels for text in label.examples]

    @property
    def negative_texts(self) -> list[str]:
        return [text for label in self.labels for text in label.negatives]


def read_examples(path: Path) -> ExampleSet:
    """Read and validate an examples file (YAML or CSV by suffix)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise LabelsError(f"{path}: cannot read: {error.strerror or error}") from error
    if len(raw) > MAX_FILE_BYTES:
        raise LabelsError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return parse_examples(raw, path)


def parse_examples(raw: bytes, path: Path) -> ExampleSet:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise LabelsError(f"{path}: expected a .yaml, .yml or .csv file")
    try:
        text = raw.decode("utf-8-sig")
        parsed = _from_csv(text) if suffix == ".csv" else _from_yaml(text)
    except UnicodeDecodeError as error:
        raise LabelsError(f"{path}: not UTF-8: {error}") from error
    except (ValueError, yaml.YAMLError, csv.Error) as error:
        raise LabelsError(f"{path}: {error}") from error
    return ExampleSet(
        labels=parsed.labels,
        other=parsed.other,
        threshold=parsed.threshold,
        digest=hashlib.sha256(raw).hexdigest(),
    )


def _from_yaml(text: str) -> ExampleSet:
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("expected a mapping with a `labels` key")
    unknown = set(data) - {"labels", "other", "threshold"}
    if unknown:
        raise ValueError(
            f"unknown key {sorted(map(str, unknown))[0]!r} (expected labels, other, threshold)"
        )
    raw_labels = data.get("labels")
    if not isinstance(raw_labels, dict) or not raw_labels:
        raise ValueError("`labels` must map each label to its example texts")
    labels = []
    for name, value in raw_labels.items():
        if isinstance(value, list):
            examples, negatives = value, list[Any]()
        elif isinstance(value, dict):
            extra = set(value) - {"examples", "negatives"}
            if extra:
                raise ValueError(f"labels.{name}: unknown key {sorted(map(str, extra))[0]!r}")
            examples, negatives = value.get("examples", []), value.get("negatives") or []
        else:
            raise ValueError(f"labels.{name}: expected a list of texts or examples/negatives")
        labels.append(
            LabelExamples(
                str(name),
                _texts(examples, f"labels.{name}.examples"),
                _texts(negatives, f"labels.{name}.negatives"),
            )
        )
    return _checked(labels, data.get("other", DEFAULT_OTHER), data.get("threshold", AUTO))


def _from_csv(text: str) -> ExampleSet:
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or ())
    if not {"text", "label"} <= columns:
        raise ValueError("the header must name `text` and `label` columns")
    examples: dict[str, list[str]] = {}
    negatives: dict[str, list[str]] = {}
    for line, row in enumerate(reader, start=2):
        label, text_value = (row.get("label") or "").strip(), row.get("text") or ""
        if not label:
            raise ValueError(f"line {line}: empty label")
        negative = (row.get("negative") or "").strip().lower() in ("1", "true", "yes")
        (negatives if negative else examples).setdefault(label, []).append(text_value)
        examples.setdefault(label, [])
    labels = [
        LabelExamples(
            name,
            _texts(texts, f"label {name!r}"),
            _texts(negatives.get(name, []), f"label {name!r} negatives"),
        )
        for name, texts in examples.items()
    ]
    return _checked(labels, DEFAULT_OTHER, AUTO)


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of texts")
    texts = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{where}: every example must be a non-empty text")
        if len(item) > MAX_TEXT_CHARS:
            raise ValueError(f"{where}: an example is longer than {MAX_TEXT_CHARS} characters")
        texts.append(item.strip())
    return tuple(texts)


def _checked(labels: list[LabelExamples], other: Any, threshold: Any) -> ExampleSet:
    if not labels:
        raise ValueError("no labels")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"more than {MAX_LABELS} labels")
    for label in labels:
        if not label.name.strip():
            raise ValueError("a label name is empty")
        if not label.examples:
            raise ValueError(f"label {label.name!r} has no examples")
    if sum(len(label.examples) + len(label.negatives) for label in labels) > MAX_EXAMPLES:
        raise ValueError(f"more than {MAX_EXAMPLES} examples in all")
    if not isinstance(other, str) or not other.strip():
        raise ValueError("`other` must be a non-empty label name")
    if other in {label.name for label in labels}:
        raise ValueError(f"`other` ({other!r}) is also one of the labels")
    return ExampleSet(tuple(labels), other, _threshold(threshold))


def _threshold(value: Any) -> float | None:
    if value == AUTO or value is None:
        return None
    # The rule's similarity: the embedding cosine plus LEXICAL_SIMILARITY_WEIGHT x the word
    # overlap (labels/rule.py), each in [-1, 1] and [0, 1].
    highest = 1 + LEXICAL_SIMILARITY_WEIGHT
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1 <= value <= highest:
        raise ValueError(f"`threshold` must be `auto` or a similarity in [-1, {highest:g}]")
    return float(value)
