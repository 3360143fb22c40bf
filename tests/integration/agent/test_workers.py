"""Several batches classified at once (`batching.workers`), with the real agent, broker and
client: results leave in the order their messages came, none lost, none twice."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.agent_process import StartAgent as AgentFactory
from tests.support.mqtt_client import TestClient


@pytest.mark.parametrize("workers", [1, 4])
def test_results_keep_the_order_of_their_messages(
    start_agent: AgentFactory, client: TestClient, workers: int
) -> None:
    # Small batches, so that a burst is many batches in flight on four classifying threads.
    # A short wait fills them: with none, a fast host classified each message of the burst
    # before the next arrived, and the check below that batches formed failed.
    agent, name = start_agent(batching={"workers": workers, "max_batch": 4, "max_wait_ms": 20})
    client.subscribe(f"{name}/in/+/label")
    total = 400
    for number in range(total):
        # Lengths vary so that batches take different times and may finish out of order.
        text = " ".join(["word"] * (1 + number % 37)) + f" message {number}"
        client.publish(f"{name}/in/s", json.dumps({"text": text, "id": str(number)}))
    deadline = time.monotonic() + 60
    while len(client.messages(f"{name}/in/s/label")) < total and time.monotonic() < deadline:
        time.sleep(0.1)
    ids = [int(message.json()["id"]) for message in client.messages(f"{name}/in/s/label")]
    assert ids == list(range(total))
    sizes = [line["size"] for line in agent.log_lines() if line.get("event") == "batch_done"]
    assert max(sizes) > 1  # a burst, not one message after another
