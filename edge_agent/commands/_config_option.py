"""`--config PATH` for the commands that read the daemon's config (`run`, `check-config`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.config.settings import Config, ConfigError, load_config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML config file")


def load_or_explain(path: Path) -> Config | None:
    """The config, or None after one line on stderr naming the problem (exit status 3)."""
    try:
        return load_config(path)
    except ConfigError as error:
        print(f"edge-agent: config error: {error}", file=sys.stderr)
        return None
