"""The CLI edges: classify, check-config, and startup failures (exit 3, one clear line)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.agent_process import run_cli, write_config


def test_classify_arguments_and_stdin(models_dir: Path) -> None:
    done = run_cli("classify", "--models-dir", str(models_dir), "--model", "tiny", "good", "bad")
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == 2
    assert all(
        r["label"] in ("negative", "positive") and r["model"]["name"] == "tiny" for r in results
    )
    bundle = models_dir / "topics" / "1.0.0"
    piped = run_cli("classify", "--bundle", str(bundle), stdin="door open\n\nlights off\n")
    lines = [json.loads(line) for line in piped.stdout.splitlines()]
    assert [("error" in line) for line in lines] == [False, True, False]
    assert lines[1]["error"]["code"] == "empty_text"


def test_check_config_prints_effective_config(tmp_path: Path, models_dir: Path) -> None:
    config = write_config(tmp_path / "a.yaml", broker_port=1, models_dir=models_dir, client_id="c")
    done = run_cli("check-config", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "client_id: c" in done.stdout and "receive_maximum: 64" in done.stdout


def test_startup_failures_exit_3_with_one_line(tmp_path: Path, models_dir: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "routes:\n  - {subscribe: a/+, model: m}\n  - {subscribe: b/+, model: m, qos: x}\n"
    )
    for command in ("check-config", "run"):
        done = run_cli(command, "--config", str(bad))
        assert done.returncode == 3
        assert done.stderr.strip().splitlines() == [
            "edge-agent: config error: routes[1].qos: expected 0, 1 or 2, got 'x'"
        ]
    missing = write_config(
        tmp_path / "m.yaml",
        broker_port=1,
        models_dir=models_dir,
        client_id="c",
        routes=[{"subscribe": "a/+", "model": "no-such-model"}],
    )
    done = run_cli("run", "--config", str(missing))
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1 and "no-such-model" in done.stderr
    assert done.stdout == ""  # nothing started, nothing logged
