"""`edge-agent model train` end to end: a few training steps on synthetic data produce a bundle
the engine loads (hashes, golden examples) and serves, with the report's metrics in its manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.bundle.layout import BundleError
from edge_agent.engine.classifier import load_classifier
from tests.support.agent_process import REPO_ROOT as REPO


def run_train(*args: str, progress: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    quiet = [] if progress else ["--no-progress"]
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "model", "train", *args, *quiet],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def sentiment_bundle(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, sentiment_csv: Path
) -> tuple[Path, str]:
    models = tmp_path_factory.mktemp("models")
    result = run_train(
        str(sentiment_csv),
        "--text-column",
        "message",
        "--label-column",
        "sentiment",
        "--base",
        str(tiny_base),
        "--name",
        "tiny-sentiment",
        "--models-dir",
        str(models),
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--patience",
        "8",
        "--learning-rate",
        "1e-3",
        "--max-seq-len",
        "32",
        "--intended-use",
        "tests",
        "--limitations",
        "synthetic keywords only",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return models / "tiny-sentiment" / "1.0.0", result.stdout


def test_trained_bundle_loads_and_serves(sentiment_bundle: tuple[Path, str]) -> None:
    bundle, _ = sentiment_bundle
    classifier = load_classifier(bundle, precision="int8", threads=1)  # checks golden + hashes
    assert classifier.manifest.labels == ("negative", "positive")
    assert not (bundle / "model.fp32.onnx").exists()  # only the INT8 graph ships
    predictions = classifier.classify(["the movie was great fun", "a terrible boring plot"])
    assert [p.label for p in predictions] == ["positive", "negative"]


def test_manifest_carries_the_reported_metrics(sentiment_bundle: tuple[Path, str]) -> None:
    bundle, stdout = sentiment_bundle
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    metrics = manifest["metrics"]
    # The keyword task is learnable in a few steps: well above chance on held-out rows.
    assert metrics["accuracy"] >= 0.9
    assert 0.0 <= metrics["int8_fp32_agreement"] <= 1.0
    assert f"accuracy {metrics['accuracy']:.4f}" in stdout
    assert "INT8 vs fp32 agreement" in stdout and "precision" in stdout
    assert manifest["golden"], "golden examples are written"
    assert manifest["card"]["limitations"] == "synthetic keywords only"
    assert "reviews.csv" in manifest["card"]["training_data"]


def test_altered_golden_score_is_refused_on_load(
    sentiment_bundle: tuple[Path, str], tmp_path: Path
) -> None:
    import shutil

    bundle, _ = sentiment_bundle
    copy = tmp_path / "tiny-sentiment" / "1.0.0"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["golden"][0]["score"] = manifest["golden"][0]["score"] - 0.05
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError):
        load_classifier(copy, precision="int8", threads=1)


def test_multi_label_jsonl(tmp_path: Path, tiny_base: Path, topics_jsonl: Path) -> None:
    result = run_train(
        str(topics_jsonl),
        "--label-column",
        "topics",
        "--multi-label",
        "--base",
        str(tiny_base),
        "--name",
        "tiny-topics",
        "--models-dir",
        str(tmp_path),
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--patience",
        "8",
        "--learning-rate",
        "1e-3",
        "--max-seq-len",
        "32",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    classifier = load_classifier(tmp_path / "tiny-topics" / "1.0.0", threads=1)
    assert classifier.manifest.task == "multi-label"
    assert classifier.manifest.labels == ("alarm", "none", "weather")
    assert "micro-F1" in result.stdout


def test_missing_column_is_one_clear_line(tmp_path: Path, sentiment_csv: Path) -> None:
    result = run_train(str(sentiment_csv), "--name", "x", "--models-dir", str(tmp_path))
    assert result.returncode == 3
    assert "no column 'text'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_late_failure_keeps_the_checkpoint_and_resume_finishes_without_training(
    tmp_path: Path, tiny_base: Path, sentiment_csv: Path
) -> None:
    """Before: a failure after training (a crash in the measurement, a full disk, a bundle
    folder in the way) lost the trained model with the temporary work folder."""
    common = [
        *(str(sentiment_csv), "--text-column", "message", "--label-column", "sentiment"),
        *("--base", str(tiny_base), "--name", "late", "--epochs", "1", "--max-seq-len", "32"),
    ]
    blocked = tmp_path / "models"
    blocked.write_text("a file where the models folder should be")  # packing fails last
    work = tmp_path / "work"
    failed = run_train(*common, "--models-dir", str(blocked), "--work", str(work))
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert f"checkpoint is kept at {work / 'checkpoint'}" in failed.stderr
    assert "--resume" in failed.stderr
    assert (work / "checkpoint" / "config.json").is_file()

    models = tmp_path / "models-ok"
    resumed = run_train(*common, "--models-dir", str(models), "--work", str(work), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout and "epoch" not in resumed.stdout.lower()
    classifier = load_classifier(models / "late" / "1.0.0")
    assert classifier.classify(["what a great film"])[0].label in ("negative", "positive")
