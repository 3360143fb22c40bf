"""`edge-agent run --config PATH`: the daemon.

Startup is all or nothing: config, logging, trusted keys, every route's model (fully
verified, signed when `models.trusted_keys` is set, and warmed up) and the state directory
must all be in place before any thread starts or any connection is made; otherwise one
line names the problem and the exit status is 3 (systemd's unit does not restart on it).
Later model versions arrive by hot-swap (edge_agent/models/store.py) and never stop it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.cli import STARTUP_FAILURE
from edge_agent.config.settings import ConfigError, load_config
from edge_agent.telemetry import logs as logging_setup


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML config file")


def main(args: argparse.Namespace) -> int:
    # onnxruntime and paho load only when the daemon really starts, not for --help.
    from edge_agent.bundle.keys import KeyFileError, Keyring
    from edge_agent.bundle.manifest import BundleError
    from edge_agent.daemon.service import Service
    from edge_agent.models.store import ModelStore
    from edge_agent.pipeline.attempts import AttemptLog

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"edge-agent: config error: {error}", file=sys.stderr)
        return STARTUP_FAILURE
    logging_setup.configure(config.logging.format, config.logging.level)
    keyring: Keyring | None = None
    if config.models.trusted_keys:
        try:
            keyring = Keyring.from_files(Path(path) for path in config.models.trusted_keys)
        except KeyFileError as error:
            print(f"edge-agent: config error: models.trusted_keys: {error}", file=sys.stderr)
            return STARTUP_FAILURE
    elif config.ota.enabled:
        print(
            "edge-agent: config error: ota.enabled needs models.trusted_keys "
            "(an OTA channel without keys would accept nothing)",
            file=sys.stderr,
        )
        return STARTUP_FAILURE
    try:
        store = ModelStore.load(
            config.models_dir,
            [route.model for route in config.routes],
            precision=config.models.precision,
            threads=config.models.threads,
            keyring=keyring,
        )
    except BundleError as error:
        print(f"edge-agent: model error: {error}", file=sys.stderr)
        return STARTUP_FAILURE
    try:
        attempts = AttemptLog(config.state_path)
    except OSError as error:
        print(
            f"edge-agent: state directory {config.state_path}: {error.strerror or error}",
            file=sys.stderr,
        )
        return STARTUP_FAILURE
    service = Service(config, store, attempts, keyring=keyring)
    if service.metrics is not None:
        try:
            service.metrics.start()
        except OSError as error:
            where = f"{config.metrics.host}:{config.metrics.port}"
            print(f"edge-agent: metrics {where}: {error.strerror or error}", file=sys.stderr)
            return STARTUP_FAILURE
    return service.run()
