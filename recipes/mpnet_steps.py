"""The recipe's all-mpnet-base-v2 steps: fine-tune it once per work folder, then either let it
teach (its logits cached on the training rows) or ship it as the model itself (converted to a
dense SqueezeBERT with its relative position bias, toolkit/train/relative_bias.py)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from recipes.task_data import MpnetSchedule, Task, TaskData

# --teacher mpnet for a task that names no schedule of its own (sentiment's measured run)
MPNET_DEFAULT: Final = MpnetSchedule(epochs=1.0, learning_rate=3e-5, teaches_minilm=True)
# validation texts on which the converted model is compared with MPNet itself
CONVERSION_CHECK_TEXTS: Final = 64

Log = Callable[[dict[str, Any]], None]


def mpnet_schedule(args: argparse.Namespace, task: Task) -> MpnetSchedule | None:
    """The task's MPNet schedule with the command line's overrides; None: no MPNet."""
    teacher = args.teacher or ("mpnet" if task.mpnet else "minilm")
    if teacher == "minilm":
        return None
    base = task.mpnet or MPNET_DEFAULT
    return MpnetSchedule(
        epochs=base.epochs if args.mpnet_epochs is None else args.mpnet_epochs,
        learning_rate=(
            base.learning_rate if args.mpnet_learning_rate is None else args.mpnet_learning_rate
        ),
        teaches_minilm=(
            base.teaches_minilm if args.mpnet_teaches_minilm is None else args.mpnet_teaches_minilm
        ),
    )


def mpnet_checkpoint(
    args: argparse.Namespace, schedule: MpnetSchedule, data: TaskData, work: Path, log: Log
) -> Callable[[], Any]:
    """all-MPNet fine-tuned on the task, saved in work/mpnet with its figures
    (mpnet/figures.json); each is made once per work folder and reused by later runs.
    Returns a loader (the checkpoint is read only when asked for)."""
    from edge_agent.toolkit.train.distil import evaluate
    from edge_agent.toolkit.train.fit import FitOptions, fit
    from edge_agent.toolkit.train.mpnet import load_mpnet_teacher

    saved = work / "mpnet"
    figures_file = saved / "figures.json"
    loaded: list[Any] = []

    def model() -> Any:
        if not loaded:
            loaded.append(load_mpnet_teacher(len(data.labels), saved))
        return loaded[0]

    if not (saved / "model.safetensors").exists():
        fresh = load_mpnet_teacher(len(data.labels))
        # The usual fine-tuning settings for a base-sized encoder; size the schedule to the
        # time budget so that the learning rate decays to zero within it.
        options = FitOptions(
            epochs=schedule.epochs,
            learning_rate=schedule.learning_rate,
            batch_size=32,
            # each evaluation is a full MPNet pass over the tuning split: about six in a run
            evals_per_epoch=6 if schedule.epochs < 1 else 2,
            patience=3,
            max_seconds=args.mpnet_max_minutes * 60,
        )
        t0 = time.monotonic()
        fit(fresh, data.train, data.validation, options, multi_label=False, log=log)
        fresh.save_pretrained(str(saved))
        loaded.append(fresh)
        log({"mpnet_seconds": round(time.monotonic() - t0, 1)})
    if not figures_file.exists():
        figures = {
            "validation": evaluate(model(), data.validation, False)[0],
            "held_out": evaluate(model(), data.held_out, False)[0],
        }
        log({"step_done": "mpnet_teacher", **figures})
        figures_file.write_text(json.dumps(figures) + "\n", encoding="utf-8")
    return model


def mpnet_teacher(
    args: argparse.Namespace, schedule: MpnetSchedule, data: TaskData, work: Path, log: Log
) -> Any:
    """The fine-tuned MPNet as a teacher: its logits, cached on every row a student trains on."""
    from edge_agent.toolkit.train.cached_teacher import cached_logits, cached_teacher

    model = mpnet_checkpoint(args, schedule, data, work, log)
    rows = [*data.train.ids, *data.transfer]  # every row the students train on
    t0 = time.monotonic()
    logits = cached_logits(model, rows, work / "mpnet")
    log({"mpnet_logits_seconds": round(time.monotonic() - t0, 1), "rows": len(logits)})
    return cached_teacher(rows, logits)


def mpnet_student(
    args: argparse.Namespace,
    schedule: MpnetSchedule,
    data: TaskData,
    work: Path,
    log: Log,
    *,
    tokenizer_dir: Path,
) -> dict[str, Any]:
    """The fine-tuned MPNet itself as the model to ship: converted to a dense SqueezeBERT with
    its relative position bias and saved as work/student, where the bundle step reads it.
    Returns the step's figures, the conversion's largest logit difference among them."""
    import numpy as np

    from edge_agent.toolkit.train.distil import save_checkpoint
    from edge_agent.toolkit.train.fit import predict_logits
    from edge_agent.toolkit.train.mpnet import squeezebert_from_mpnet

    mpnet = mpnet_checkpoint(args, schedule, data, work, log)()
    t0 = time.monotonic()
    student = squeezebert_from_mpnet(mpnet)
    rows = data.validation.ids[:CONVERSION_CHECK_TEXTS]
    difference = float(np.abs(predict_logits(mpnet, rows) - predict_logits(student, rows)).max())
    save_checkpoint(student, work / "student", tokenizer_dir)
    figures = {
        "mpnet_teacher": json.loads((work / "mpnet" / "figures.json").read_text(encoding="utf-8")),
        "conversion_max_logit_difference": difference,
        "conversion_seconds": round(time.monotonic() - t0, 1),
    }
    log({"step_done": "mpnet_student", **figures})
    return figures
