"""onnxruntime sessions and tokenizers set up for a small CPU, and the graph contract.

The bundle contract (docs/bundle-format.md): int64 inputs `input_ids` and `attention_mask`
`[batch, seq]`, one float output: `logits` `[batch, labels]` for a classifier, `embeddings`
`[batch, dim]` for an encoder. `open_session` refuses any other graph with a BundleError, so
the engine never meets a surprise at run time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import onnxruntime as ort
from tokenizers import Tokenizer

from edge_agent.bundle.layout import BundleError

INPUT_NAMES: Final = ("input_ids", "attention_mask")
OUTPUT_NAME: Final = "logits"
EMBEDDINGS_NAME: Final = "embeddings"


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings share one core's ALUs)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(allowed))
        cores.add((package, core))
    return max(1, len(cores) or (os.cpu_count() or 1))


def inference_layout(workers: int | None, threads: int | None) -> tuple[int, int]:
    """(batches classified at once, onnxruntime intra-op threads for each): by default one
    single-threaded batch per physical core. Two one-thread runs side by side on one session
    labelled 1,304 msg/s on two cores where one two-thread run at a time labelled 909
    (docs/benchmarks.md): without spinning, a thread pool's workers sleep and wake at every
    parallel operator, and a run stalls whenever another process has one of its cores."""
    cores = physical_cores()
    workers = workers if workers is not None else cores
    return workers, threads if threads is not None else max(1, cores // workers)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Options for a small CPU: intra-op threads = physical cores, no inter-op pool."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads is not None else physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings from ORT would otherwise go to stderr raw
    # onnxruntime's worker threads spin after every run, waiting for the next one. On a
    # device whose cores also run paho's thread, the broker and other services, that
    # burns them between batches: at half load the agent kept 1.33 of 2 cores busy with
    # spinning workers and 0.81 without, and its saturated throughput was no lower
    # (docs/benchmarks.md). The price is a slower lone inference (0.8 -> 1.2 ms here).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(
    model_path: Path,
    threads: int | None = None,
    output: str = OUTPUT_NAME,
    *,
    model_bytes: bytes | None = None,
) -> ort.InferenceSession:
    """An onnxruntime CPU session whose interface matches the bundle contract (its one output
    named `output`); built from `model_bytes` when given (`model_path` then only names it)."""
    try:
        session = ort.InferenceSession(
            model_bytes if model_bytes is not None else str(model_path),
            session_options(threads),
            providers=["CPUExecutionProvider"],
        )
    except Exception as error:  # onnxruntime raises its own untyped exceptions
        raise BundleError(f"{model_path}: onnxruntime cannot load it: {error}") from error
    inputs = {i.name: i for i in session.get_inputs()}
    for name in INPUT_NAMES:
        if name not in inputs or inputs[name].type != "tensor(int64)":
            raise BundleError(f"{model_path}: graph needs an int64 input {name!r}")
        if len(inputs[name].shape) != 2:
            raise BundleError(f"{model_path}: input {name!r} must be [batch, seq]")
    if set(inputs) != set(INPUT_NAMES):
        raise BundleError(f"{model_path}: unexpected graph inputs {sorted(inputs)}")
    outputs = [o.name for o in session.get_outputs()]
    if outputs != [output]:
        raise BundleError(f"{model_path}: graph outputs {outputs}, expected [{output!r}]")
    return session


def load_tokenizer(path: Path, max_seq_len: int, *, data: bytes | None = None) -> Tokenizer:
    """The tokenizer of `path` (from `data` when given), truncating at max_seq_len."""
    try:
        if data is not None:
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        else:
            tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception subclass from Rust
        raise BundleError(f"{path}: not a valid tokenizers file: {error}") from error
    return configure_tokenizer(tokenizer, max_seq_len)


def configure_tokenizer(tokenizer: Tokenizer, max_seq_len: int) -> Tokenizer:
    """Truncate at max_seq_len, pad to the longest text of a batch (changes `tokenizer`)."""
    # tokenizers spreads a batch over a rayon pool unless told not to (read at every call).
    # Our batches are at most 16 short texts: one thread tokenizes them faster (0.43 ms
    # against 0.69 here), and the pool's spinning threads would take cores from
    # onnxruntime. A value the user set wins.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tokenizer.enable_truncation(max_length=max_seq_len)
    pad_token = "[PAD]" if tokenizer.token_to_id("[PAD]") is not None else None
    pad_id = tokenizer.token_to_id(pad_token) if pad_token else 0
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token or "[PAD]")
    return tokenizer
