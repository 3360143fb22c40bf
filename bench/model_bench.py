"""Model benchmark: this project's INT8 SqueezeBERT against the usual alternatives.

One run builds every candidate with random weights in squeezebert-uncased / bert-base
shapes (speed does not depend on the weights' values), then times them interleaved
(round by round, every candidate and shape once per round, order rotated each round) so
that load from other jobs on the machine hits all candidates alike; it reports medians
and the ratios between candidates measured in this same run.

    PYTHONPATH=. python bench/model_bench.py --threads 1 --rounds 15 --markdown out.md
    PYTHONPATH=. python bench/model_bench.py --bundles models/sentiment/1.1.4 models/encoder/1.4.12

With --bundles it times those bundles' model.onnx instead, interleaved the same way, with
each one's ratio to the first (e.g. the encoder against the sentiment classifier).

Candidates: ours INT8 and fp32 (fast formulation, `edge_agent.toolkit`); the obvious
path (`torch.onnx.export` of transformers' SqueezeBERT + `quantize_dynamic`); BERT-base
INT8 and fp32 exported the same obvious way; transformers' SqueezeBERT in PyTorch eager;
and the FLOP ceiling: BERT-base INT8's time scaled by SqueezeBERT's share of the FLOPs.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

SHAPES: Final = ((1, 32), (1, 128), (16, 32))
VOCAB: Final = 30528
Runner = Callable[[dict[str, np.ndarray]], object]


def squeezebert_config(**overrides: Any) -> Any:
    from transformers import SqueezeBertConfig

    # squeezebert-uncased: hidden 768, 12 layers, 12 heads, groups q,k,v,int,out = 4.
    return SqueezeBertConfig(vocab_size=VOCAB, num_labels=2, **overrides)  # type: ignore[call-arg]


def bert_config() -> Any:
    from transformers import BertConfig

    return BertConfig(num_labels=2)  # type: ignore[call-arg]  # bert-base-uncased shapes


def build_models(work: Path, seed: int) -> dict[str, Path]:
    """Export and quantize every ONNX candidate into `work` (reused when present)."""
    import torch
    from transformers import BertForSequenceClassification, SqueezeBertForSequenceClassification

    from edge_agent.toolkit.export.quantize import quantize_int8
    from edge_agent.toolkit.export.to_onnx import export_onnx, export_torch_module

    work.mkdir(parents=True, exist_ok=True)
    paths = {
        "ours int8": work / "ours.int8.onnx",
        "ours fp32": work / "ours.fp32.onnx",
        "obvious int8": work / "obvious.int8.onnx",
        "bert-base int8": work / "bert.int8.onnx",
        "bert-base fp32": work / "bert.fp32.onnx",
    }
    if all(p.exists() for p in paths.values()):
        return paths
    torch.manual_seed(seed)
    squeeze: Any = SqueezeBertForSequenceClassification(squeezebert_config())
    squeeze.eval()
    log("exporting ours (fast formulation)")
    export_onnx(squeeze, paths["ours fp32"])
    # Calibration as a trained bundle gets it (texts here are random ids, like the weights),
    # so the timed graph carries the same smoothing Muls a shipped bundle does.
    rng = np.random.default_rng(seed)
    calibration = [feeds_for(8, 64, rng) for _ in range(2)]
    quantize_int8(paths["ours fp32"], paths["ours int8"], calibration=calibration)
    log("exporting the obvious path")
    obvious_fp32 = export_torch_module(_Wrapped(squeeze), work / "obvious.fp32.onnx")
    _quantize_obviously(obvious_fp32, paths["obvious int8"])
    del squeeze
    log("exporting BERT-base")
    bert: Any = BertForSequenceClassification(bert_config())
    bert.eval()
    export_torch_module(_Wrapped(bert), paths["bert-base fp32"])
    _quantize_obviously(paths["bert-base fp32"], paths["bert-base int8"])
    return paths


class _Wrapped:
    """(input_ids, attention_mask) -> logits around a transformers model, for export."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Module(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                logits: torch.Tensor = self.model(input_ids=ids, attention_mask=mask).logits
                return logits

        return Module().eval()


