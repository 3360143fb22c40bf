"""Example-defined labels answered like a trained model: an encoder, an examples file and the
rule fitted on the examples' embeddings, behind the same `classify` a Classifier has.

A labeller is immutable: it keeps the encoder it was built with, so a new encoder version or
an edited examples file yields a new labeller, swapped in between batches like a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_agent.bundle.manifest import Manifest, OutOfScopeRule
from edge_agent.engine.encoder import Encoder
from edge_agent.engine.prediction import ClassifyTiming, LabelScore, Prediction
from edge_agent.labels.examples import ExampleSet, read_examples
from edge_agent.labels.rule import OTHER, FittedRule, fit_rule

# The reject rule's score kind on a labeller's manifest: cosine similarity to the chosen
# label's examples (edge_agent/labels/rule.py).
SIMILARITY: str = "similarity"


class ExampleLabeller:
    def __init__(
        self, key: str, encoder: Encoder, examples: ExampleSet, rule: FittedRule, source: Path
    ) -> None:
        self.key = key
        self.encoder = encoder
        self.examples = examples
        self.rule = rule
        self.source = source
        self._names = examples.names
        # What labels the results: the encoder's version and the examples file's revision.
        self._identity = (
            encoder.manifest.name,
            f"{encoder.manifest.version}+labels.{examples.revision}",
        )
        # Describes the label set the way a bundle's manifest describes a model, for the
        # status, info and Home Assistant topics.
        self.manifest = Manifest(
            name=encoder.manifest.name,
            version=self._identity[1],
            task="single-label",
            labels=self._names,
            max_seq_len=encoder.manifest.max_seq_len,
            files={},
            reject=OutOfScopeRule(examples.other, rule.threshold, SIMILARITY),
        )

    def classify(
        self, texts: Sequence[str], top_k: int = 3, timing: ClassifyTiming | None = None
    ) -> list[Prediction]:
        embeddings, truncated = self.encoder.embed(texts, timing)
        decided, probabilities = self.rule.decide(embeddings, texts)
        predictions = []
        for choice, row, cut in zip(decided, probabilities, truncated, strict=True):
            order = np.argsort(-row, kind="stable")[: max(top_k, 1)]
            ranked = tuple(LabelScore(self._names[i], float(row[i])) for i in order)
            label = self.examples.other if choice == OTHER else self._names[int(choice)]
            predictions.append(
                Prediction(label, ranked[0].score, ranked[:top_k], (label,), cut, *self._identity)
            )
        return predictions


def embed_examples(
    encoder: Encoder, examples: ExampleSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(example embeddings, their label index, negative examples' embeddings or None)."""
    texts = examples.texts
    targets = np.array(
        [index for index, label in enumerate(examples.labels) for _ in label.examples],
        dtype=np.int64,
    )
    negatives = examples.negative_texts
    embedded, _ = encoder.embed(texts + negatives)
    return embedded[: len(texts)], targets, embedded[len(texts) :] if negatives else None


def build_labeller(key: str, encoder: Encoder, path: Path) -> ExampleLabeller:
    """Read `path`, embed its examples with `encoder` and fit the rule; LabelsError for a
    file that cannot be used."""
    examples = read_examples(path)
    embedded, targets, negatives = embed_examples(encoder, examples)
    rule = fit_rule(
        embedded,
        targets,
        len(examples.labels),
        negatives,
        examples.threshold,
        texts=examples.texts,
        negative_texts=examples.negative_texts,
    )
    return ExampleLabeller(key, encoder, examples, rule, path)
