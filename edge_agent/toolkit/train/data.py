"""Labelled text for training: read CSV / TSV / JSONL, split, tokenise, length-bucketed batches.

Pure Python and `tokenizers` only (no torch): the batches are lists of row indices, turned into
tensors by the training loop. Bucketing by length keeps padding small, which is most of the
compute on short messages (SST-2 rows are mostly a few words).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

# How many batches' worth of rows are sorted together: enough to group similar lengths, few
# enough that the order still changes every epoch.
_BUCKET_BATCHES: Final = 50


class DataError(Exception):
    """The labelled file cannot be used; the message names the file, row and problem."""


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with their label names: one per row (single-label) or a tuple (multi-label)."""

    texts: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    multi_label: bool

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabelledTexts:
        return LabelledTexts(
            texts=tuple(self.texts[i] for i in indices),
            labels=tuple(self.labels[i] for i in indices),
            multi_label=self.multi_label,
        )

    def label_names(self) -> list[str]:
        """Sorted label vocabulary (index = logit index)."""
        return sorted({name for row in self.labels for name in row})


def _split_label(value: Any, separator: str | None, where: str) -> tuple[str, ...]:
    if isinstance(value, list):
        names = tuple(str(v).strip() for v in value)
    elif isinstance(value, bool) or value is None:
        raise DataError(f"{where}: label must be a string, number or list, got {value!r}")
    elif separator is not None:
        names = tuple(part.strip() for part in str(value).split(separator))
    else:
        names = (str(value).strip(),)
    return tuple(name for name in names if name)


def read_labelled(
    path: Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_separator: str | None = None,
    multi_label: bool = False,
) -> LabelledTexts:
    """Read a .csv, .tsv or .jsonl file of labelled texts.

    Multi-label rows carry a JSON list (JSONL) or a `label_separator`-joined string. A
    single-label row must carry exactly one label.
    """
    suffix = path.suffix.lower()
    rows: list[tuple[Any, Any, str]] = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if suffix in (".csv", ".tsv"):
                reader = csv.DictReader(
                    handle, delimiter="\t" if suffix == ".tsv" else ",", quoting=csv.QUOTE_MINIMAL
                )
                fields = reader.fieldnames or []
                for column in (text_column, label_column):
                    if column not in fields:
                        raise DataError(f"{path}: no column {column!r} (columns: {fields})")
                for number, row in enumerate(reader, start=2):
                    rows.append((row[text_column], row[label_column], f"{path}:{number}"))
            elif suffix in (".jsonl", ".json"):
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    where = f"{path}:{number}"
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DataError(f"{where}: invalid JSON ({error.msg})") from error
                    if not isinstance(item, dict):
                        raise DataError(f"{where}: expected a JSON object per line")
                    if text_column not in item or label_column not in item:
                        raise DataError(f"{where}: needs keys {text_column!r} and {label_column!r}")
                    rows.append((item[text_column], item[label_column], where))
            else:
                raise DataError(f"{path}: unknown format {suffix!r} (use .csv, .tsv or .jsonl)")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from error
    if multi_label and label_separator is None:
        label_separator = ","
    texts: list[str] = []
    labels: list[tuple[str, ...]] = []
    for text, label, where in rows:
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: empty or non-text {text_column!r}")
        names = _split_label(label, label_separator if multi_label else None, where)
        if not multi_label and len(names) != 1:
            raise DataError(f"{where}: expected one label, got {names!r}")
        texts.append(text.strip())
        labels.append(names)
    if not texts:
        raise DataError(f"{path}: no rows")
    return LabelledTexts(tuple(texts), tuple(labels), multi_label)


def split_indices(
    labels: Sequence[tuple[str, ...]], fractions: Sequence[float], seed: int
) -> list[list[int]]:
    """Split row indices into len(fractions)+1 parts (the last takes the rest).

    Stratified by each row's first label so that every class appears in every part in
    proportion; the same seed always gives the same split.
    """
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for index, row in enumerate(labels):
        by_label.setdefault(row[0] if row else "", []).append(index)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for key in sorted(by_label):
        members = by_label[key]
        rng.shuffle(members)
        start = 0
        for part, fraction in enumerate(fractions):
            count = round(len(members) * fraction)
            parts[part].extend(members[start : start + count])
            start += count
        parts[-1].extend(members[start:])
    for members_of_part in parts:
        rng.shuffle(members_of_part)
    return parts


Row = TypeVar("Row")


def calibration_sample(rows: Sequence[Row], count: int, seed: int = 0) -> list[Row]:
    """A fixed random sample of `count` training rows (all of them if fewer), in their order:
    what the grouped-layer fit and quantization's outlier smoothing measure activations on."""
    chosen = random.Random(seed).sample(range(len(rows)), min(count, len(rows)))
    return [rows[i] for i in sorted(chosen)]


def encode_texts(tokenizer: Any, texts: Sequence[str], max_seq_len: int) -> list[list[int]]:
    """Token ids with [CLS]/[SEP], cut at max_seq_len, unpadded (a `tokenizers.Tokenizer`)."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq_len)
    return [encoding.ids for encoding in tokenizer.encode_batch(list(texts))]


def length_batches(lengths: Sequence[int], batch_size: int, *, seed: int | None) -> list[list[int]]:
    """Row indices grouped into batches of similar length.

    seed=None: sorted, deterministic (evaluation). Otherwise rows are shuffled, sorted by
    length within windows of a few dozen batches, and the batches shuffled.
    """
    order = list(range(len(lengths)))
    if seed is None:
        order.sort(key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = random.Random(seed)
    rng.shuffle(order)
    window = batch_size * _BUCKET_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches
