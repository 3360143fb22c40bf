"""`edge-agent model sign BUNDLE --key KEY`: write manifest.sig over manifest.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle folder holding manifest.json")
    parser.add_argument("--key", required=True, type=Path, help="private key (PEM)")


def main(args: argparse.Namespace) -> int:
    # cryptography loads only when the command runs, not for --help.
    from edge_agent.bundle.keys import KeyFileError
    from edge_agent.bundle.signer import Signer, sign_bundle

    try:
        signer = Signer.from_file(args.key)
        path = sign_bundle(args.bundle, signer)
    except (KeyFileError, OSError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    print(f"signed {path} with key id {signer.key_id}")
    return 0
