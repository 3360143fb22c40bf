"""A teacher replaced by its saved logits on the training rows.

A base-sized teacher (MPNet, 12 layers, hidden 768) costs about a third of its own training
step in every batch it teaches: on two CPU cores that alone would push the student recipe past
an hour. Its logits on the training rows are computed once, saved beside its checkpoint with a
fingerprint of the rows they belong to, and `CachedTeacher` hands them to `fit()` as if the
model had run. It teaches logits only (no hidden states).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from edge_agent.toolkit.train.fit import predict_logits

LOGITS_FILE = "train_logits.npy"
FINGERPRINT_FILE = "train_logits.json"


def rows_fingerprint(rows: Sequence[Sequence[int]]) -> str:
    """sha256 over the rows' token ids, in order: logits saved for other rows never load."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(np.asarray(row, dtype=np.int32).tobytes())
        digest.update(b"\xff\xff\xff\xff")  # a row boundary no id can fake
    return digest.hexdigest()


def cached_logits(
    load_model: Callable[[], Any], rows: Sequence[Sequence[int]], folder: Path
) -> np.ndarray:
    """The model's logits on `rows`: read from `folder` when saved for these rows, else
    computed (no gradients, batched by length) and saved there. The model is loaded only
    when they have to be computed."""
    fingerprint = rows_fingerprint(rows)
    logits_path, meta_path = folder / LOGITS_FILE, folder / FINGERPRINT_FILE
    if logits_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("rows_sha256") == fingerprint:
            saved: np.ndarray = np.load(logits_path)
            return saved
    logits = predict_logits(load_model(), rows)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(logits_path, logits)
    meta_path.write_text(
        json.dumps({"rows": len(rows), "rows_sha256": fingerprint}) + "\n", encoding="utf-8"
    )
    return logits


def cached_teacher(rows: Sequence[Sequence[int]], logits: np.ndarray) -> Any:
    """A module `fit()` can use as its teacher: it looks each batch row up by its token ids."""
    import torch

    by_ids = {tuple(row): logits[i] for i, row in enumerate(rows)}

    class CachedTeacher(torch.nn.Module):
        def forward(
            self, input_ids: Any, attention_mask: Any, output_hidden_states: bool = False
        ) -> Any:
            if output_hidden_states:
                raise ValueError("a cached teacher has logits only (kd_hidden_weight must be 0)")
            lengths = attention_mask.sum(dim=1).tolist()
            found = [
                by_ids[tuple(row[:n])] for row, n in zip(input_ids.tolist(), lengths, strict=True)
            ]
            return SimpleNamespace(logits=torch.as_tensor(np.stack(found), device=input_ids.device))

    return CachedTeacher()


def logits_and_hidden(logits_teacher: Any, hidden_teacher: Any, *, share: float = 1.0) -> Any:
    """A teacher whose logits come from one model and hidden states from another: the student
    learns the stronger model's answers while every layer stays close to the same-shaped
    teacher it was initialised from (whose hidden states match its own shape). With `share`
    < 1 the answers are a weighted mean of both models' logits (`share` of the first's): on
    intent MPNet knows the in-scope queries best and the MiniLM teacher the out-of-scope ones,
    and their mean is better at both than either (docs/models.md)."""
    import torch

    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within [0, 1], not {share}")

    class LogitsAndHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.logits_teacher = logits_teacher
            self.hidden_teacher = hidden_teacher

        def forward(
            self, input_ids: Any, attention_mask: Any, output_hidden_states: bool = False
        ) -> Any:
            logits = self.logits_teacher(input_ids=input_ids, attention_mask=attention_mask).logits
            hidden = None
            if output_hidden_states or share < 1.0:
                out = self.hidden_teacher(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    output_hidden_states=output_hidden_states,
                )
                hidden = out.hidden_states if output_hidden_states else None
                if share < 1.0:
                    logits = share * logits.to(out.logits.dtype) + (1.0 - share) * out.logits
            return SimpleNamespace(logits=logits, hidden_states=hidden)

    return LogitsAndHidden()
