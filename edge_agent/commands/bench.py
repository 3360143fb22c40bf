"""`edge-agent bench`: latency and throughput of a bundle on this device.

What a user runs on a new Raspberry Pi: a table over batch sizes and sequence lengths,
timed through the same session the daemon would use (tokenization excluded: inputs are
real token ids of the requested length). Device side: no torch, no tqdm.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers: {text!r}")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a version folder, or a model folder")
    parser.add_argument("--batch-sizes", type=_int_list, default=[1, 4, 16])
    parser.add_argument("--seq-lens", type=_int_list, default=[16, 32, 64, 128])
    parser.add_argument("--precision", choices=["auto", "int8", "fp32"], default="auto")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: physical cores)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per cell")


class Progress:
    """One self-overwriting stderr line: `[#####.....] 12/40 b4 s64`."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream

    def step(self, label: str) -> None:
        self.done += 1
        width = 30
        filled = width * self.done // self.total
        bar = "#" * filled + "." * (width - filled)
        end = "\n" if self.done == self.total else ""
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label:<12}{end}")
        self.stream.flush()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from edge_agent.bundle.layout import MANIFEST_FILE, BundleError
    from edge_agent.bundle.versions import resolve_bundle
    from edge_agent.engine.classifier import load_classifier

    bundle = args.bundle
    try:
        if not (bundle / MANIFEST_FILE).is_file():
            bundle = resolve_bundle(bundle.parent, bundle.name)
        classifier = load_classifier(bundle, precision=args.precision, threads=args.threads)
    except BundleError as error:
        print(f"edge-agent: {error}", file=sys.stderr)
        return 3
    manifest = classifier.manifest
    seq_lens = [s for s in args.seq_lens if s <= manifest.max_seq_len]
    if not seq_lens:
        print(
            f"edge-agent: every --seq-lens exceeds max_seq_len {manifest.max_seq_len}",
            file=sys.stderr,
        )
        return 2
    ids = classifier.tokenizer.encode(" ".join(["the weather is nice today"] * 200)).ids
    options = classifier.session.get_session_options()
    print(
        f"{manifest.name} {manifest.version}: {classifier.precision}, "
        f"{options.intra_op_num_threads} threads, median of {args.runs} runs"
    )
    print(f"{'batch':>5} {'tokens':>6} {'p50 ms':>9} {'p90 ms':>9} {'texts/s':>9}")
    progress = Progress(len(args.batch_sizes) * len(seq_lens))
    rows = []
    for batch in args.batch_sizes:
        for seq in seq_lens:
            row = ids[: seq - 1] + ids[-1:]  # keep the closing [SEP]
            feeds = {
                "input_ids": np.array([row] * batch, dtype=np.int64),
                "attention_mask": np.ones((batch, seq), dtype=np.int64),
            }
            classifier.session.run(["logits"], feeds)
            samples = []
            for _ in range(args.runs):
                start = time.perf_counter()
                classifier.session.run(["logits"], feeds)
                samples.append(time.perf_counter() - start)
            rows.append((batch, seq, percentile(samples, 0.5), percentile(samples, 0.9)))
            progress.step(f"b{batch} s{seq}")
    for batch, seq, p50, p90 in rows:
        print(f"{batch:>5} {seq:>6} {p50 * 1e3:>9.2f} {p90 * 1e3:>9.2f} {batch / p50:>9.1f}")
    return 0