def _quantize_obviously(fp32: Path, int8: Path) -> None:
    """What the onnxruntime docs show: quantize_dynamic with default settings, QInt8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)


def ort_runner(path: Path, threads: int) -> Runner:
    import onnxruntime as ort

    from edge_agent.engine.session import session_options

    session = ort.InferenceSession(
        str(path), session_options(threads), providers=["CPUExecutionProvider"]
    )
    output = session.get_outputs()[0].name  # logits, or an encoder's embeddings
    return lambda feeds: session.run([output], feeds)


def eager_runner(threads: int, seed: int) -> Runner:
    import torch
    from transformers import SqueezeBertForSequenceClassification

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model: Any = SqueezeBertForSequenceClassification(squeezebert_config())
    model.eval()

    def run(feeds: dict[str, np.ndarray]) -> object:
        with torch.inference_mode():
            return model(
                input_ids=torch.from_numpy(feeds["input_ids"]),
                attention_mask=torch.from_numpy(feeds["attention_mask"]),
            ).logits

    return run


def encoder_flops(
    seq: int, hidden: int, layers: int, intermediate: int, groups: dict[str, int]
) -> float:
    """Multiply-adds x 2 per sequence in the encoder (embeddings and head are negligible)."""
    dense = (
        3 * hidden * hidden / groups["qkv"]
        + hidden * hidden / groups["post"]
        + 2 * hidden * intermediate / groups["ffn"]
    )
    attention = 2 * seq * hidden  # scores and context
    return 2.0 * layers * seq * (dense + attention)


def flop_ratio(seq: int) -> float:
    """SqueezeBERT FLOPs / BERT-base FLOPs at this sequence length."""
    squeeze = encoder_flops(seq, 768, 12, 3072, {"qkv": 4, "post": 1, "ffn": 4})
    bert = encoder_flops(seq, 768, 12, 3072, {"qkv": 1, "post": 1, "ffn": 1})
    return squeeze / bert


def feeds_for(batch: int, seq: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    ids = rng.integers(1000, 29000, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(
    runners: dict[str, Runner],
    rounds: int,
    runs_per_round: int,
    seed: int,
    shapes: tuple[tuple[int, int], ...] = SHAPES,
) -> dict[str, dict[tuple[int, int], list[float]]]:
    rng = np.random.default_rng(seed)
    feeds = {shape: feeds_for(*shape, rng) for shape in shapes}
    for runner in runners.values():  # warm-up: first runs allocate and pre-pack
        for shape in shapes:
            runner(feeds[shape])
            runner(feeds[shape])
    times: dict[str, dict[tuple[int, int], list[float]]] = {
        name: {shape: [] for shape in shapes} for name in runners
    }
    names = list(runners)
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            for shape in shapes:
                samples = []
                for _ in range(runs_per_round):
                    start = time.perf_counter()
                    runners[name](feeds[shape])
                    samples.append(time.perf_counter() - start)
                times[name][shape].append(min(samples))
        log(f"round {round_index + 1}/{rounds} done")
    return times


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _round_ratio(other: list[float], ours: list[float]) -> str:
    """Median over rounds of other/ours measured in the same round, and the quartiles."""
    ratios = [o / u for o, u in zip(other, ours, strict=True)]
    if len(ratios) < 4:
        return f"{statistics.median(ratios):.2f}x"
    low, _, high = statistics.quantiles(ratios, n=4)
    return f"{statistics.median(ratios):.2f}x ({low:.2f}-{high:.2f})"


def render(times: dict[str, dict[tuple[int, int], list[float]]], threads: int, rounds: int) -> str:
    med = {n: {s: statistics.median(v) * 1e3 for s, v in by.items()} for n, by in times.items()}
    ceiling = {s: med["bert-base int8"][s] * flop_ratio(s[1]) for s in SHAPES}
    rows = [*med.items(), ("FLOP ceiling (bert-base int8 x FLOP share)", ceiling)]
    head = "| candidate | " + " | ".join(f"b{b} s{s} ms" for b, s in SHAPES) + " |"
    lines = [
        f"Date: {datetime.date.today()}; machine: {cpu_model()}; onnxruntime threads: {threads}; "
        f"median of {rounds} interleaved rounds (each round: best of 3 runs).",
        "",
        head,
        "|" + "---|" * (len(SHAPES) + 1),
    ]
    for name, by_shape in rows:
        lines.append(f"| {name} | " + " | ".join(f"{by_shape[s]:.2f}" for s in SHAPES) + " |")
    lines += [
        "",
        "Ratios: median over rounds of each round's own ratio (the two timed seconds apart, so"
        " a slow spell on a shared host hits both), with the interquartile range over rounds.",
        "",
        "| ours int8 is faster than ... by | " + " | ".join(f"b{b} s{s}" for b, s in SHAPES) + " |",
        "|" + "---|" * (len(SHAPES) + 1),
    ]
    for name in med:
        if name != "ours int8":
            cells = [_round_ratio(times[name][s], times["ours int8"][s]) for s in SHAPES]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| FLOP ceiling vs bert-base int8 | "
        + " | ".join(f"{1 / flop_ratio(s[1]):.2f}x" for s in SHAPES)
        + " |"
    )
    return "\n".join(lines)


BUNDLE_SHAPES: Final = ((1, 16), (1, 32), (1, 64), (16, 32))


def render_bundles(
    times: dict[str, dict[tuple[int, int], list[float]]], threads: int, rounds: int
) -> str:
    """Medians per bundle and shape, and each bundle's time as a multiple of the first's."""
    names = list(times)
    head = " | ".join(f"b{b} s{s}" for b, s in BUNDLE_SHAPES)
    lines = [
        f"Date: {datetime.date.today()}; machine: {cpu_model()}; onnxruntime threads: {threads}; "
        f"median of {rounds} interleaved rounds (each round: best of 3 runs).",
        "",
        f"| bundle (model.onnx) | {head} |",
        "|" + "---|" * (len(BUNDLE_SHAPES) + 1),
    ]
    for name in names:
        cells = [f"{statistics.median(times[name][s]) * 1e3:.2f} ms" for s in BUNDLE_SHAPES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"| time / {names[0]}'s, same round | {head} |"]
    lines.append("|" + "---|" * (len(BUNDLE_SHAPES) + 1))
    for name in names[1:]:
        cells = [_round_ratio(times[name][s], times[names[0]][s]) for s in BUNDLE_SHAPES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs-per-round", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=Path("bench/.models"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], help="candidate names to leave out")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--bundles", nargs="+", type=Path, help="time these bundles instead")
    args = parser.parse_args()
    if args.bundles:
        runners = {
            f"{b.parent.name} {b.name}": ort_runner(b / "model.onnx", args.threads)
            for b in args.bundles
        }
        times = measure(runners, args.rounds, args.runs_per_round, args.seed, BUNDLE_SHAPES)
        table = render_bundles(times, args.threads, args.rounds)
        print(table)
        if args.markdown:
            args.markdown.write_text(table + "\n")
        return 0
    paths = build_models(args.work_dir, args.seed)
    runners: dict[str, Runner] = {
        name: ort_runner(path, args.threads)
        for name, path in paths.items()
        if name not in args.skip
    }
    if "pytorch eager" not in args.skip:
        runners["pytorch eager"] = eager_runner(args.threads, args.seed)
    table = render(
        measure(runners, args.rounds, args.runs_per_round, args.seed), args.threads, args.rounds
    )
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
