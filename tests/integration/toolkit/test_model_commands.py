"""The model commands end to end: export -> quantize -> pack -> inspect -> bench."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge_agent.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_quantize_pack_inspect_bench(
    checkpoint: Path, texts_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fp32, int8, models = tmp_path / "fp32.onnx", tmp_path / "int8.onnx", tmp_path / "models"
    code, out, _ = _run(
        ["model", "export", str(checkpoint), "-o", str(fp32), "--texts", str(texts_file)], capsys
    )
    assert code == 0, out
    match = re.search(r"difference\| vs transformers on 14 sentences: (\S+)", out)
    assert match is not None and float(match[1]) <= 1e-4

    tokenizer = checkpoint / "tokenizer.json"
    code, out, err = _run(
        [
            "model",
            "quantize",
            str(fp32),
            "-o",
            str(int8),
            "--tokenizer",
            str(tokenizer),
            "--texts",
            str(texts_file),
            "--calibration",
            str(texts_file),
        ],
        capsys,
    )
    assert code == 0
    assert re.search(r"INT8 argmax agrees with fp32 on \d+\.\d% of 14 sentences", out)
    assert "--calibration" not in err  # calibrated: no hint

    uncalibrated = [
        "model", "quantize", str(fp32), "-o", str(tmp_path / "plain.onnx"),
        "--tokenizer", str(tokenizer), "--texts", str(texts_file), "--weights", "int8",
    ]  # fmt: skip
    code, out, err = _run(uncalibrated, capsys)
    assert code == 0 and "agrees with fp32" in out
    assert "no --calibration texts" in err

    pack = ["model", "pack", "--models-dir", str(models), "--name", "sentiment",
            "--version", "0.1.0", "--labels", "negative,positive", "--max-seq-len", "32",
            "--model", str(int8), "--fp32", str(fp32), "--tokenizer", str(tokenizer),
            "--golden-texts", str(texts_file), "--metric", "accuracy=0.5",
            "--intended-use", "tests"]  # fmt: skip
    code, out, _ = _run(pack, capsys)
    bundle = models / "sentiment" / "0.1.0"
    assert code == 0 and out.strip().splitlines()[-1] == f"wrote {bundle}"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["labels"] == ["negative", "positive"]
    assert set(manifest["files"]) == {"model.onnx", "model.fp32.onnx", "tokenizer.json"}
    assert len(manifest["golden"]) == 4
    assert manifest["metrics"] == {"accuracy": 0.5}

    code, _, err = _run(pack, capsys)  # the same version again is refused
    assert code == 3 and "already exists" in err

    code, out, _ = _run(["model", "inspect", str(models / "sentiment"), "--load"], capsys)
    assert code == 0
    assert "sentiment 0.1.0 (single-label, max 32 tokens)" in out
    assert "load: ok" in out

    code, out, err = _run(
        [
            "bench",
            str(bundle),
            "--batch-sizes",
            "1,2",
            "--seq-lens",
            "8,32,64",
            "--runs",
            "2",
            "--threads",
            "1",
        ],
        capsys,
    )
    assert code == 0
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s+\d+\s", line)]
    assert [(r[0], r[1]) for r in rows] == [("1", "8"), ("1", "32"), ("2", "8"), ("2", "32")]
    assert all(float(r[2]) > 0 and float(r[4]) > 0 for r in rows)
    assert "4/4" in err  # the progress line reached the end


def test_inspect_reports_a_damaged_bundle_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.bundles import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path)
    (bundle / "tokenizer.json").write_text("{}")
    code, _, err = _run(["model", "inspect", str(bundle)], capsys)
    assert code == 3
    assert "tokenizer.json: size" in err


def test_export_of_a_missing_checkpoint_is_a_startup_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["model", "export", str(tmp_path / "nope"), "-o", "x.onnx"], capsys)
    assert code == 3
    assert err.startswith("edge-agent: cannot load checkpoint")
