"""What every bundle's model does the same way: tokenize, run in bounded batches, pick a
precision. The classifier (logits -> labels) and the encoder (sentence embeddings) build on it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from edge_agent.bundle.layout import FP32_MODEL_FILE, MODEL_FILE, TOKENIZER_FILE, BundleError
from edge_agent.bundle.manifest import Manifest
from edge_agent.bundle.verify import Verifier, read_verified, verify_bundle
from edge_agent.engine.prediction import ClassifyTiming
from edge_agent.engine.run_plan import plan_runs
from edge_agent.engine.session import EMBEDDINGS_NAME, OUTPUT_NAME, load_tokenizer, open_session
from edge_agent.telemetry.logs import get_logger

Precision = Literal["auto", "int8", "fp32"]
# Texts per session run: bounds memory (activations grow with batch x length) while
# keeping the per-run overhead amortised.
MAX_RUN_BATCH: Final = 32
# Texts tokenized together (padded to the longest of them) before they are planned into
# runs: bounds the id arrays of a long list (a file through `classify`, an examples file).
TOKENIZE_WINDOW: Final = 8 * MAX_RUN_BATCH
_TIMING_ROUNDS: Final = 5

FloatArray = npt.NDArray[np.float32]
log = get_logger(__name__)


class BundleRunner:
    """Tokenizer + onnxruntime session of one bundle. Used by one worker thread at a time
    (plus the model loader when it embeds an examples file: onnxruntime's run and the
    tokenizer are safe to call from two threads)."""

    def __init__(
        self,
        manifest: Manifest,
        tokenizer: Tokenizer,
        session: ort.InferenceSession,
        precision: str,
        bundle_dir: Path,
    ) -> None:
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.session = session
        self.precision = precision
        self.bundle_dir = bundle_dir
        self._output = session.get_outputs()[0].name

    def encode(self, texts: Sequence[str]) -> tuple[dict[str, npt.NDArray[np.int64]], list[bool]]:
        """Token ids and mask, padded to the longest text; which texts were truncated."""
        # _fast: without the character offsets, which nothing here reads.
        encodings = self.tokenizer.encode_batch_fast(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        truncated = [bool(e.overflowing) for e in encodings]
        return {"input_ids": ids, "attention_mask": mask}, truncated

    def run(
        self, texts: Sequence[str], width: int, timing: ClassifyTiming | None = None
    ) -> tuple[FloatArray, list[bool]]:
        """The graph's output [len(texts), width] and truncation flags, in the order of
        `texts`; the session runs texts of similar length together (engine/run_plan.py)."""
        pieces: list[tuple[npt.NDArray[np.intp], FloatArray]] = []
        all_truncated: list[bool] = []
        for start in range(0, len(texts), TOKENIZE_WINDOW):
            began = time.perf_counter()
            feeds, truncated = self.encode(texts[start : start + TOKENIZE_WINDOW])
            ids, mask = feeds["input_ids"], feeds["attention_mask"]
            lengths = mask.sum(axis=1).tolist()
            tokenized = time.perf_counter()
            for run in plan_runs(lengths, MAX_RUN_BATCH):
                rows = np.array(run, dtype=np.intp)
                # Padding is at the end, so the run's longest text bounds its columns.
                longest = max(lengths[index] for index in run)
                run_feeds = {
                    "input_ids": ids[rows, :longest],
                    "attention_mask": mask[rows, :longest],
                }
                (out,) = self.session.run([self._output], run_feeds)
                pieces.append((start + rows, np.asarray(out, dtype=np.float32)))
            if timing is not None:
                timing.tokenize_s += tokenized - began
                timing.infer_s += time.perf_counter() - tokenized
            all_truncated.extend(truncated)
        if not pieces:
            return np.zeros((0, width), dtype=np.float32), []
        # The graph's own width, not `width`: the warm-up checks it against the manifest.
        output = np.empty((len(texts), pieces[0][1].shape[1]), dtype=np.float32)
        for rows, out in pieces:
            output[rows] = out
        return output, all_truncated

    def check_longest_input(self, model_file: str) -> FloatArray:
        """Run max_seq_len tokens (the longest the tokenizer hands over): the warm-up, and a
        check that the graph takes them."""
        longest = " ".join(["warm up"] * self.manifest.max_seq_len)
        try:
            out, _ = self.run([longest], 0)
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            raise BundleError(
                f"{self.bundle_dir / model_file}: fails on {self.manifest.max_seq_len} tokens "
                f"(max_seq_len too long for the graph?): {error}"
            ) from error
        return out


@dataclass(frozen=True)
class OpenedBundle:
    """A verified bundle's manifest, tokenizer and the session of the graph chosen to run."""

    bundle_dir: Path
    manifest: Manifest
    tokenizer: Tokenizer
    precision: str
    model_file: str
    session: ort.InferenceSession


