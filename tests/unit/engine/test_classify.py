"""The engine on real tiny bundles: predictions, post-processing, precision, truncation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edge_agent.bundle.layout import BundleError
from edge_agent.bundle.manifest import load_manifest
from edge_agent.engine.classifier import load_classifier
from edge_agent.engine.session import inference_layout, physical_cores, session_options
from tests.support.bundles import SAMPLE_TEXTS, edit_manifest


def test_single_label_scores_are_a_distribution_ranked_in_top_k(tiny_dir: Path) -> None:
    classifier = load_classifier(tiny_dir, precision="int8")
    predictions = classifier.classify(SAMPLE_TEXTS, top_k=2)
    assert len(predictions) == len(SAMPLE_TEXTS)
    for prediction in predictions:
        scores = [item.score for item in prediction.top_k]
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)
        assert scores == sorted(scores, reverse=True)
        assert prediction.label == prediction.top_k[0].label
        assert prediction.score == prediction.top_k[0].score
        assert prediction.labels == (prediction.label,)
        assert not prediction.truncated
    # The random tiny model still tells texts apart: both labels occur.
    assert {p.label for p in predictions} == {"negative", "positive"}


def test_top_k_is_capped_by_the_request(tiny_dir: Path) -> None:
    classifier = load_classifier(tiny_dir, precision="fp32")
    (prediction,) = classifier.classify(["the movie was great fun"], top_k=1)
    assert len(prediction.top_k) == 1


def test_batching_pads_without_changing_fp32_results(tiny_dir: Path) -> None:
    classifier = load_classifier(tiny_dir, precision="fp32")
    together = classifier.classify(SAMPLE_TEXTS)
    alone = [classifier.classify([text])[0] for text in SAMPLE_TEXTS]
    for a, b in zip(together, alone, strict=True):
        assert a.label == b.label
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_int8_agrees_with_fp32_on_labels(tiny_dir: Path) -> None:
    int8 = load_classifier(tiny_dir, precision="int8")
    fp32 = load_classifier(tiny_dir, precision="fp32")
    assert (int8.precision, fp32.precision) == ("int8", "fp32")
    same = sum(
        a.label == b.label
        for a, b in zip(int8.classify(SAMPLE_TEXTS), fp32.classify(SAMPLE_TEXTS), strict=True)
    )
    assert same >= len(SAMPLE_TEXTS) - 1


def test_auto_precision_picks_one_of_the_two_graphs(tiny_dir: Path, tiny_models: Path) -> None:
    assert load_classifier(tiny_dir).precision in {"int8", "fp32"}
    assert load_classifier(tiny_models / "int8only" / "1.0.0").precision == "int8"


def test_fp32_requested_without_fp32_graph_names_the_file(tiny_models: Path) -> None:
    with pytest.raises(BundleError, match=r"model\.fp32\.onnx"):
        load_classifier(tiny_models / "int8only" / "1.0.0", precision="fp32")


def test_long_text_is_truncated_and_flagged(tiny_dir: Path) -> None:
    classifier = load_classifier(tiny_dir, precision="int8")
    long_text = " ".join(["sensor"] * 500)
    short, long = classifier.classify(["door open", long_text])
    assert not short.truncated
    assert long.truncated
    feeds, _ = classifier.encode([long_text])
    assert feeds["input_ids"].shape == (1, classifier.manifest.max_seq_len)


def test_odd_texts_classify_without_error(tiny_dir: Path) -> None:
    classifier = load_classifier(tiny_dir, precision="int8")
    texts = ["", " ", "\u0000", "日本語のテキスト", "🙂" * 50, "a" * 10_000]
    predictions = classifier.classify(texts)
    assert [p.label in classifier.manifest.labels for p in predictions] == [True] * len(texts)
    assert classifier.classify([]) == []


def test_more_texts_than_one_run_batch(tiny_dir: Path) -> None:
    classifier = load_classifier(tiny_dir, precision="int8")
    texts = [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)] for i in range(70)]
    predictions = classifier.classify(texts)
    assert [p.label for p in predictions[:12]] == [p.label for p in predictions[12:24]]
    assert len(predictions) == 70


def test_multi_label_uses_sigmoid_and_per_label_thresholds(multi_dir: Path, tmp_path: Path) -> None:
    classifier = load_classifier(multi_dir, precision="fp32")
    predictions = classifier.classify(SAMPLE_TEXTS, top_k=3)
    for prediction in predictions:
        above = {item.label for item in prediction.top_k if item.score >= 0.5}
        assert set(prediction.labels) == above
        assert all(0.0 <= item.score <= 1.0 for item in prediction.top_k)
    # Raise one label's threshold above every score it gets: it never appears any more.
    copy = tmp_path / "multi" / "1.0.0"
    import shutil

    shutil.copytree(multi_dir, copy)
    edit_manifest(copy, thresholds={"alarm": 1.0, "door": 0.0})
    strict = load_classifier(copy, precision="fp32").classify(SAMPLE_TEXTS)
    assert all("alarm" not in p.labels for p in strict)
    assert all("door" in p.labels for p in strict)


def test_reject_turns_unsure_predictions_into_the_reject_label(tiny_copy: Path) -> None:
    edit_manifest(tiny_copy, reject={"label": "oos", "threshold": 0.9}, golden=[])
    classifier = load_classifier(tiny_copy, precision="fp32")
    predictions = classifier.classify(SAMPLE_TEXTS)
    for prediction in predictions:
        expected = "oos" if prediction.score < 0.9 else prediction.top_k[0].label
        assert prediction.label == expected
        assert prediction.labels == (expected,)
    assert any(p.label == "oos" for p in predictions)
    assert any(p.label != "oos" for p in predictions)


def test_energy_reject_answers_the_reject_label_for_weak_responses(tiny_copy: Path) -> None:
    plain = load_classifier(tiny_copy, precision="fp32")
    logits, _ = plain.logits(SAMPLE_TEXTS)
    # log-sum-exp of every label's logits (the tiny model has no `oos` class of its own)
    energy = np.log(np.exp(logits.astype(np.float64)).sum(axis=1))
    threshold = float(np.median(energy))
    reject = {"label": "oos", "threshold": threshold, "score": "energy"}
    edit_manifest(tiny_copy, reject=reject, golden=[])
    predictions = load_classifier(tiny_copy, precision="fp32").classify(SAMPLE_TEXTS)
    for prediction, text_energy in zip(predictions, energy, strict=True):
        expected = "oos" if text_energy < threshold else prediction.top_k[0].label
        assert prediction.label == expected
    assert {p.label == "oos" for p in predictions} == {True, False}


def test_session_options_default_to_physical_cores_and_no_inter_op_pool() -> None:
    options = session_options()
    assert options.intra_op_num_threads == physical_cores() >= 1
    assert options.inter_op_num_threads == 1
    assert session_options(3).intra_op_num_threads == 3


def test_the_daemon_runs_one_single_threaded_batch_per_core_unless_told_otherwise() -> None:
    cores = physical_cores()
    assert inference_layout(None, None) == (cores, 1)
    assert inference_layout(1, None) == (1, cores)  # one batch at a time gets every core
    assert inference_layout(cores + 3, None) == (cores + 3, 1)
    assert inference_layout(None, 2) == (cores, 2)
    assert inference_layout(3, 4) == (3, 4)


def test_one_classifier_serves_batches_from_several_threads_at_once(tiny_dir: Path) -> None:
    # The daemon's classifying threads share one classifier (one session, one tokenizer).
    classifier = load_classifier(tiny_dir, precision="int8", threads=1)
    batches = [list(SAMPLE_TEXTS[i:] + SAMPLE_TEXTS[:i]) for i in range(len(SAMPLE_TEXTS))]
    alone = [classifier.logits(batch)[0] for batch in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda batch: classifier.logits(batch)[0], batches * 8))
    for index, logits in enumerate(together):
        np.testing.assert_array_equal(logits, alone[index % len(batches)])


def test_logits_match_the_label_count(tiny_dir: Path) -> None:
    classifier = load_classifier(tiny_dir, precision="int8")
    logits, truncated = classifier.logits(SAMPLE_TEXTS[:3])
    assert logits.shape == (3, len(load_manifest(tiny_dir).labels))
    assert logits.dtype == np.float32
    assert truncated == [False, False, False]
