"""Labels from examples on CLINC150, through the engine and through the daemon.

    PYTHONPATH=. python bench/example_labels.py \
        --clinc150 ../shared/datasets/clinc150/data_train_val.json [--teacher]

(--teacher: the dense all-MiniLM-L6-v2 side by side; needs the toolkit extra.)

For 5 and 10 examples per intent, drawn from CLINC150's training split (seed 0, per intent in
sorted order), it writes an examples file and measures on the validation split (3,000
in-scope queries, 100 out-of-scope):
- accuracy over the 150 intents without rejection, and out-of-scope recall at the threshold
  that rejects 5 % of in-scope queries: in-process, for the shipped INT8 encoder and (with
  --teacher, needs the toolkit extra) for the dense fp32 teacher under the same rule;
- the same two figures through mosquitto and the real agent serving the examples file (once
  without rejection, once with that threshold written into the file), and with the file's
  automatic threshold, which is what a user gets;
- with --teacher, the cosine between the encoder's and the teacher's embeddings of every
  validation query (median and 5th percentile).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_agent.bundle.versions import resolve_bundle  # noqa: E402
from edge_agent.engine.encoder import Encoder, load_encoder  # noqa: E402
from edge_agent.labels.rule import fit_rule  # noqa: E402
from tests.support.agent_process import AgentProcess, write_config  # noqa: E402
from tests.support.broker import Broker  # noqa: E402
from tests.support.mqtt_client import TestClient  # noqa: E402

OOS: Final = "oos"
TOPIC: Final = "bench/device/text"
REJECTED_IN_SCOPE: Final = 5.0  # percent


def draw(train: list[list[str]], per_label: int, seed: int) -> dict[str, list[str]]:
    labels = sorted({label for _, label in train})
    by_label = {label: [text for text, y in train if y == label] for label in labels}
    rng = np.random.default_rng(seed)
    return {
        label: [
            by_label[label][i] for i in rng.choice(len(by_label[label]), per_label, replace=False)
        ]
        for label in labels
    }


def engine_figures(
    embed: Any, examples: dict[str, list[str]], val: list[list[str]], oos: list[str]
) -> dict[str, float]:
    labels = list(examples)
    texts = [t for label in labels for t in examples[label]]
    targets = np.array([i for i, label in enumerate(labels) for _ in examples[label]])
    rule = fit_rule(embed(texts), targets, len(labels), threshold=-2.0, texts=texts)
    queries = [t for t, _ in val]
    chosen, _, similarity = rule.explain(embed(queries), queries)
    truth = np.array([labels.index(y) for _, y in val])
    threshold = float(np.percentile(similarity, REJECTED_IN_SCOPE))
    _, _, oos_similarity = rule.explain(embed(oos), oos)
    return {
        "accuracy": float((chosen == truth).mean()),
        "oos_recall_at_5": float((oos_similarity < threshold).mean()),
        "threshold_at_5": threshold,
    }


def through_agent(
    models_dir: Path, examples_file: Path, rows: list[tuple[str, str]], threads: int
) -> tuple[list[str | None], str]:
    work = Path(tempfile.mkdtemp(prefix="examples-"))
    broker = Broker(work / "broker").start()
    route = {"subscribe": "bench/+/text", "model": "encoder", "examples": str(examples_file)}
    config = write_config(
        work / "agent.yaml", broker_port=broker.port, models_dir=models_dir,
        client_id="examples", routes=[route], models={"dir": str(models_dir), "threads": threads},
    )  # fmt: skip
    agent = AgentProcess(config, work / "agent.log").start()
    client = TestClient(broker.host, broker.port)
    try:
        client.subscribe("edge-agent/examples/status", f"{TOPIC}/label")
        agent.wait_online(client, "edge-agent/examples/status", 180)
        for number, (text, _) in enumerate(rows):
            client.publish(TOPIC, json.dumps({"id": str(number), "text": text}), wait=False)
        received = client.wait_for(len(rows), topic_prefix=f"{TOPIC}/label", timeout_s=600)
    finally:
        client.close()
        agent.stop()
        if broker.process is not None:
            broker.process.terminate()
    bodies = [json.loads(m.payload) for m in received]
    answers = {body["id"]: body["label"] for body in bodies}
    return [answers.get(str(n)) for n in range(len(rows))], bodies[0]["model"]["version"]


def agent_figures(predicted: list[str | None], rows: list[tuple[str, str]]) -> dict[str, float]:
    in_scope = [(p, t) for p, (_, t) in zip(predicted, rows, strict=True) if t != OOS]
    out = [p for p, (_, t) in zip(predicted, rows, strict=True) if t == OOS]
    return {
        "accuracy": sum(p == t for p, t in in_scope) / len(in_scope),
        "in_scope_rejected": sum(p == OOS for p, _ in in_scope) / len(in_scope),
        "oos_recall": out.count(OOS) / len(out),
        "answered": sum(p is not None for p in predicted) / len(predicted),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinc150", required=True, help="CLINC150 data_train_val.json")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--teacher", action="store_true", help="dense teacher side by side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--per-label", type=int, action="append", help="examples per intent (default: 5 and 10)"
    )
    args = parser.parse_args()
    data = json.loads(Path(args.clinc150).read_text(encoding="utf-8"))
    val, oos = data["val"], [text for text, _ in data["oos_val"]]
    encoder: Encoder = load_encoder(resolve_bundle(args.models_dir, "encoder"), precision="int8")
    print(f"encoder {encoder.manifest.version} ({encoder.precision})", flush=True)
    embed_int8 = lambda texts: encoder.embed(texts)[0]  # noqa: E731
    embed_teacher = None
    if args.teacher:
        from tokenizers import Tokenizer

        from edge_agent.toolkit.train.data import encode_texts
        from edge_agent.toolkit.train.embedding import load_teacher, teacher_embeddings
        from edge_agent.toolkit.train.minilm import minilm_dir

        teacher = load_teacher()
        tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
        embed_teacher = lambda texts: teacher_embeddings(  # noqa: E731
            teacher, encode_texts(tokenizer, texts, encoder.manifest.max_seq_len)
        )
        queries = [t for t, _ in val] + oos
        cosines = (embed_int8(queries) * embed_teacher(queries)).sum(axis=1)
        print(
            f"cosine INT8 encoder vs teacher on {len(queries)} validation queries: median "
            f"{np.median(cosines):.4f}, 5th percentile {np.percentile(cosines, 5):.4f}",
            flush=True,
        )
    rows = [(t, y) for t, y in val] + [(t, OOS) for t in oos]
    work = Path(tempfile.mkdtemp(prefix="example-labels-"))
    for per_label in args.per_label or (5, 10):
        examples = draw(data["train"], per_label, args.seed)
        figures = {"encoder INT8, engine": engine_figures(embed_int8, examples, val, oos)}
        if embed_teacher is not None:
            figures["teacher fp32, engine"] = engine_figures(embed_teacher, examples, val, oos)
        threshold = figures["encoder INT8, engine"]["threshold_at_5"]
        for name, file_threshold in (
            ("no rejection", -1.0), ("5 % in-scope rejected", threshold), ("auto", "auto"),
        ):  # fmt: skip
            path = work / f"clinc-{per_label}-{name.split()[0]}.yaml"
            path.write_text(
                yaml.safe_dump({"other": OOS, "threshold": file_threshold, "labels": examples})
            )
            started = time.monotonic()
            predicted, version = through_agent(args.models_dir, path, rows, args.threads)
            result = agent_figures(predicted, rows)
            result["seconds"] = time.monotonic() - started
            figures[f"agent, {name}"] = result
        print(f"\n{per_label} examples per intent (served as {version}):")
        for name, values in figures.items():
            shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
            print(f"  {name}: {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
