"""`edge-agent check-config --config PATH`: validate and print the effective config.

Exit 0 with the resolved config (paths made absolute, environment overrides applied,
password shown as ***) on stdout, or 3 with one line naming the problem on stderr.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from edge_agent.cli import STARTUP_FAILURE
from edge_agent.commands._config_option import add_config_option, load_or_explain
from edge_agent.config.settings import effective_config


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)


def main(args: argparse.Namespace) -> int:
    config = load_or_explain(args.config)
    if config is None:
        return STARTUP_FAILURE
    sys.stdout.write(yaml.safe_dump(effective_config(config), sort_keys=False))
    return 0
