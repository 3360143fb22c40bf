"""Hot-swap and OTA figures for a shipped-size bundle through the real agent (prints figures).

Builds SqueezeBERT bundles in the shipped model's shape (all-MiniLM-L6-v2's: 6 layers, hidden
384, INT8 model.onnx of about 16 MB; random weights, since speed and size do not depend on
their values), starts a private mosquitto and the agent (`ota.enabled`, trusted key), keeps a
steady stream of messages flowing, and
1. drops version 2.0.0 into the models directory (safe install by rename): swap latency
   (dropped -> first result naming 2.0.0), longest pause in results around the swap, memory
   (VmRSS sampled every 10 ms, and VmHWM) before and during the swap;
2. pushes version 3.0.0 over MQTT with the push code `edge-agent model push` uses: time to
   `installed`, to `swapped`, and to the first result naming 3.0.0.

    PYTHONPATH=. nice python bench/swap_ota.py [--rate 40] [--threads 2]

Bundles are cached in bench/.models/swap-ota (ignored by git).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.bundle.signer import Signer, generate_keypair, sign_bundle
from edge_agent.mqtt.operator import BrokerAddress, publish_messages
from edge_agent.ota.manifest import Target
from edge_agent.ota.push import build_update, read_bundle_files
from tests.support.agent_process import AgentProcess, write_config
from tests.support.broker import Broker
from tests.support.bundles import SAMPLE_TEXTS, build_tiny_tokenizer
from tests.support.mqtt_client import Received, TestClient

CACHE = Path(__file__).resolve().parent / ".models" / "swap-ota"
PREFIX = "edge-agent/ota"


def build_bundle(version: str, seed: int) -> Path:
    """A MiniLM-L6-shaped SqueezeBERT bundle (INT8 only), cached by version."""
    bundle = CACHE / "shipped" / version  # pack_bundle files it under <dir>/<name>/<version>
    if (bundle / "manifest.json").exists():
        return bundle
    import torch
    from transformers import SqueezeBertForSequenceClassification

    from edge_agent.toolkit.export.pack import pack_bundle
    from edge_agent.toolkit.export.quantize import quantize_int8
    from edge_agent.toolkit.export.to_onnx import export_onnx
    from edge_agent.toolkit.train.minilm import squeezebert_config

    config = squeezebert_config(num_labels=2, groups=1)  # MiniLM-L6's shape, dense
    torch.manual_seed(seed)
    model: Any = SqueezeBertForSequenceClassification(config)
    model.eval()
    with tempfile.TemporaryDirectory() as work:
        fp32 = export_onnx(model, Path(work) / "model.fp32.onnx")
        int8 = quantize_int8(fp32, Path(work) / "model.onnx")
        return pack_bundle(
            CACHE,
            name="shipped",
            version=version,
            task="single-label",
            labels=["negative", "positive"],
            max_seq_len=128,
            model=int8,
            tokenizer=build_tiny_tokenizer(),
            golden_texts=SAMPLE_TEXTS,
            golden_count=3,
            metrics={"accuracy": 0.0},
            card={
                "intended_use": "benchmark only: random weights",
                "training_data": "none",
                "limitations": "predicts nothing useful",
            },
            replace=True,
        )


def install(source: Path, models_dir: Path, signer: Signer) -> None:
    staging = models_dir / "shipped" / f".tmp-{source.name}"
    shutil.copytree(source, staging)
    sign_bundle(staging, signer)
    staging.rename(models_dir / "shipped" / source.name)


class MemorySampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            try:
                self.samples.append((time.monotonic(), vm_kib(self.pid, "VmRSS")))
            except FileNotFoundError:
                return  # the agent has exited

    def peak(self, start: float, end: float) -> int:
        return max(kib for at, kib in self.samples if start <= at <= end)


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def first_of(results: list[Received], version: str) -> Received:
    return next(r for r in results if r.json()["model"]["version"] == version)


def longest_pause(results: list[Received], start: float, end: float) -> float:
    times = [r.at for r in results if start <= r.at <= end]
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=40.0, help="messages per second")
    parser.add_argument("--threads", type=int, default=2, help="models.threads of the agent")
    args = parser.parse_args()
    started = time.monotonic()
    v1, v2, v3 = build_bundle("1.0.0", 1), build_bundle("2.0.0", 2), build_bundle("3.0.0", 3)
    size_mb = sum(p.stat().st_size for p in v3.iterdir()) / 1e6
    print(f"bundles ready ({time.monotonic() - started:.0f} s); one is {size_mb:.1f} MB")

    with tempfile.TemporaryDirectory(prefix="swap-ota-") as tmp:
        work = Path(tmp)
        keys = generate_keypair(work / "operator")
        signer = Signer.from_file(keys.private_path)
        models = work / "models"
        (models / "shipped").mkdir(parents=True)
        install(v1, models, signer)
        broker = Broker(work / "broker").start()
        agent_id = "bench"
        config = write_config(
            work / "agent.yaml",
            broker_port=broker.port,
            models_dir=models,
            client_id=agent_id,
            routes=[{"subscribe": "bench/in/+", "model": "shipped"}],
            models={
                "dir": str(models),
                "threads": args.threads,
                "trusted_keys": [str(keys.public_path)],
                "poll_interval_s": 1.0,
            },
            ota={"enabled": True},
        )
        agent = AgentProcess(config, work / "agent.log")
        client = TestClient(broker.host, broker.port)
        try:
            client.subscribe("edge-agent/bench/status", "bench/in/+/label")
            client.subscribe("edge-agent/bench/status/events")
            client.subscribe(f"{PREFIX}/device/{agent_id}/report")
            agent.start()
            agent.wait_online(client, "edge-agent/bench/status", timeout_s=120)
            assert agent.process is not None
            memory = MemorySampler(agent.process.pid)
            memory.start()
            try:
                run(
                args.rate, client, models=models, signer=signer, v2=v2, v3=v3,
                broker=broker, agent_id=agent_id, memory=memory,
                )  # fmt: skip
            finally:
                memory.stop.set()
        finally:
            client.close()
            agent.stop()
            broker.kill()


def run(
    rate: float,
    client: TestClient,
    *,
    models: Path,
    signer: Signer,
    v2: Path,
    v3: Path,
    broker: Broker,
    agent_id: str,
    memory: MemorySampler,
) -> None:
    stop = threading.Event()
    sent = [0]

    def stream() -> None:
        begun = time.monotonic()
        for index in itertools.count():
            if stop.is_set():
                return
            text = SAMPLE_TEXTS[index % len(SAMPLE_TEXTS)] + f" number {index}"
            client.publish("bench/in/s", json.dumps({"id": str(index), "text": text}), wait=False)
            sent[0] = index + 1
            delay = begun + (index + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    time.sleep(4)
    steady_rss = memory.peak(time.monotonic() - 2, time.monotonic())
    hwm_before = vm_kib(memory.pid, "VmHWM")
    dropped = time.monotonic()
    install(v2, models, signer)
    results = wait_version(client, "2.0.0")
    first_v2 = first_of(results, "2.0.0")
    time.sleep(3)
    swap_end = first_v2.at + 1.0
    swap_peak = memory.peak(dropped, swap_end)
    hwm_after = vm_kib(memory.pid, "VmHWM")
    after_rss = memory.peak(time.monotonic() - 1, time.monotonic())

    update = build_update(
        read_bundle_files(v3),
        signer,
        Target(device=agent_id),
        prefix=PREFIX,
        now=datetime.now(UTC),
    )
    pushed = time.monotonic()
    publish_messages(
        BrokerAddress(broker.host, broker.port),
        [(m.topic, m.payload, m.retain) for m in update.messages],
    )
    published = time.monotonic()
    installed = wait_report(client, agent_id, "installed")
    swapped = wait_report(client, agent_id, "swapped")
    first_v3 = first_of(wait_version(client, "3.0.0"), "3.0.0")
    time.sleep(2)
    after_second_rss = memory.peak(time.monotonic() - 1, time.monotonic())
    stop.set()
    streamer.join()
    total = sent[0]
    results = client.wait_for(total, topic_prefix="bench/in/", timeout_s=120)
    ids = sorted({r.json()["id"] for r in results}, key=int)
    versions = [r.json()["model"]["version"] for r in results]
    ordered = versions == sorted(versions)
    before = [r.at for r in results if r.at < dropped]
    gaps = sorted(b - a for a, b in itertools.pairwise(before))
    print(f"stream: {rate:.0f} msg/s, {total} sent, {len(results)} results, {len(ids)} ids")
    print(f"  lost: {total - len(ids)}, duplicated: {len(results) - len(ids)}")
    print(f"  versions in arrival order never go back: {ordered}")
    print(
        f"local drop of 2.0.0: swap latency {1000 * (first_v2.at - dropped):.0f} ms "
        f"(poll interval 1 s); longest pause in results around the swap "
        f"{1000 * longest_pause(results, dropped, swap_end):.0f} ms (median gap before "
        f"{1000 * gaps[len(gaps) // 2]:.0f} ms)"
    )
    loads = [
        f"{event['version']} {event['load_s'] * 1000:.0f} ms"
        for event in (m.json() for m in client.messages("edge-agent/bench/status/events"))
        if event["event"] == "model_swapped"
    ]
    print(f"  load + verify + warm-up on the loader thread: {', '.join(loads)}")
    print(
        f"  memory: VmRSS steady {steady_rss / 1024:.0f} MiB, peak during swap "
        f"{swap_peak / 1024:.0f} MiB, after {after_rss / 1024:.0f} MiB, "
        f"after a second swap {after_second_rss / 1024:.0f} MiB; VmHWM "
        f"{hwm_before / 1024:.0f} -> {hwm_after / 1024:.0f} MiB"
    )
    print(
        f"OTA of 3.0.0 ({update.manifest.total_bytes / 1e6:.1f} MB, "
        f"{update.manifest.total_chunks} chunks): publish {published - pushed:.2f} s, "
        f"installed {installed - pushed:.2f} s, swapped {swapped - pushed:.2f} s, "
        f"first result from 3.0.0 {first_v3.at - pushed:.2f} s after the push began"
    )


def wait_version(client: TestClient, version: str, timeout_s: float = 120) -> list[Received]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        results = client.messages("bench/in/")
        if any(r.json()["model"]["version"] == version for r in results[-50:]):
            return results
        time.sleep(0.02)
    raise SystemExit(f"no result from {version} within {timeout_s} s")


def wait_report(client: TestClient, agent_id: str, state: str, timeout_s: float = 120) -> float:
    deadline = time.monotonic() + timeout_s
    topic = f"{PREFIX}/device/{agent_id}/report"
    while time.monotonic() < deadline:
        for message in client.messages(topic):
            if message.json()["state"] == state:
                return message.at
            if message.json()["state"] == "rejected":
                raise SystemExit(f"OTA rejected: {message.json()}")
        time.sleep(0.02)
    raise SystemExit(f"no {state} report within {timeout_s} s")


if __name__ == "__main__":
    main()
