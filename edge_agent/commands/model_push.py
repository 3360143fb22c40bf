"""`edge-agent model push --device ID|--fleet GROUP BUNDLE --key KEY`: a signed OTA update."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent.commands._broker_options import add_broker_options, broker_from_args


def configure(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="device id (its broker client id)")
    target.add_argument("--fleet", help="fleet group (config ota.fleet)")
    parser.add_argument("bundle", type=Path, help="bundle folder")
    parser.add_argument("--key", required=True, type=Path, help="private key (PEM)")
    parser.add_argument("--expires-days", type=float, default=14.0, help="default 14")
    parser.add_argument("--chunk-size", type=int, help="bytes per chunk; default 128 KiB")
    parser.add_argument(
        "--downgrade", action="store_true", help="allow devices to go back to this version"
    )
    parser.add_argument("--min-agent-version", help="refused by older agents")
    add_broker_options(parser)


def main(args: argparse.Namespace) -> int:
    # paho and cryptography load only when the command runs, not for --help.
    from edge_agent.bundle.keys import KeyFileError
    from edge_agent.bundle.signer import Signer
    from edge_agent.mqtt.operator import BrokerError, publish_messages
    from edge_agent.ota.manifest import DEFAULT_CHUNK_SIZE, Target, UpdateRejectedError
    from edge_agent.ota.push import BundleReadError, build_update, read_bundle_files

    try:
        update = build_update(
            read_bundle_files(args.bundle),
            Signer.from_file(args.key),
            Target(device=args.device) if args.device else Target(fleet=args.fleet),
            prefix=args.prefix,
            now=datetime.now(UTC),
            expires_in=timedelta(days=args.expires_days),
            chunk_size=args.chunk_size or DEFAULT_CHUNK_SIZE,
            downgrade=args.downgrade,
            min_agent_version=args.min_agent_version,
        )
        manifest = update.manifest
        print(
            f"update {manifest.update_id}: {manifest.name} {manifest.version},"
            f" {manifest.total_bytes} bytes in {manifest.total_chunks} chunks,"
            f" expires {manifest.expires.isoformat()}"
        )
        publish_messages(
            broker_from_args(args),
            [(m.topic, m.payload, m.retain) for m in update.messages],
        )
    except (KeyFileError, BundleReadError, UpdateRejectedError, BrokerError, OSError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    print(f"published {len(update.messages)} messages (retained); follow with `model status`")
    return 0
