"""`edge-agent model quantize`: fp32 ONNX -> dynamic INT8 ONNX, with INT8/fp32 agreement."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.toolkit.export.quantize import WEIGHT_FORMATS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fp32", type=Path, help="fp32 .onnx from `model export`")
    parser.add_argument("-o", "--out", type=Path, required=True, help="INT8 .onnx to write")
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json")
    parser.add_argument("--texts", type=Path, help="sentences (.tsv/.txt; default SST-2)")
    parser.add_argument("--check-count", type=int, default=500, help="sentences to compare")
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument(
        "--calibration",
        type=Path,
        help="training sentences (.tsv/.txt): static activation scales (batch-independent"
        " scores) and smoothing of MatMul inputs that have outlier channels",
    )
    parser.add_argument("--calibration-count", type=int, default=512)
    parser.add_argument(
        "--weights",
        choices=WEIGHT_FORMATS,
        default="int7",
        help="int7: the same integers on every CPU (default); int8: one bit finer on ARM and"
        " VNNI, saturates on x86 without VNNI; uint8: int8 without saturation, slower there",
    )


def main(args: argparse.Namespace) -> int:
    from tokenizers import Tokenizer

    from edge_agent.toolkit.export.quantize import (
        argmax_agreement,
        calibration_feeds,
        quantize_int8,
    )
    from edge_agent.toolkit.export.texts import default_texts_path, read_texts

    texts_path = args.texts or default_texts_path()
    try:
        tokenizer = Tokenizer.from_file(str(args.tokenizer))
        texts = read_texts(texts_path, args.check_count)
        calibration_texts = (
            read_texts(args.calibration, args.calibration_count) if args.calibration else []
        )
    except Exception as error:  # tokenizers raises plain Exceptions from Rust
        print(f"edge-agent: cannot read inputs: {error}", file=sys.stderr)
        return 3
    if not calibration_texts:
        # Smoothing needs activation ranges; without it GELU outputs' long tails share one
        # INT8 scale (sentiment 1.1.2's graph: 97.7% agreement here against 99.7% with
        # SST-2 training sentences, 300 texts, docs/benchmarks.md INT8 fidelity).
        # Static activation scales need them too: without, activations are quantized per
        # run and a text's scores depend on its batch-mates.
        print(
            "edge-agent: no --calibration texts, so no MatMul input is smoothed, INT8"
            " agrees less with fp32, and activations are scaled per batch (a text's scores"
            " then depend on its batch-mates); pass a few hundred training sentences",
            file=sys.stderr,
        )
    calibration = calibration_feeds(tokenizer, calibration_texts, args.max_seq_len)
    quantize_int8(args.fp32, args.out, calibration=calibration, weights=args.weights)
    agreement = argmax_agreement(
        args.fp32, args.out, tokenizer, texts, max_seq_len=args.max_seq_len
    )
    print(f"wrote {args.out}")
    print(f"INT8 argmax agrees with fp32 on {agreement:.1%} of {len(texts)} sentences")
    return 0
