"""Broker options shared by the operator's MQTT commands (`model push`, `status`, `unpush`)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # paho loads only when a command connects, not for --help
    from edge_agent.mqtt.operator import BrokerAddress


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("broker")
    group.add_argument("--host", default=os.environ.get("EDGE_AGENT_BROKER_HOST", "localhost"))
    group.add_argument(
        "--port", type=int, default=int(os.environ.get("EDGE_AGENT_BROKER_PORT", "1883"))
    )
    group.add_argument("--username", default=os.environ.get("EDGE_AGENT_BROKER_USERNAME"))
    group.add_argument(
        "--password-env",
        metavar="NAME",
        default="EDGE_AGENT_BROKER_PASSWORD",
        help="environment variable holding the password (never on the command line)",
    )
    group.add_argument("--ca-file", help="CA bundle: connect with TLS")
    group.add_argument("--prefix", default="edge-agent/ota", help="OTA topic prefix")


def broker_from_args(args: argparse.Namespace) -> BrokerAddress:
    from edge_agent.mqtt.operator import BrokerAddress

    return BrokerAddress(
        host=args.host,
        port=args.port,
        username=args.username,
        password=os.environ.get(args.password_env),
        ca_file=args.ca_file,
    )
