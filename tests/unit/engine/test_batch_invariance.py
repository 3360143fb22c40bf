"""One text, one answer: a text's INT8 labels and scores do not depend on its batch-mates.

The daemon batches whatever has arrived, so which texts share a run depends on timing. With
activation scales fixed at pack time (toolkit/activation_scales.py) every element of a
text's activations is rounded the same way whatever else is in the batch and however far
it is padded, so the same texts alone, 16 to a run and 32 to a run must give the same
labels and, within 1e-5, the same scores (on this machine they are bit-identical).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from edge_agent.bundle.manifest import load_manifest
from edge_agent.bundle.versions import resolve_bundle
from edge_agent.engine.classifier import Classifier, load_classifier
from tests.support.agent_process import REPO_ROOT
from tests.support.bundles import SAMPLE_TEXTS

SCORE_TOLERANCE = 1e-5
MODELS = REPO_ROOT / "models"
# every shipped classifier, so that a bundle added to models/ is covered without editing here
SHIPPED_CLASSIFIERS = sorted(
    folder.name
    for folder in MODELS.iterdir()
    if folder.is_dir() and load_manifest(resolve_bundle(MODELS, folder.name)).task != "embedding"
)


def _mixed_lengths(seeds: Sequence[str], count: int = 32) -> list[str]:
    """`count` texts from a handful of words to past max_seq_len, lengths interleaved so that
    every run of 16 or 32 pads short texts next to long ones."""
    rng = np.random.default_rng(7)
    words = " ".join(seeds).split()
    texts = list(seeds)
    while len(texts) < count:
        length = int(rng.choice([1, 2, 4, 8, 16, 40, 120]))
        texts.append(" ".join(rng.choice(words, size=length)))
    order = rng.permutation(len(texts))
    return [texts[i] for i in order[:count]]


def _scores(classifier: Classifier, texts: Sequence[str], batch: int) -> np.ndarray:
    """`batch` texts to a session run, each padded to the longest of its run: straight to
    the session, as the engine would plan its runs by length (engine/run_plan.py)."""
    output = [classifier.session.get_outputs()[0].name]
    runs = []
    for start in range(0, len(texts), batch):
        feeds, _ = classifier.encode(texts[start : start + batch])
        runs.append(np.asarray(classifier.session.run(output, feeds)[0]))
    return classifier.scores(np.concatenate(runs))


def _assert_batch_invariant(classifier: Classifier, texts: Sequence[str]) -> None:
    alone = _scores(classifier, texts, 1)
    for batch in (16, 32):
        together = _scores(classifier, texts, batch)
        assert (together.argmax(axis=1) == alone.argmax(axis=1)).all(), batch
        np.testing.assert_allclose(together, alone, rtol=0, atol=SCORE_TOLERANCE)
    # the engine's own runs (texts grouped by length, answers put back in order)
    planned, _ = classifier.logits(texts)
    np.testing.assert_allclose(classifier.scores(planned), alone, rtol=0, atol=SCORE_TOLERANCE)
    # the daemon's answers, reject rule included, from one batch and from texts alone
    batched = [p.label for p in classifier.classify(texts)]
    assert batched == [classifier.classify([text])[0].label for text in texts]


@pytest.mark.parametrize("name", SHIPPED_CLASSIFIERS)
def test_shipped_bundles_answer_a_text_the_same_in_any_batch(name: str) -> None:
    bundle = resolve_bundle(MODELS, name)
    classifier = load_classifier(bundle, precision="int8", threads=1)
    goldens = [example.text for example in classifier.manifest.golden]
    texts = _mixed_lengths(goldens)
    lengths = [len(ids) for ids in classifier.encode(texts)[0]["attention_mask"]]
    assert max(lengths) == classifier.manifest.max_seq_len  # padded to the longest, and cut
    _assert_batch_invariant(classifier, texts)


def test_a_tiny_built_bundle_answers_a_text_the_same_in_any_batch(tiny_dir: Path) -> None:
    classifier = load_classifier(tiny_dir, precision="int8", threads=1)
    _assert_batch_invariant(classifier, _mixed_lengths(SAMPLE_TEXTS))


def test_golden_examples_hold_in_one_batch(tiny_dir: Path) -> None:
    """Goldens are recorded one text per run; with static scales they hold batched too."""
    classifier = load_classifier(tiny_dir, precision="int8", threads=1)
    golden = classifier.manifest.golden
    predictions = classifier.classify([example.text for example in golden])
    for example, prediction in zip(golden, predictions, strict=True):
        assert prediction.label == example.label
        assert prediction.score == pytest.approx(example.score, abs=SCORE_TOLERANCE)
