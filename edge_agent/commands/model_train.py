"""`edge-agent model train`: labelled CSV/TSV/JSONL -> an INT8 SqueezeBERT bundle with a report.

The flags become a `TrainJob`; the pipeline is edge_agent/toolkit/train/pipeline.py. Heavy
imports stay in main().
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edge_agent.cli import STARTUP_FAILURE


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
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --work: reuse the trained checkpoint there instead of training again",
    )
    parser.add_argument("--base", type=Path, help="HF SqueezeBERT checkpoint folder to fine-tune")
    parser.add_argument("--groups", type=int, default=4, help="student groups (1 = dense)")
    parser.add_argument("--no-distil", action="store_true", help="student on hard labels only")
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument(
        "--student-epochs",
        type=float,
        help="the grouped student's epochs (default: twice --epochs; it starts further from"
        " its goal than the teacher)",
    )
    parser.add_argument(
        "--student-learning-rate",
        type=float,
        help="the grouped student's learning rate (default: twice --learning-rate)",
    )
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
    from edge_agent.toolkit.train.pipeline import AfterTrainingError, TrainJob, train

    options = vars(args)
    job = TrainJob(
        **{name: options[name] for name in TrainJob.__dataclass_fields__ if name in options},
        distil=not args.no_distil,
        progress=not args.no_progress,
    )
    if args.resume and args.work is None:
        print("model train: --resume needs --work (the folder of the earlier run)", file=sys.stderr)
        return STARTUP_FAILURE
    # Without --work the run's folder is temporary, but it outlives a failure after training,
    # so that the trained checkpoint is never lost to a late error.
    work = args.work or Path(tempfile.mkdtemp(prefix="edge-agent-train-"))
    try:
        train(job, work)
    except (DataError, FileExistsError) as error:
        print(f"model train: {error}", file=sys.stderr)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        return STARTUP_FAILURE
    except AfterTrainingError as error:
        print(f"model train: {error}", file=sys.stderr)
        print(
            f"model train: fix the cause, then: edge-agent model train ... --work {work} --resume",
            file=sys.stderr,
        )
        return 1
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0
