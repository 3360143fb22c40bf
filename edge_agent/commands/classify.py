"""`edge-agent classify [--model NAME | --bundle DIR] TEXT...`: try a model from a shell.

Texts come from the arguments, or from stdin one per line. Each gets one JSON line in the
published result schema (or an error result, e.g. for an empty line), so scripts can use
the output exactly as they would use the agent's results.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from edge_agent.cli import STARTUP_FAILURE
from edge_agent.pipeline import messages
from edge_agent.telemetry import logs as logging_setup

CHUNK: Final = 16  # texts per classify call when reading a stream


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", help="model name in --models-dir (sentiment; encoder with --examples)"
    )
    source.add_argument("--bundle", type=Path, help="a bundle folder (overrides --model)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="bundles folder")
    parser.add_argument("--top-k", type=int, default=3, help="scores to list per result")
    parser.add_argument("--max-text-bytes", type=int, default=4096, help="cut longer texts")
    parser.add_argument("--precision", choices=("auto", "int8", "fp32"), default="auto")
    parser.add_argument(
        "--examples", type=Path, help="label with an examples file through an embedding model"
    )
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts; stdin when none")


def main(args: argparse.Namespace) -> int:
    # onnxruntime loads only when a model is really used, not for --help.
    from edge_agent.bundle.layout import BundleError
    from edge_agent.bundle.versions import resolve_bundle
    from edge_agent.engine.classifier import Classifier, load_classifier
    from edge_agent.engine.encoder import load_encoder
    from edge_agent.labels.examples import LabelsError
    from edge_agent.labels.labeller import ExampleLabeller, build_labeller

    # stdout carries only results; the engine's log lines go to stderr.
    logging_setup.configure("auto", "warning", stream=sys.stderr)
    model = args.model or ("encoder" if args.examples else "sentiment")
    classifier: Classifier | ExampleLabeller
    try:
        bundle = args.bundle or resolve_bundle(args.models_dir, model)
        if args.examples:
            encoder = load_encoder(bundle, precision=args.precision)
            classifier = build_labeller(str(args.examples), encoder, args.examples)
        else:
            classifier = load_classifier(bundle, precision=args.precision)
    except BundleError as error:
        print(f"edge-agent: model error: {error}", file=sys.stderr)
        return STARTUP_FAILURE
    except LabelsError as error:
        print(f"edge-agent: examples error: {error}", file=sys.stderr)
        return STARTUP_FAILURE
    spec = messages.InputSpec(mode="text", max_text_bytes=args.max_text_bytes)
    texts: Iterator[str] = iter(args.texts) if args.texts else _stdin_lines()
    # Interactive stdin gets an answer per line; pipes and arguments are batched.
    size = len(args.texts) if args.texts else (1 if sys.stdin.isatty() else CHUNK)
    for chunk in _chunks(texts, size):
        started = time.monotonic()
        decoded = [messages.decode(text.encode("utf-8", "surrogatepass"), spec) for text in chunk]
        requests = [item for item in decoded if isinstance(item, messages.Request)]
        predictions = iter(classifier.classify([r.text for r in requests], top_k=args.top_k))
        latency_ms = (time.monotonic() - started) * 1000 / max(1, len(chunk))
        for item in decoded:
            if isinstance(item, messages.BadInput):
                line = messages.encode_error(
                    item.id, topic=None, code=item.code, message=item.message
                )
            else:
                line = messages.encode_result(
                    item, next(predictions), topic=None, latency_ms=latency_ms, echo_text=False
                )
            sys.stdout.write(line.decode("utf-8") + "\n")
        sys.stdout.flush()
    return 0


def _stdin_lines() -> Iterator[str]:
    for line in sys.stdin:
        yield line.rstrip("\r\n")


def _chunks(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
