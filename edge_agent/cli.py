"""Command-line entry point: a table of subcommands, each a module in `edge_agent.commands`.

Every command module exposes `configure(parser)` and `main(args) -> int`. Only the module of
the command being run is imported (its arguments are added when the command words are on
the command line), so `edge-agent --help` loads none of paho, onnxruntime, cryptography or
torch, and a device never imports the workstation toolkit. Modules also import heavy
dependencies inside `main`, so `edge-agent <command> --help` stays light too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final, Protocol

from edge_agent import __version__

# Exit status for startup problems (bad config, missing or broken model): systemd's unit
# uses RestartPreventExitStatus=3 so a misconfigured device does not restart in a loop.
STARTUP_FAILURE: Final = 3

# (command words, module, one-line help)
COMMANDS: Final[tuple[tuple[tuple[str, ...], str, str], ...]] = (
    (("run",), "edge_agent.commands.run", "run the daemon"),
    (("check-config",), "edge_agent.commands.check_config", "validate and print a config"),
    (("classify",), "edge_agent.commands.classify", "classify texts with a bundle"),
    (("bench",), "edge_agent.commands.bench", "latency/throughput table for a bundle here"),
    (("model", "export"), "edge_agent.commands.model_export", "HF SqueezeBERT -> fp32 ONNX"),
    (("model", "quantize"), "edge_agent.commands.model_quantize", "fp32 ONNX -> INT8 ONNX"),
    (("model", "pack"), "edge_agent.commands.model_pack", "write a bundle and its manifest"),
    (("model", "inspect"), "edge_agent.commands.model_inspect", "print a bundle's manifest"),
    (("model", "train"), "edge_agent.commands.model_train", "train a bundle on labelled data"),
    (("model", "keygen"), "edge_agent.commands.model_keygen", "make an ed25519 signing key"),
    (("model", "sign"), "edge_agent.commands.model_sign", "sign a bundle"),
    (("model", "push"), "edge_agent.commands.model_push", "push a bundle over MQTT"),
    (("model", "status"), "edge_agent.commands.model_status", "read devices' update reports"),
    (("model", "unpush"), "edge_agent.commands.model_unpush", "clear a retained update"),
    (("labels", "check"), "edge_agent.commands.labels_check", "how separable example labels are"),
)


class CommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def main(self, args: argparse.Namespace) -> int: ...


def _load(module_name: str) -> CommandModule:
    module: CommandModule = importlib.import_module(module_name)
    return module


def chosen_command(argv: Sequence[str]) -> tuple[str, ...]:
    """The command words at the front of argv (`("model", "push")`), before any option."""
    words: list[str] = []
    for token in argv:
        if token.startswith("-"):
            break
        words.append(token)
    return tuple(words)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole command table with help lines; only the command named in argv (if any)
    imports its module and gets its arguments."""
    chosen = chosen_command(argv)
    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for words, module_name, help_text in COMMANDS:
        container = top
        for group in words[:-1]:
            if group not in groups:
                group_parser = top.add_parser(group, help=f"{group} commands")
                groups[group] = group_parser.add_subparsers(
                    dest=f"{group}_command", required=True, metavar="COMMAND"
                )
            container = groups[group]
        sub = container.add_parser(words[-1], help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if chosen[: len(words)] == words:
            _load(module_name).configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(arguments).parse_args(arguments)
    return _load(args._module).main(args)


if __name__ == "__main__":
    sys.exit(main())
