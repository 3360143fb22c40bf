"""`edge-agent model keygen --out PREFIX`: an ed25519 key pair for signing bundles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", required=True, type=Path, help="writes PREFIX.key (0600) and PREFIX.pub"
    )


def main(args: argparse.Namespace) -> int:
    # cryptography loads only when the command runs, not for --help.
    from edge_agent.bundle.keys import KeyFileError
    from edge_agent.bundle.signer import generate_keypair

    try:
        pair = generate_keypair(args.out)
    except (KeyFileError, OSError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    print(f"private key: {pair.private_path} (keep it off devices)")
    print(f"public key:  {pair.public_path} (list it in models.trusted_keys)")
    print(f"key id:      {pair.key_id}")
    return 0
