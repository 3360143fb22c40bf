"""Fixtures every integration folder shares: a private mosquitto per test and a client on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, mosquitto_binary
from tests.support.mqtt_client import TestClient


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed: run `sudo apt-get install -y mosquitto`")
    running = Broker(tmp_path / "broker").start()
    yield running
    running.kill()


@pytest.fixture
def client(broker: Broker) -> Iterator[TestClient]:
    test_client = TestClient(broker.host, broker.port)
    yield test_client
    test_client.close()
