"""A bundle dropped into the models directory while a steady stream is being labelled:
nothing lost or duplicated, and from the first result of the new version on, every result
names it. Prints the figures the issue asks for (swap latency, longest pause in results,
peak memory of the agent)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

from tests.support.agent_process import AgentFactory, events, versions_of
from tests.support.bundles import SwapBundles, install
from tests.support.mqtt_client import TestClient
from tests.support.proc import status_kib

MESSAGES = 2400
RATE_PER_S = 400.0
DROP_AT = 800  # messages published before the new bundle is dropped


def test_swap_under_a_steady_stream_loses_nothing(
    tmp_path: Path, bundles: SwapBundles, client: TestClient, start_agent: AgentFactory
) -> None:
    models = tmp_path / "models"
    install(bundles.v1, models)
    agent = start_agent(models)
    topic = agent.input_topic()
    rss_before = status_kib(agent.pid, "VmRSS")
    dropped_at: list[float] = []

    def publish_stream() -> None:
        started = time.monotonic()
        for index in range(MESSAGES):
            if index == DROP_AT:
                install(bundles.v2, models)
                dropped_at.append(time.monotonic())
            payload = json.dumps({"id": str(index), "text": f"the movie was great fun {index}"})
            client.publish(topic, payload, wait=False)
            # Steady pace, not a burst: sleep until this message's slot.
            delay = started + (index + 1) / RATE_PER_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    publisher = threading.Thread(target=publish_stream)
    publisher.start()
    publisher.join(60)
    results = client.wait_for(MESSAGES, topic_prefix=agent.results_prefix(), timeout_s=90)
    time.sleep(0.5)  # a duplicate would arrive right behind the rest
    results = client.messages(agent.results_prefix())
    peak_kib = status_kib(agent.pid, "VmHWM")

    ids = [result.json()["id"] for result in results]
    assert sorted(ids, key=int) == [str(i) for i in range(MESSAGES)], "lost or duplicated"
    versions = versions_of(results)
    assert set(versions) == {"1.0.0", "2.0.0"}, set(versions)
    first_new = versions.index("2.0.0")
    assert all(version == "2.0.0" for version in versions[first_new:]), (
        "a result of the old version came after the first result of the new one"
    )
    swapped = events(client, agent, "model_swapped")
    assert [(e["model"], e["version"], e["previous_version"]) for e in swapped] == [
        ("tiny", "2.0.0", "1.0.0")
    ]
    assert swapped[0]["labels_changed"] is False
    assert not events(client, agent, "model_rejected")

    drop = dropped_at[0]
    swap_latency_s = results[first_new].at - drop
    during = [r.at for r in results if drop - 1.0 <= r.at <= results[first_new].at + 1.0]
    longest_pause_s = max(b - a for a, b in itertools.pairwise(during))
    steady = [r.at for r in results if r.at < drop]
    typical_gap_s = sorted(b - a for a, b in itertools.pairwise(steady))[len(steady) // 2]
    print(
        f"\nswap under {RATE_PER_S:.0f} msg/s: latency (dropped -> first result of 2.0.0) "
        f"{swap_latency_s * 1000:.0f} ms (load {swapped[0]['load_s'] * 1000:.0f} ms); "
        f"longest pause in results around the swap {longest_pause_s * 1000:.1f} ms "
        f"(median gap before it {typical_gap_s * 1000:.2f} ms); agent RSS before "
        f"{rss_before / 1024:.1f} MiB, peak (VmHWM) {peak_kib / 1024:.1f} MiB"
    )
