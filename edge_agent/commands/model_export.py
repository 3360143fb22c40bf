"""`edge-agent model export`: Hugging Face SqueezeBERT checkpoint -> fast fp32 ONNX.

The export is checked against transformers' own SqueezeBertForSequenceClassification on
real sentences; a difference above 1e-4 in any logit fails the command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="folder with config.json, weights, tokenizer")
    parser.add_argument("-o", "--out", type=Path, required=True, help="fp32 .onnx to write")
    parser.add_argument("--texts", type=Path, help="check sentences (.tsv/.txt; default SST-2)")
    parser.add_argument("--check-count", type=int, default=64, help="sentences to compare")
    parser.add_argument("--max-seq-len", type=int, default=128)


def main(args: argparse.Namespace) -> int:
    from edge_agent.toolkit.export.texts import default_texts_path, read_texts
    from edge_agent.toolkit.export.to_onnx import (
        EXPORT_TOLERANCE,
        export_onnx,
        load_checkpoint_tokenizer,
        load_hf_classifier,
        max_logit_difference,
    )

    try:
        model = load_hf_classifier(args.checkpoint)
        tokenizer = load_checkpoint_tokenizer(args.checkpoint)
    except (OSError, ValueError) as error:
        print(f"edge-agent: cannot load checkpoint {args.checkpoint}: {error}", file=sys.stderr)
        return 3
    texts_path = args.texts or default_texts_path()
    try:
        texts = read_texts(texts_path, args.check_count)
    except OSError as error:
        print(f"edge-agent: cannot read check texts {texts_path}: {error}", file=sys.stderr)
        return 3
    export_onnx(model, args.out)
    max_seq_len = min(args.max_seq_len, model.config.max_position_embeddings)
    diff = max_logit_difference(model, args.out, tokenizer, texts, max_seq_len=max_seq_len)
    verdict = "ok" if diff <= EXPORT_TOLERANCE else "FAILED"
    print(f"wrote {args.out}")
    print(
        f"max |logit difference| vs transformers on {len(texts)} sentences: {diff:.2e} "
        f"(tolerance {EXPORT_TOLERANCE:.0e}) {verdict}"
    )
    return 0 if diff <= EXPORT_TOLERANCE else 1
