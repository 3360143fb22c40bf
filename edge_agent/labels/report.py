"""How well an examples file's labels separate, per label: what `edge-agent labels check`
prints so that a user sees which labels need more (or more distinct) examples. Pure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_agent.labels.examples import ExampleSet
from edge_agent.labels.lexical import fit_lexical
from edge_agent.labels.rule import FloatArray, centroids_of, leave_one_out


@dataclass(frozen=True)
class LabelReport:
    label: str
    examples: int
    # Share of its examples that the other examples put back under this label (nearest
    # centroid without the example, word overlap counted as the rule counts it); None with a
    # single example.
    leave_one_out: float | None
    nearest_label: str | None  # the most similar other label (centroid cosine)
    nearest_similarity: float | None
    confused_with: tuple[str, ...]  # labels its left-out examples went to instead


def separability(
    examples: ExampleSet, embeddings: FloatArray, targets: np.ndarray
) -> list[LabelReport]:
    count = len(examples.labels)
    centroids = centroids_of(embeddings, targets, count)
    similarity = centroids @ centroids.T
    np.fill_diagonal(similarity, -np.inf)
    texts = examples.texts
    words = fit_lexical(texts, targets, count)
    held_out = leave_one_out(embeddings, targets, count, words, texts)
    names = examples.names
    reports = []
    for index, label in enumerate(examples.labels):
        mine = targets == index
        nearest = int(similarity[index].argmax()) if count > 1 else None
        wrong = held_out.nearest[mine]
        reports.append(
            LabelReport(
                label=label.name,
                examples=int(mine.sum()),
                leave_one_out=float((wrong == index).mean()) if mine.sum() > 1 else None,
                nearest_label=names[nearest] if nearest is not None else None,
                nearest_similarity=(
                    float(similarity[index, nearest]) if nearest is not None else None
                ),
                confused_with=tuple(
                    dict.fromkeys(names[int(i)] for i in wrong if i != index and mine.sum() > 1)
                ),
            )
        )
    return reports
