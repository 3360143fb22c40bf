"""Accuracy of a shipped model as a device serves it: mosquitto, the real agent subprocess
routing one topic to the model, and a real MQTT client that publishes every labelled text
and compares the labels that come back. Batching, INT8 and the manifest's `reject` rule are
all the daemon's own, so this is the acceptance measurement, not the recipe's.

    PYTHONPATH=. python bench/accuracy_through_daemon.py --model sentiment \
        --data ../shared/datasets/sst2/dev.tsv --text-column sentence
    PYTHONPATH=. python bench/accuracy_through_daemon.py --model intent \
        --clinc150 ../shared/datasets/clinc150/data_train_val.json
    PYTHONPATH=. python bench/accuracy_through_daemon.py --model sentiment --held-out sentiment
    PYTHONPATH=. python bench/accuracy_through_daemon.py --model chat-sentiment \
        --held-out chat-sentiment

--held-out TASK takes exactly the rows a recipe (recipes/tasks.py) measured the bundle's card
on, with the recipe's split and seed: e.g. SST-2's 1,000 held-out sentences, which share no
text with training, or TweetEval's validation split (needs the toolkit extra for the
recipe's tokenizer; datasets from ../shared/datasets or EDGE_AGENT_DATASETS).

Labels in the data are compared as strings: SST-2's 0/1 map to the model's labels in order
(negative, positive). With an `oos` label it also prints in-scope accuracy and out-of-scope
recall, CLINC150's two figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_agent.bundle.manifest import load_manifest  # noqa: E402
from edge_agent.toolkit.train.data import read_labelled  # noqa: E402
from edge_agent.toolkit.train.metrics import single_label_report  # noqa: E402
from tests.support.agent_process import AgentProcess, write_config  # noqa: E402
from tests.support.broker import Broker  # noqa: E402
from tests.support.mqtt_client import TestClient  # noqa: E402

OOS: Final = "oos"
TOPIC: Final = "bench/device/text"
NO_ANSWER: Final = "(no answer)"


def recipe_held_out(task_name: str) -> list[tuple[str, str]]:
    from tokenizers import Tokenizer

    from edge_agent.toolkit.train.minilm import minilm_dir
    from recipes.build_models import SEED
    from recipes.task_data import datasets_dir
    from recipes.tasks import TASKS

    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    data = TASKS[task_name].load(datasets_dir(), tokenizer, SEED)
    part = data.texts["held_out"]
    return [(text, labels[0]) for text, labels in zip(part.texts, part.labels, strict=True)]


def labelled_rows(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.held_out:
        return recipe_held_out(args.held_out)
    if args.clinc150:
        raw = json.loads(Path(args.clinc150).read_text(encoding="utf-8"))
        return [(str(text), str(label)) for text, label in raw["val"] + raw["oos_val"]]
    data = read_labelled(
        Path(args.data), text_column=args.text_column, label_column=args.label_column
    )
    return [(text, labels[0]) for text, labels in zip(data.texts, data.labels, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundle name under --models-dir")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help=".csv, .tsv or .jsonl of labelled texts")
    source.add_argument("--clinc150", help="CLINC150 data_train_val.json: val + oos_val")
    source.add_argument("--held-out", metavar="TASK", help="a recipe's held-out rows")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    rows = labelled_rows(args)
    work = Path(tempfile.mkdtemp(prefix="accuracy-"))
    broker = Broker(work / "broker").start()
    route = {"subscribe": "bench/+/text", "model": args.model, "publish": "{topic}/label"}
    config = write_config(
        work / "agent.yaml",
        broker_port=broker.port,
        models_dir=args.models_dir,
        client_id="accuracy",
        routes=[route],
        models={"dir": str(args.models_dir), "threads": args.threads},
    )
    agent = AgentProcess(config, work / "agent.log").start()
    client = TestClient(broker.host, broker.port)
    try:
        client.subscribe("edge-agent/accuracy/status", f"{TOPIC}/label")
        agent.wait_online(client, "edge-agent/accuracy/status", 120)
        started = time.monotonic()
        for number, (text, _) in enumerate(rows):
            client.publish(TOPIC, json.dumps({"id": str(number), "text": text}), wait=False)
        received = client.wait_for(len(rows), topic_prefix=f"{TOPIC}/label", timeout_s=600)
        seconds = time.monotonic() - started
    finally:
        client.close()
        agent.stop()
        if broker.process is not None:
            broker.process.terminate()
    bodies = [json.loads(m.payload) for m in received]
    answers = {body["id"]: body["label"] for body in bodies}
    version = bodies[0]["model"]["version"]  # the one the agent chose to serve
    labels = load_manifest(args.models_dir / args.model / version).labels
    by_index = {str(i): label for i, label in enumerate(labels)}  # SST-2's 0/1
    truth = [by_index.get(label, label) for _, label in rows]
    predicted = [answers.get(str(number)) for number in range(len(rows))]
    # an unanswered row counts as wrong; it has no support of its own, so no recall either
    names = [*sorted({*truth, *(p for p in predicted if p is not None)}), NO_ANSWER]
    position = {name: i for i, name in enumerate(names)}
    report = single_label_report(
        [position[NO_ANSWER if p is None else p] for p in predicted],
        [position[t] for t in truth],
        names,
    )
    print(f"{args.model} {version} through the daemon: {len(answers)}/{len(rows)} answered in")
    print(
        f"  {seconds:.1f} s; accuracy {report.accuracy:.4f}; macro recall"
        f" {report.macro_recall:.4f} over {len(set(truth))} labels"
    )
    if OOS in truth:
        in_scope = [(p, t) for p, t in zip(predicted, truth, strict=True) if t != OOS]
        out = [p for p, t in zip(predicted, truth, strict=True) if t == OOS]
        print(
            f"  in-scope accuracy {sum(p == t for p, t in in_scope) / len(in_scope):.4f}"
            f" ({len(in_scope)}), out-of-scope recall {out.count(OOS) / len(out):.2f} ({len(out)})"
        )
    return 0 if len(answers) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
