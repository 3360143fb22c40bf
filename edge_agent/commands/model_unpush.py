"""`edge-agent model unpush --device ID|--fleet GROUP`: take a retained OTA update off the broker.

`model push` leaves the update and its chunks retained, so devices that connect later still
get it. Once a rollout is done (or must stop), this clears them: the update topic first, then
every chunk topic no other retained update needs.
"""

from __future__ import annotations

import argparse
import sys

from edge_agent.commands._broker_options import add_broker_options, broker_from_args


def configure(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="device id the update was pushed to")
    target.add_argument("--fleet", help="fleet group the update was pushed to")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of quiet to stop")
    add_broker_options(parser)


def main(args: argparse.Namespace) -> int:
    # paho and cryptography load only when the command runs, not for --help.
    from edge_agent.mqtt.operator import BrokerError, collect_retained, publish_messages
    from edge_agent.ota.manifest import UpdateRejectedError, update_topic
    from edge_agent.ota.push import clear_update

    topic = update_topic(args.prefix, device=args.device, fleet=args.fleet)
    broker = broker_from_args(args)
    try:
        retained = collect_retained(broker, f"{args.prefix}/+/+/update", settle_s=args.settle)
        clearing = clear_update(retained, topic, args.prefix)
        publish_messages(broker, [(m.topic, m.payload, m.retain) for m in clearing.messages])
    except (UpdateRejectedError, BrokerError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    manifest = clearing.manifest
    what = (
        f"update {manifest.update_id} ({manifest.name} {manifest.version})"
        if manifest is not None
        else "an unreadable update"
    )
    print(
        f"cleared {what} from {topic} and {len(clearing.messages) - 1} chunk topics;"
        f" kept {clearing.shared_chunks} that other retained updates use"
    )
    return 0