def open_bundle(
    bundle_dir: Path,
    *,
    embedding: bool,
    precision: Precision,
    threads: int | None,
    keyring: Verifier | None,
) -> OpenedBundle:
    """verify_bundle, the right kind (an embedding bundle or a classifier), then the tokenizer
    and the graph from the bytes that were verified; BundleError for anything wrong."""
    manifest = verify_bundle(bundle_dir, keyring)
    if (manifest.task == "embedding") != embedding:
        wanted = "an embedding bundle" if embedding else "a classifier"
        found = "an embedding" if manifest.task == "embedding" else f"a {manifest.task}"
        raise BundleError(f"{bundle_dir}: {found} bundle, not {wanted}")
    tokenizer = load_tokenizer(
        bundle_dir / TOKENIZER_FILE,
        manifest.max_seq_len,
        data=read_verified(bundle_dir, manifest, TOKENIZER_FILE),
    )
    chosen, model_file, session = choose_precision(
        bundle_dir,
        manifest,
        tokenizer,
        precision=precision,
        threads=threads,
        output=EMBEDDINGS_NAME if embedding else OUTPUT_NAME,
    )
    return OpenedBundle(bundle_dir, manifest, tokenizer, chosen, model_file, session)


def _timing_feeds(tokenizer: Tokenizer, seq_len: int) -> dict[str, npt.NDArray[np.int64]]:
    """One text of about `seq_len` real tokens: what the daemon mostly runs."""
    encoding = tokenizer.encode(" ".join(["warm up"] * seq_len))
    ids = encoding.ids[:seq_len]
    return {
        "input_ids": np.array([ids], dtype=np.int64),
        "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
    }


def _time_session(session: ort.InferenceSession, feeds: dict[str, npt.NDArray[np.int64]]) -> float:
    """Median seconds for one run of `feeds`."""
    output = [session.get_outputs()[0].name]
    session.run(output, feeds)  # first run allocates; not representative
    times = []
    for _ in range(_TIMING_ROUNDS):
        start = time.perf_counter()
        session.run(output, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def choose_precision(
    bundle_dir: Path,
    manifest: Manifest,
    tokenizer: Tokenizer,
    *,
    precision: Precision,
    threads: int | None,
    output: str,
) -> tuple[str, str, ort.InferenceSession]:
    """(precision, file, session): auto times both graphs when the bundle has both."""
    if precision not in ("auto", "int8", "fp32"):
        raise ValueError(f"precision must be auto, int8 or fp32, not {precision!r}")
    has_fp32 = FP32_MODEL_FILE in manifest.files

    def session(name: str) -> ort.InferenceSession:
        # From the bytes whose hash was checked, not from the path again (verify.py).
        data = read_verified(bundle_dir, manifest, name)
        return open_session(bundle_dir / name, threads, output, model_bytes=data)

    if precision == "fp32":
        if not has_fp32:
            raise BundleError(f"{bundle_dir / FP32_MODEL_FILE}: fp32 requested but not in bundle")
        return "fp32", FP32_MODEL_FILE, session(FP32_MODEL_FILE)
    int8 = session(MODEL_FILE)
    if precision == "int8" or not has_fp32:
        return "int8", MODEL_FILE, int8
    fp32 = session(FP32_MODEL_FILE)
    feeds = _timing_feeds(tokenizer, min(32, manifest.max_seq_len))
    int8_s, fp32_s = _time_session(int8, feeds), _time_session(fp32, feeds)
    chosen = "int8" if int8_s <= fp32_s else "fp32"
    log.info(
        "precision_chosen",
        model=manifest.name,
        version=manifest.version,
        precision=chosen,
        int8_ms=round(int8_s * 1e3, 3),
        fp32_ms=round(fp32_s * 1e3, 3),
    )
    if chosen == "int8":
        return "int8", MODEL_FILE, int8
    return "fp32", FP32_MODEL_FILE, fp32
