"""The encoder: an embedding bundle's tokenizer and graph behind `embed(texts)`.

An embedding bundle (manifest `task: embedding`) maps texts to L2-normalised sentence
embeddings, output `embeddings` [batch, dim]. It labels nothing by itself: example-defined
labels (edge_agent/labels) turn its embeddings into results. Like a classifier it is built
fully or not at all: hashes (and signature), interface, golden embeddings and a warm-up pass
before `load_encoder` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from edge_agent.bundle.layout import FP32_MODEL_FILE, BundleError
from edge_agent.bundle.verify import Verifier
from edge_agent.engine.prediction import ClassifyTiming
from edge_agent.engine.runner import BundleRunner, FloatArray, Precision, open_bundle

# Golden embeddings are model.onnx's and must come back this close (cosine). INT8 kernels
# round differently on AVX2, AVX-512 VNNI and ARM; with static activation scales their scores
# agree within 1e-3, and a cosine of 0.999 still tells a different or damaged graph apart.
GOLDEN_MIN_COSINE: Final = 0.999
# The fp32 graph differs from INT8 by quantization (median cosine 0.996, 5th percentile 0.987
# for encoder 1.0.0), so it is held to a looser bound that a wrong graph still fails.
GOLDEN_MIN_COSINE_FP32: Final = 0.95


class Encoder(BundleRunner):
    """Sentence embeddings from an embedding bundle."""

    @property
    def dimension(self) -> int:
        return int(self.session.get_outputs()[0].shape[1])

    def embed(
        self, texts: Sequence[str], timing: ClassifyTiming | None = None
    ) -> tuple[FloatArray, list[bool]]:
        """Normalised embeddings [len(texts), dim] and truncation flags."""
        vectors, truncated = self.run(texts, self.dimension, timing)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: FloatArray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised, truncated


def check_golden_embeddings(encoder: Encoder, model_file: str) -> None:
    """Each golden text's embedding within GOLDEN_MIN_COSINE of the recorded one (the fp32
    graph: GOLDEN_MIN_COSINE_FP32)."""
    bound = GOLDEN_MIN_COSINE_FP32 if model_file == FP32_MODEL_FILE else GOLDEN_MIN_COSINE
    for example in encoder.manifest.golden:
        if example.embedding is None:
            continue
        expected = np.asarray(example.embedding, dtype=np.float32)
        (got,), _ = encoder.embed([example.text])
        if got.shape != expected.shape:
            raise BundleError(
                f"{encoder.bundle_dir / model_file}: golden embedding has {expected.shape[0]} "
                f"values, the graph gives {got.shape[0]}"
            )
        cosine = float(got @ expected / max(float(np.linalg.norm(expected)), 1e-12))
        if cosine < bound:
            raise BundleError(
                f"{encoder.bundle_dir / model_file}: golden example {example.text[:40]!r} "
                f"embeds at cosine {cosine:.4f} from the recorded one (need >= {bound})"
            )


def load_encoder(
    bundle_dir: Path,
    *,
    precision: Precision = "auto",
    threads: int | None = None,
    keyring: Verifier | None = None,
) -> Encoder:
    """Load an embedding bundle fully or raise BundleError."""
    opened = open_bundle(
        Path(bundle_dir), embedding=True, precision=precision, threads=threads, keyring=keyring
    )
    bundle_dir, session, model_file = opened.bundle_dir, opened.session, opened.model_file
    encoder = Encoder(opened.manifest, opened.tokenizer, session, opened.precision, bundle_dir)
    shape = session.get_outputs()[0].shape
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise BundleError(
            f"{bundle_dir / model_file}: embeddings must be [batch, dim], got {shape}"
        )
    encoder.check_longest_input(model_file)
    check_golden_embeddings(encoder, model_file)
    return encoder
