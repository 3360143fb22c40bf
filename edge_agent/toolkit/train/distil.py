"""The model recipe as steps: dense teacher -> grouped init -> distilled grouped student.

Each step is measured on the validation (and, when given, held-out) rows so a missed target can
be located. Checkpoints are written as transformers folders (config.json, weights, tokenizer),
which is what the export step reads.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from edge_agent.toolkit.train.data import calibration_sample
from edge_agent.toolkit.train.fit import UNLABELLED, Encoded, FitOptions, fit, predict_logits
from edge_agent.toolkit.train.metrics import primary_metric

# Files that make a checkpoint folder usable by transformers' AutoTokenizer and our exporter.
TOKENIZER_FILES: Final = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


@dataclass(frozen=True)
class StepFigures:
    name: str
    validation: float
    held_out: float | None
    seconds: float


@dataclass
class RecipeResult:
    student: Any
    teacher: Any
    steps: list[StepFigures] = field(default_factory=list)

    def figures(self) -> dict[str, dict[str, float | None]]:
        return {
            s.name: {"validation": s.validation, "held_out": s.held_out, "seconds": s.seconds}
            for s in self.steps
        }


@dataclass(frozen=True)
class RecipeOptions:
    teacher: FitOptions
    student: FitOptions
    groups: int = 4
    distil: bool = True  # False: the grouped student trains on hard labels only
    # Grouped layers fitted to the teacher's outputs on this many training rows (grouping.py);
    # 0 keeps only the diagonal blocks of the dense weights.
    calibration_rows: int = 4096


def save_checkpoint(model: Any, folder: Path, tokenizer_dir: Path) -> None:
    """save_pretrained + the tokenizer files, so the folder is a complete HF checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    for name in TOKENIZER_FILES:
        source = tokenizer_dir / name
        if source.exists():
            shutil.copyfile(source, folder / name)


def evaluate(model: Any, data: Encoded, multi_label: bool) -> tuple[float, np.ndarray]:
    logits = predict_logits(model, data.ids)
    return primary_metric(logits, data.targets, multi_label), logits


def run_recipe(
    *,
    teacher: Any,
    train: Encoded,
    validation: Encoded,
    held_out: Encoded | None,
    options: RecipeOptions,
    multi_label: bool,
    log: Callable[[dict[str, Any]], None],
    teacher_trained: bool = False,
    make_student: Callable[[Any, int], Any] | None = None,
    transfer: Sequence[Sequence[int]] = (),
    distil_from: Any = None,
) -> RecipeResult:
    """Fine-tune `teacher` (unless already trained), then build and distil the grouped student.

    `make_student(teacher, groups)` defaults to the MiniLM -> SqueezeBERT init, with grouped
    layers fitted on `options.calibration_rows` random training rows. `transfer` (token ids of
    unlabelled texts, single-label distillation only) joins the student's training rows: it
    learns from them through the teacher's outputs alone. `distil_from` replaces the teacher
    as what the student distils from (e.g. a stronger model's logits with the teacher's hidden
    states, cached_teacher.py); the student is still initialised from the teacher.
    """
    if transfer and (multi_label or not options.distil):
        raise ValueError("transfer texts need single-label distillation")
    from edge_agent.toolkit.train.minilm import squeezebert_from_bert

    def fitted_student(dense: Any, groups: int) -> Any:
        calibration = calibration_sample(train.ids, options.calibration_rows) or None
        return squeezebert_from_bert(dense, groups=groups, calibration_ids=calibration)

    build = make_student or fitted_student
    steps: list[StepFigures] = []

    def measure(name: str, model: Any, seconds: float) -> None:
        val, _ = evaluate(model, validation, multi_label)
        test = evaluate(model, held_out, multi_label)[0] if held_out is not None else None
        figures = StepFigures(name, val, test, round(seconds, 1))
        steps.append(figures)
        log({"step_done": name, "validation": val, "held_out": test, "seconds": figures.seconds})

    started = time.monotonic()
    if not teacher_trained:
        log({"step_started": "dense_teacher", "epochs": options.teacher.epochs})
        fit(teacher, train, validation, options.teacher, multi_label=multi_label, log=log)
    measure("dense_teacher", teacher, time.monotonic() - started)

    started = time.monotonic()
    student = build(teacher, options.groups)
    measure("grouped_init", student, time.monotonic() - started)

    started = time.monotonic()
    student_options = options.student
    if not options.distil:
        student_options = replace(student_options, kd_alpha=0.0, kd_hidden_weight=0.0)
    student_rows = train
    step_name = "distilled_student" if options.distil else "grouped_finetuned"
    log({"step_started": step_name, "epochs": student_options.epochs})
    if transfer:
        student_rows = Encoded(
            ids=[*train.ids, *transfer], targets=[*train.targets, *[UNLABELLED] * len(transfer)]
        )
    fit(
        student,
        student_rows,
        validation,
        student_options,
        multi_label=multi_label,
        teacher=(teacher if distil_from is None else distil_from) if options.distil else None,
        log=log,
    )
    measure(step_name, student, time.monotonic() - started)
    return RecipeResult(student=student, teacher=teacher, steps=steps)


def label_targets(
    rows: Sequence[tuple[str, ...]], labels: Sequence[str], multi_label: bool
) -> list[Any]:
    """Label names -> class indices (single-label) or multi-hot lists."""
    index = {name: i for i, name in enumerate(labels)}
    if multi_label:
        out: list[Any] = []
        for row in rows:
            hot = [0.0] * len(labels)
            for name in row:
                hot[index[name]] = 1.0
            out.append(hot)
        return out
    return [index[row[0]] for row in rows]
