"""`edge-agent model inspect`: print a bundle's manifest, check its files, optionally load it.

Device side: needs only the daemon's dependencies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a version folder, or a model folder")
    parser.add_argument("--json", action="store_true", help="print manifest.json as is")
    parser.add_argument("--load", action="store_true", help="also load it (golden, warm-up)")
    parser.add_argument("--threads", type=int)


def describe(manifest: object) -> list[str]:
    from edge_agent.bundle.manifest import Manifest

    assert isinstance(manifest, Manifest)
    lines = [
        f"{manifest.name} {manifest.version} ({manifest.task}, max {manifest.max_seq_len} tokens)",
        f"labels ({len(manifest.labels)}): {', '.join(manifest.labels)}",
    ]
    if manifest.thresholds:
        lines.append("thresholds: " + ", ".join(f"{k}={v}" for k, v in manifest.thresholds.items()))
    if manifest.reject is not None:
        reject = manifest.reject
        lines.append(f"reject: {reject.score} below {reject.threshold} -> {reject.label!r}")
    for name, entry in sorted(manifest.files.items()):
        lines.append(f"file {name}: {entry.size / 1e6:.2f} MB sha256 {entry.sha256[:16]}...")
    if manifest.metrics:
        lines.append("metrics: " + ", ".join(f"{k}={v:g}" for k, v in manifest.metrics.items()))
    for example in manifest.golden:
        lines.append(f"golden: {example.text[:50]!r} -> {example.label} ({example.score:.4f})")
    for key, value in manifest.card.items():
        lines.append(f"card.{key}: {value}")
    return lines


def main(args: argparse.Namespace) -> int:
    from edge_agent.bundle.layout import MANIFEST_FILE, BundleError
    from edge_agent.bundle.manifest import load_manifest
    from edge_agent.bundle.verify import verify_files
    from edge_agent.bundle.versions import resolve_bundle

    bundle = args.bundle
    try:
        if not (bundle / MANIFEST_FILE).is_file():
            bundle = resolve_bundle(bundle.parent, bundle.name)
        manifest = load_manifest(bundle)
        if args.json:
            print((bundle / MANIFEST_FILE).read_text(encoding="utf-8"), end="")
        else:
            print(f"bundle: {bundle}")
            print("\n".join(describe(manifest)))
        verify_files(bundle, manifest)
        print("files: ok (sizes and sha256 match)", file=sys.stderr)
        if args.load:
            from edge_agent.engine.classifier import load_classifier

            classifier = load_classifier(bundle, threads=args.threads)
            print(f"load: ok (golden examples reproduced; runs {classifier.precision})")
    except BundleError as error:
        print(f"edge-agent: {error}", file=sys.stderr)
        return 3
    return 0
