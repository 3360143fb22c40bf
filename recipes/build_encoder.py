"""Rebuild the shipped sentence encoder: `python recipes/build_encoder.py --work DIR`.

Distils all-MiniLM-L6-v2's sentence embeddings into the grouped SqueezeBERT (toolkit/train/
embedding.py) on the unlabelled training texts of ../shared/datasets (CLINC150 train and
oos_train, SST-2 train, TweetEval sentiment and offensive train). Held out, never trained on:
CLINC150 val and oos_val, TweetEval sentiment and offensive val; the cosine with the teacher is
measured there. Interrupted runs resume from --work. The student checkpoint lands in
DIR/student; `--stage bundle` exports, quantizes and packs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recipes.task_data import datasets_dir  # noqa: E402

SEED: Final = 20261204
# Training length until round 20: the distillation texts are mostly chat lines and queries.
# Longer texts were cut there, so positions 64-127, which the bundle serves, never trained.
MAX_SEQ_LEN: Final = 64
BUNDLE_MAX_SEQ_LEN: Final = 128  # what the bundle takes (its position table is cut there)
CALIBRATION_ROWS: Final = 4096
VERSION: Final = "1.4.12"
# Golden texts: what the engine must reproduce on load (any texts do; these are the README's).
GOLDEN: Final = (
    "smoke detected in the kitchen",
    "battery low on the hallway sensor",
    "good morning everyone",
    "disk usage above 90 percent on node 4",
)


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def distillation_texts(datasets: Path) -> list[str]:
    """Unlabelled training-side texts, de-duplicated; SST-2 phrases under 4 words are skipped
    (tens of thousands of fragments like "the" or "a good" teach little)."""
    clinc = json.loads((datasets / "clinc150" / "data_train_val.json").read_text())
    texts = [row[0] for part in ("train", "oos_train") for row in clinc[part]]
    sst2 = (datasets / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts += [line.split("\t")[0] for line in sst2 if len(line.split("\t")[0].split()) >= 4]
    for folder in ("tweeteval-sentiment", "tweeteval-offensive"):
        texts += _lines(datasets / folder / "train_text.txt")
    return list(dict.fromkeys(t for t in texts if t.strip()))


def held_out_texts(datasets: Path) -> list[str]:
    clinc = json.loads((datasets / "clinc150" / "data_train_val.json").read_text())
    texts = [row[0] for part in ("val", "oos_val") for row in clinc[part]]
    for folder in ("tweeteval-sentiment", "tweeteval-offensive"):
        texts += _lines(datasets / folder / "val_text.txt")
    return list(dict.fromkeys(texts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--datasets")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument(
        "--hidden-weight", type=float, default=1.0, help="per-layer hidden-state loss weight"
    )
    parser.add_argument(
        "--init", type=Path, help="start from this student checkpoint (a second round)"
    )
    parser.add_argument(
        "--init-bundle",
        type=Path,
        help="start from an encoder bundle's INT8 weights (when its checkpoint is gone)",
    )
    parser.add_argument(
        "--round",
        type=int,
        help="which distillation round this is: its data order (default 0 from scratch, 1 "
        "from --init or --init-bundle; give 2, 3... for later rounds so each sees a new order)",
    )
    parser.add_argument(
        "--recombined",
        type=int,
        default=0,
        help="add this many recombinations of CLINC150 training queries (query-like texts)",
    )
    parser.add_argument(
        "--fresh-recombined",
        type=int,
        default=0,
        help="add this many recombinations of all the training texts, drawn anew for each "
        "--round, so that every round sees texts it has not seen before",
    )
    parser.add_argument(
        "--query-pooling",
        action="store_true",
        help="switch the student to query pooling: its last layer runs for the mean row alone, "
        "as fast as a classifier's (toolkit/train/query_pooling.py); a student that has it "
        "keeps it without this flag",
    )
    parser.add_argument(
        "--dense-last-feed-forward",
        action="store_true",
        help="make the last layer's feed-forward dense (it runs for one row under query "
        "pooling: toolkit/train/dense_last_layer.py), starting from the grouped weights",
    )
    parser.add_argument(
        "--last-feed-forward-lr",
        type=float,
        help="learning rate of the last feed-forward alone (default: --learning-rate)",
    )
    parser.add_argument(
        "--train-seq-len",
        type=int,
        default=MAX_SEQ_LEN,
        help=f"cut training and held-out texts at this many tokens (at most {BUNDLE_MAX_SEQ_LEN}, "
        "the bundle's length; rounds up to 20 trained at the default)",
    )
    parser.add_argument(
        "--stage",
        choices=("all", "bundle"),
        default="all",
        help="bundle: only export, quantize, measure and pack the saved student",
    )
    args = parser.parse_args(argv)
    if not 8 <= args.train_seq_len <= BUNDLE_MAX_SEQ_LEN:
        parser.error(f"--train-seq-len must be between 8 and {BUNDLE_MAX_SEQ_LEN}")

    import torch
    from tokenizers import Tokenizer

    from edge_agent.toolkit.train.data import calibration_sample, encode_texts
    from edge_agent.toolkit.train.distil import save_checkpoint
    from edge_agent.toolkit.train.embedding import (
        EncoderOptions,
        cosine_report,
        distil_encoder,
        grouped_student,
        load_teacher,
        student_embeddings,
        teacher_embeddings,
    )
    from edge_agent.toolkit.train.fit import jsonl_logger
    from edge_agent.toolkit.train.minilm import STUDENT_GROUPS, minilm_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    log = jsonl_logger(work / "log.jsonl")

    datasets = datasets_dir(args.datasets)
    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    train_texts = distillation_texts(datasets)
    # Each round its own data order, and its own fresh recombinations: from the same seed a
    # round would see the texts in the order the one before it saw them.
    data_round = args.round if args.round is not None else int(bool(args.init or args.init_bundle))
    if args.fresh_recombined:
        # After a dozen epochs over the same texts, round 10's student copied the teacher
        # better on texts it had trained on than on held-out ones (cosine 0.964 / 0.946 on
        # CLINC150 train / val queries, 0.936 / 0.916 on TweetEval train / val): new texts
        # each round, made from training texts only, are what it has not learned by heart.
        from edge_agent.toolkit.train.augment import recombined_texts

        fresh = recombined_texts(train_texts, args.fresh_recombined, seed=SEED + data_round)
        train_texts = list(dict.fromkeys(train_texts + fresh))
    if args.recombined:
        # More text where the encoder is used most (short requests), made from training
        # queries only, so nothing from the held-out side enters (toolkit/train/augment.py).
        from edge_agent.toolkit.train.augment import recombined_texts

        queries = [row[0] for row in json.loads(
            (datasets / "clinc150" / "data_train_val.json").read_text()
        )["train"]]  # fmt: skip
        extra = recombined_texts(queries, args.recombined, seed=SEED)
        train_texts = list(dict.fromkeys(train_texts + extra))
    held = held_out_texts(datasets)
    overlap = set(train_texts) & set(held)
    train_texts = [t for t in train_texts if t not in overlap]
    train_ids = encode_texts(tokenizer, train_texts, args.train_seq_len)
    held_ids = encode_texts(tokenizer, held, args.train_seq_len)
    log(
        {
            "train_texts": len(train_texts),
            "held_out_texts": len(held),
            "overlap_removed": len(overlap),
        }
    )

    teacher = load_teacher()
    if args.stage == "all":
        started = time.monotonic()
        if args.init:  # a second round of distillation from an earlier run's student
            from edge_agent.toolkit.train.relative_bias import load_classifier

            student = load_classifier(args.init).eval()
        elif args.init_bundle:  # the same from a shipped bundle, read back from its graph
            from recipes.repack_bundle import read_encoder_bundle

            student = read_encoder_bundle(args.init_bundle, tokenizer.get_vocab())
        else:
            student = grouped_student(
                teacher, calibration_sample(train_ids, CALIBRATION_ROWS, seed=SEED), STUDENT_GROUPS
            )
        if args.query_pooling:
            from edge_agent.toolkit.train.query_pooling import use_query_pooling

            use_query_pooling(student)
        if args.dense_last_feed_forward:
            from edge_agent.toolkit.train.dense_last_layer import densify_last_feed_forward

            densify_last_feed_forward(student)
        target = teacher_embeddings(teacher, held_ids)
        log(
            {
                "step_done": "start" if args.init or args.init_bundle else "grouped_init",
                "cosine": cosine_report(student_embeddings(student, held_ids), target),
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        started = time.monotonic()
        options = EncoderOptions(
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            hidden_weight=args.hidden_weight,
            last_feed_forward_learning_rate=args.last_feed_forward_lr,
            seed=SEED + data_round,
        )
        distil_encoder(student, teacher, train_ids, options=options, work=work, log=log)
        figures = cosine_report(student_embeddings(student, held_ids), target)
        log(
            {
                "step_done": "distilled_student",
                "cosine": figures,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        save_checkpoint(student, work / "student", minilm_dir())
        (work / "figures.json").write_text(json.dumps({"held_out_cosine_fp32": figures}, indent=2))
    return _bundle(args, work, teacher=teacher, train_texts=train_texts, held=held, log=log)


def _bundle(
    args: argparse.Namespace,
    work: Path,
    *,
    teacher: Any,
    train_texts: list[str],
    held: list[str],
    log: Callable[[dict[str, Any]], None],
) -> int:
    """Export the saved student as an encoder graph, quantize it, measure both graphs against
    the teacher on the held-out texts and pack the INT8 one as models/encoder/<VERSION>."""
    from tokenizers import Tokenizer

    from edge_agent.toolkit.export.pack import pack_bundle
    from edge_agent.toolkit.train.bundle import (
        QUANTIZE_CALIBRATION_ROWS,
        bundle_size,
        deploy_checkpoint,
        export_graphs,
        graph_logits,
    )
    from edge_agent.toolkit.train.data import calibration_sample, encode_texts
    from edge_agent.toolkit.train.embedding import cosine_report, teacher_embeddings
    from edge_agent.toolkit.train.minilm import minilm_dir

    checkpoint = deploy_checkpoint(work / "student", work, BUNDLE_MAX_SEQ_LEN)
    fp32, int8 = export_graphs(
        checkpoint,
        work / "graphs",
        keep_head_fp32=False,
        calibration_texts=calibration_sample(train_texts, QUANTIZE_CALIBRATION_ROWS, seed=SEED),
        max_seq_len=BUNDLE_MAX_SEQ_LEN,
        embedding=True,
    )
    minilm = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    target = teacher_embeddings(teacher, encode_texts(minilm, held, BUNDLE_MAX_SEQ_LEN))
    graphs = {
        name: graph_logits(
            path, checkpoint.tokenizer, held, max_seq_len=BUNDLE_MAX_SEQ_LEN,
            threads=args.threads, output="embeddings",
        )
        for name, path in (("fp32", fp32), ("int8", int8))
    }  # fmt: skip
    figures = {name: cosine_report(vectors, target) for name, vectors in graphs.items()}
    figures["int8_vs_fp32"] = cosine_report(graphs["int8"], graphs["fp32"])
    log({"held_out_cosine_with_teacher": figures, "held_out_texts": len(held)})
    metrics = {
        "held_out_cosine_median": figures["int8"]["median"],
        "held_out_cosine_p5": figures["int8"]["p5"],
        "held_out_cosine_median_fp32": figures["fp32"]["median"],
        "int8_fp32_cosine_median": figures["int8_vs_fp32"]["median"],
        "held_out_texts": float(len(held)),
    }
    bundle = pack_bundle(
        REPO / "models",
        name="encoder",
        version=VERSION,
        task="embedding",
        labels=[],
        max_seq_len=BUNDLE_MAX_SEQ_LEN,
        model=int8,
        tokenizer=checkpoint.tokenizer_file,
        golden_texts=GOLDEN,
        golden_count=len(GOLDEN),
        metrics=metrics,
        card={
            "intended_use": "sentence embeddings for labels defined by examples (route "
            "`examples:`); short English chat, log, sensor and query lines",
            "training_data": "distilled from all-MiniLM-L6-v2 (Apache-2.0) on the unlabelled "
            "training texts of CLINC150, SST-2 and TweetEval (recipes/build_encoder.py); "
            "figures from CLINC150 val/oos_val and TweetEval val, never trained on",
            "limitations": "English only; an approximation of its teacher (cosine figures in "
            "metrics); texts past 128 tokens are cut",
        },
        replace=True,
    )
    log({"bundle": str(bundle), "bytes": bundle_size(bundle)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
