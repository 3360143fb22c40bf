"""`edge-agent model train` on its default path, on real text: the MiniLM teacher, the grouped
student fitted to it, distillation, vocabulary pruning, export, INT8 and pack, with a short
schedule on a few hundred CLINC150 queries (from ../shared/datasets, as the recipes read it)
plus rows with rare word pieces and non-ASCII characters. The packed bundle, loaded by the
engine, must reproduce the accuracy written on its card: before, the figures came from the
unpruned tokenizer, shifted every id by up to 994, and a rare piece (`##£`) crashed the run
after training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from edge_agent.engine.classifier import load_classifier
from recipes.task_data import datasets_dir

INTENTS = ("balance", "exchange_rate", "weather", "alarm", "translate", "timer")
RARE = {  # pieces past the end of the pruned vocabulary, accents, symbols, emoji
    "exchange_rate": ["how many € is £20", "what's ¥1000 in £ today", "£ to ₹ rate please"],
    "weather": ["is it snowing in Zürich ❄️", "weather for São Paulo tomorrow"],
    "translate": ["how do you say naïve café in french", "translate 'smörgåsbord' for me"],
}


def _rows(part: list[list[str]], per_intent: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for intent in INTENTS:
        rows += [(text, label) for text, label in part if label == intent][:per_intent]
    return rows


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "intent"])
        writer.writerows(rows)
    return path


def test_the_default_path_on_real_text_reproduces_its_card(tmp_path: Path) -> None:
    from tests.integration.toolkit.test_model_train import run_train

    clinc = datasets_dir() / "clinc150" / "data_train_val.json"
    if not clinc.is_file():
        pytest.skip(f"{clinc} not found (the shared datasets; EDGE_AGENT_DATASETS overrides)")
    data = json.loads(clinc.read_text(encoding="utf-8"))
    train = _rows(data["train"], 40) + [(t, label) for label, ts in RARE.items() for t in ts]
    validation = [
        *_rows(data["val"], 10),
        ("convert £5 to € for me", "exchange_rate"),
        ("Zürich weather this weekend ☀️", "weather"),
    ]
    models = tmp_path / "models"
    result = run_train(
        str(_write(tmp_path / "train.csv", train)),
        "--validation", str(_write(tmp_path / "val.csv", validation)),
        "--label-column", "intent", "--name", "clinc6", "--models-dir", str(models),
        "--epochs", "1", "--threads", "2", "--work", str(tmp_path / "work"),
        progress=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for step in ("dense_teacher", "grouped_init", "distilled_student"):  # the default path
        assert f"{step}: validation" in result.stdout, result.stdout
    # A user sees each step start and each evaluation as it happens, then one summary.
    for header in ("[1/4] dense teacher", "[2/4] grouped", "[3/4] grouped", "[4/4] export"):
        assert header in result.stdout, result.stdout
    assert "  epoch 1.00: validation" in result.stdout
    summary = result.stdout[result.stdout.index("\nsummary\n") :]
    assert f"bundle: {models / 'clinc6' / '1.0.0'}" in summary and "took " in summary
    bundle = models / "clinc6" / "1.0.0"
    manifest = json.loads((bundle / "manifest.json").read_text())
    classifier = load_classifier(bundle, precision="int8", threads=1)
    texts = [text for text, _ in validation]
    predicted = [p.label for p in classifier.classify(texts)]
    correct = sum(p == label for p, (_, label) in zip(predicted, validation, strict=True))
    assert manifest["metrics"]["validation_rows"] == len(validation)
    assert correct / len(validation) == pytest.approx(manifest["metrics"]["accuracy"], abs=1e-9)
    assert manifest["metrics"]["accuracy"] > 1 / len(INTENTS)  # it learned something
    # The dense teacher's figure is on the card; a student far below it says so, there and
    # in the output.
    metrics = manifest["metrics"]
    behind = metrics["teacher_validation"] - metrics["accuracy"] > 0.015
    assert behind == ("points below its dense teacher" in manifest["card"]["limitations"])
    assert behind == ("note: the INT8 student scores" in result.stdout)
    assert f"dense teacher on validation: {metrics['teacher_validation']:.4f}" in result.stdout
    # The rare pieces reach the graph as ids inside its (pruned) embedding table.
    vocabulary = classifier.tokenizer.get_vocab_size()
    for text in texts:
        assert max(classifier.tokenizer.encode(text).ids) < vocabulary
