"""`edge-agent model status --fleet GROUP | --device ID`: the devices' latest OTA reports."""

from __future__ import annotations

import argparse
import json
import sys

from edge_agent.commands._broker_options import add_broker_options, broker_from_args

COLUMNS = ("device", "name", "version", "state", "progress", "at", "reason")


def configure(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="one device id")
    target.add_argument("--fleet", help="every device reporting this fleet group")
    parser.add_argument("--json", action="store_true", help="one JSON report per line")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of quiet to stop")
    add_broker_options(parser)


def main(args: argparse.Namespace) -> int:
    # paho loads only when the command runs, not for --help.
    from edge_agent.mqtt.operator import BrokerError, collect_retained

    device = args.device or "+"
    try:
        found = collect_retained(
            broker_from_args(args), f"{args.prefix}/device/{device}/report", settle_s=args.settle
        )
    except BrokerError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    reports = []
    for topic, payload in sorted(found.items()):
        try:
            report = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            print(f"edge-agent: {topic}: not a JSON report, skipped", file=sys.stderr)
            continue
        if isinstance(report, dict) and (args.fleet is None or report.get("fleet") == args.fleet):
            reports.append(report)
    if args.json:
        for report in reports:
            print(json.dumps(report, sort_keys=True))
        return 0
    rows = [COLUMNS] + [_row(report) for report in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"{len(reports)} device(s)")
    return 0


def _row(report: dict[str, object]) -> tuple[str, ...]:
    received, total = report.get("received"), report.get("total")
    progress = f"{received}/{total}" if total is not None else ""
    return tuple(
        progress if column == "progress" else str(report.get(column) or "") for column in COLUMNS
    )
