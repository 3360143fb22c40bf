"""`edge-agent labels check FILE [--model NAME | --bundle DIR]`: how separable an examples
file's labels are, through the embedding model that will serve them.

Per label: its examples, the share of them that the others put back under it when each is
left out (leave-one-out: nearest centroid, words shared counted as the rule counts them),
the most similar other label and where the left-out examples went instead. Then the
`other` threshold the agent will use. Exit status 3 for a file or model that cannot be used,
0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.cli import STARTUP_FAILURE
from edge_agent.telemetry import logs as logging_setup


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="examples file (.yaml, .yml or .csv)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default="encoder", help="embedding model in --models-dir")
    source.add_argument("--bundle", type=Path, help="an embedding bundle folder")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="bundles folder")


def main(args: argparse.Namespace) -> int:
    from edge_agent.bundle.layout import BundleError
    from edge_agent.bundle.versions import resolve_bundle
    from edge_agent.engine.encoder import load_encoder
    from edge_agent.labels.examples import LabelsError
    from edge_agent.labels.labeller import build_labeller, embed_examples
    from edge_agent.labels.report import separability

    logging_setup.configure("auto", "warning", stream=sys.stderr)
    try:
        encoder = load_encoder(args.bundle or resolve_bundle(args.models_dir, args.model))
        labeller = build_labeller("check", encoder, args.file)
    except (BundleError, LabelsError) as error:
        print(f"edge-agent: {error}", file=sys.stderr)
        return STARTUP_FAILURE
    embedded, targets, _ = embed_examples(encoder, labeller.examples)
    reports = separability(labeller.examples, embedded, targets)
    width = max(len(r.label) for r in reports) + 2
    print(f"{'label':<{width}}examples  left-out right  nearest label (cosine)   confused with")
    for r in reports:
        held = "-" if r.leave_one_out is None else f"{r.leave_one_out:.0%}"
        nearest = (
            "-" if r.nearest_label is None else f"{r.nearest_label} ({r.nearest_similarity:.2f})"
        )
        print(
            f"{r.label:<{width}}{r.examples:>8}  {held:>14}  {nearest:<24} "
            f"{', '.join(r.confused_with) or '-'}"
        )
    source = "from the file" if labeller.examples.threshold is not None else "auto"
    print(
        f"\n`{labeller.examples.other}` below similarity {labeller.rule.threshold:.3f} ({source}); "
        f"{encoder.manifest.name} {encoder.manifest.version}, {len(reports)} labels"
    )
    weak = [r.label for r in reports if r.leave_one_out is not None and r.leave_one_out < 1]
    lonely = [r.label for r in reports if r.leave_one_out is None]
    if weak:
        print("add examples that tell apart: " + ", ".join(weak))
    if lonely:
        print("one example only (cannot be checked; add more): " + ", ".join(lonely))
    return 0
