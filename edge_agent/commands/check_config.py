"""`edge-agent check-config --config PATH`: validate and print the effective config.

Exit 0 with the resolved config (paths made absolute, environment overrides applied,
password shown as ***) on stdout, or 3 with one line naming the problem on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from edge_agent.cli import STARTUP_FAILURE
from edge_agent.config.settings import ConfigError, effective_config, load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML config file")


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"edge-agent: config error: {error}", file=sys.stderr)
        return STARTUP_FAILURE
    sys.stdout.write(yaml.safe_dump(effective_config(config), sort_keys=False))
    return 0
