"""What the end-to-end benches run: texts, a bundle, the agent's config and its process.

Shared by bench/e2e_bench.py, bench/fixed_rates.py and bench/soak.py, so that every
latency they print comes from the same agent set-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import yaml

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.broker import Broker  # noqa: E402  (after the path set-up)

LABELS: Final = ("negative", "positive")
MAX_SEQ_LEN: Final = 128
# The agent's one route subscribes to bench/in/+; the benches publish on this topic of it.
TOPIC: Final = "bench/in/s"
FALLBACK_TEXTS: Final = (
    "a gorgeous , witty , seductive movie .",
    "the plot is nothing but boilerplate clichés from start to finish",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
)


def sentences(limit: int = 4000) -> tuple[list[str], str]:
    root = Path(os.environ.get("EDGE_AGENT_DATASETS", REPO.parent / "shared" / "datasets"))
    path = root / "sst2" / "train.tsv"
    if not path.is_file():
        return list(FALLBACK_TEXTS), "built-in sentences"
    lines = path.read_text(encoding="utf-8").splitlines()[1 : limit + 1]
    return [line.rsplit("\t", 1)[0].strip() for line in lines], "SST-2 train sentences"


def build_random_checkpoint(folder: Path, seed: int = 0) -> Path:
    """SqueezeBERT of the shipped shape with random weights + a BERT uncased tokenizer."""
    import torch
    from transformers import AutoTokenizer, SqueezeBertForSequenceClassification

    from edge_agent.toolkit.train.minilm import minilm_dir, squeezebert_config

    if (folder / "config.json").is_file():
        return folder
    config = squeezebert_config(num_labels=len(LABELS))  # hidden 384, 6 layers, groups 4
    config.id2label = dict(enumerate(LABELS))
    config.label2id = {label: index for index, label in enumerate(LABELS)}
    torch.manual_seed(seed)
    model = SqueezeBertForSequenceClassification(config)
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(str(folder))
    return folder


def build_bundle(checkpoint: Path, models_dir: Path, texts: Sequence[str]) -> Path:
    from edge_agent.toolkit.export.pack import pack_bundle
    from edge_agent.toolkit.export.quantize import quantize_int8
    from edge_agent.toolkit.export.to_onnx import export_onnx, load_checkpoint_tokenizer

    existing = models_dir / "sentiment" / "0.0.1"
    if existing.is_dir():
        return existing
    with tempfile.TemporaryDirectory() as work:
        fp32 = export_onnx(checkpoint, Path(work) / "model.fp32.onnx")
        int8 = quantize_int8(fp32, Path(work) / "model.onnx")
        return pack_bundle(
            models_dir,
            name="sentiment",
            version="0.0.1",
            task="single-label",
            labels=list(LABELS),
            max_seq_len=MAX_SEQ_LEN,
            model=int8,
            fp32_model=fp32,
            tokenizer=load_checkpoint_tokenizer(checkpoint),
            golden_texts=list(texts[:8]),
            metrics={},
            card={
                "intended_use": "benchmarking only: random weights",
                "training_data": "none",
                "limitations": "meaningless predictions",
            },
        )


def prepare_bundle(bundle: Path | None, work: Path, texts: Sequence[str]) -> tuple[Path, str]:
    """--bundle, else the shipped default model, else a random one of the shipped shape."""
    shipped = REPO / "models" / "sentiment"
    if bundle is not None:
        return bundle.resolve(), f"bundle {bundle}"
    if shipped.is_dir():
        from edge_agent.bundle.versions import resolve_bundle

        return resolve_bundle(REPO / "models", "sentiment"), "shipped model"
    log("no shipped model: a random-weight SqueezeBERT of the shipped shape (built once)")
    checkpoint = build_random_checkpoint(work / "checkpoint")
    built = build_bundle(checkpoint, work / "models", texts)
    return built, "random weights, shipped shape (hidden 384, 6 layers, groups 4)"


def write_agent_config(
    work: Path,
    broker: Broker,
    bundle: Path,
    batching: dict[str, int] | None = None,
    metrics_port: int | None = None,
) -> Path:
    """The default config but for the broker, one route to the bundle, and state in work
    (and `batching` keys, e.g. {"max_batch": 4}, where a bench compares them; the
    Prometheus endpoint on `metrics_port`, where a bench reads the agent's stages)."""
    config = work / "agent.yaml"
    settings: dict[str, object] = {
        "broker": {"host": broker.host, "port": broker.port, "client_id": "bench"},
        "routes": [{"subscribe": "bench/in/+", "model": bundle.parent.name}],
        "models": {"dir": str(bundle.parent.parent)},
        "state_dir": str(work / "state"),
    }
    if batching:
        settings["batching"] = batching
    if metrics_port is not None:
        settings["metrics"] = {"enabled": True, "port": metrics_port}
    config.write_text(yaml.safe_dump(settings))
    return config


def agent_starter(work: Path, config: Path) -> Callable[[dict[str, str]], subprocess.Popen[bytes]]:
    """What `measure` calls to start the agent on `config` (with extra environment, e.g.
    NOTIFY_SOCKET), its output in work/agent.log."""
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def start(extra: dict[str, str]) -> subprocess.Popen[bytes]:
        with (work / "agent.log").open("wb") as out:
            command = [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]
            return subprocess.Popen(command, env={**env, **extra}, stdout=out, stderr=out)

    return start


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
