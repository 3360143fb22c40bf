"""`edge-agent run --config PATH`: the daemon.

Startup problems (config, keys, models, state directory, metrics port) print one line and
exit with status 3, which systemd's unit does not restart on; what is checked, and in which
order, is edge_agent/daemon/wiring.py.
"""

from __future__ import annotations

import argparse
import sys

from edge_agent.cli import STARTUP_FAILURE
from edge_agent.commands._config_option import add_config_option, load_or_explain
from edge_agent.telemetry import logs


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)


def main(args: argparse.Namespace) -> int:
    # onnxruntime, paho and cryptography load only when the daemon really starts.
    from edge_agent.daemon.wiring import StartupError, build_service

    config = load_or_explain(args.config)
    if config is None:
        return STARTUP_FAILURE
    logs.configure(config.logging.format, config.logging.level)
    try:
        service = build_service(config)
    except StartupError as error:
        print(f"edge-agent: {error}", file=sys.stderr)
        return STARTUP_FAILURE
    return service.run()
