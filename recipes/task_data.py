"""What every recipe task is made of: where the datasets are, the encoded splits, the task."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.toolkit.train.data import LabelledTexts, encode_texts
from edge_agent.toolkit.train.distil import RecipeOptions, label_targets
from edge_agent.toolkit.train.fit import Encoded


def datasets_dir(option: str | None = None) -> Path:
    """Where the recipes read the public datasets: the option, else EDGE_AGENT_DATASETS, else
    ../shared/datasets beside the repository."""
    if option:
        return Path(option)
    env = os.environ.get("EDGE_AGENT_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"


@dataclass(frozen=True)
class TaskData:
    labels: tuple[str, ...]
    train: Encoded
    validation: Encoded
    held_out: Encoded
    texts: dict[str, LabelledTexts]  # "train" / "validation" / "held_out" (and task extras)
    max_seq_len: int
    # unlabelled texts the student also learns from, through the teacher only (token ids)
    transfer: tuple[tuple[int, ...], ...] = ()

    def sizes(self) -> dict[str, int]:
        sizes = {name: len(rows) for name, rows in self.texts.items()}
        return sizes | ({"transfer": len(self.transfer)} if self.transfer else {})


@dataclass(frozen=True)
class MpnetSchedule:
    """all-mpnet-base-v2 fine-tuned on the task first, as a stronger teacher (docs/models.md).
    Its logits on the training rows are cached in the work folder."""

    epochs: float
    learning_rate: float
    # whether the MiniLM teacher also learns from it (its hidden states guide the student's
    # layers either way); the student always learns MPNet's answers
    teaches_minilm: bool


@dataclass(frozen=True)
class Task:
    load: Callable[[Path, Any, int], TaskData]
    options: RecipeOptions
    extra_figures: Callable[[Any, TaskData], dict[str, Any]]
    version: str
    card: dict[str, str]
    mpnet: MpnetSchedule | None = None  # None: the MiniLM teacher alone
    # the model shipped is the fine-tuned MPNet itself (a dense 12-layer, 768-wide SqueezeBERT
    # with MPNet's relative position bias), not a student distilled from it
    mpnet_is_the_model: bool = False
    # with MPNet: whose answers the student learns ("mpnet", "both": the mean with the MiniLM
    # teacher's, "teacher"); --student-logits overrides it
    student_logits: str = "mpnet"


def encode_part(
    part: LabelledTexts, labels: tuple[str, ...], tokenizer: Any, max_len: int
) -> Encoded:
    return Encoded(
        ids=encode_texts(tokenizer, part.texts, max_len),
        targets=label_targets(part.labels, labels, multi_label=False),
    )


def first_occurrences(texts: Sequence[str], excluded: Iterable[str] = ()) -> list[int]:
    """Indices of the first row of each distinct text, leaving out texts in `excluded`."""
    seen = set(excluded)
    keep = []
    for i, text in enumerate(texts):
        if text not in seen:
            seen.add(text)
            keep.append(i)
    return keep
