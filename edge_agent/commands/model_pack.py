"""`edge-agent model pack`: write a bundle (files, hashes, golden examples, model card)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.bundle.manifest import SCORE_KINDS


def _key_value(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}")
    return key, float(value)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-dir", type=Path, required=True, help="bundle goes in DIR/NAME/VERSION"
    )
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True, help="MAJOR.MINOR.PATCH")
    parser.add_argument("--task", choices=["single-label", "multi-label"], default="single-label")
    parser.add_argument("--labels", required=True, help="comma-separated, in logit order")
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--model", type=Path, required=True, help="INT8 .onnx")
    parser.add_argument("--fp32", type=Path, help="fp32 .onnx to ship alongside")
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json")
    parser.add_argument("--golden-texts", type=Path, help="candidates for golden examples")
    parser.add_argument("--golden-count", type=int, default=4)
    parser.add_argument(
        "--metric", type=_key_value, action="append", default=[], help="NAME=NUMBER"
    )
    parser.add_argument("--threshold", type=_key_value, action="append", default=[], help="LABEL=P")
    parser.add_argument("--reject", type=_key_value, help="LABEL=T: a score below T answers LABEL")
    parser.add_argument(
        "--reject-score",
        choices=SCORE_KINDS,
        default="probability",
        help="what --reject compares: the top probability, or the energy (log-sum-exp of the"
        " other labels' logits, edge_agent/engine/out_of_scope.py)",
    )
    parser.add_argument("--intended-use", default="")
    parser.add_argument("--training-data", default="")
    parser.add_argument("--limitations", default="")
    parser.add_argument("--replace", action="store_true", help="overwrite an existing version")


def main(args: argparse.Namespace) -> int:
    from edge_agent.bundle.layout import BundleError
    from edge_agent.bundle.manifest import OutOfScopeRule
    from edge_agent.toolkit.export.pack import pack_bundle
    from edge_agent.toolkit.export.texts import read_texts

    golden: list[str] = []
    if args.golden_texts is not None:
        golden = read_texts(args.golden_texts, 200)
    reject = None
    if args.reject is not None:
        label, threshold = args.reject
        reject = OutOfScopeRule(label, threshold, score=args.reject_score)
    try:
        bundle = pack_bundle(
            args.models_dir,
            name=args.name,
            version=args.version,
            task=args.task,
            labels=[label.strip() for label in args.labels.split(",")],
            max_seq_len=args.max_seq_len,
            model=args.model,
            fp32_model=args.fp32,
            tokenizer=args.tokenizer,
            golden_texts=golden,
            golden_count=args.golden_count,
            metrics=dict(args.metric),
            thresholds=dict(args.threshold),
            reject=reject,
            card={
                "intended_use": args.intended_use,
                "training_data": args.training_data,
                "limitations": args.limitations,
            },
            replace=args.replace,
        )
    except (BundleError, FileExistsError, OSError) as error:
        print(f"edge-agent: cannot pack: {error}", file=sys.stderr)
        return 3
    print(f"wrote {bundle}")
    return 0
