"""Fixtures the whole suite shares: a private mosquitto per test and a client on it, an
operator's key pair, and the source bundles of the hot-swap tests (built once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, mosquitto_binary
from tests.support.bundles import SwapBundles, build_swap_bundles
from tests.support.keys import Operator, new_operator
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


@pytest.fixture
def operator(tmp_path: Path) -> Operator:
    return new_operator(tmp_path / "keys")


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> SwapBundles:
    return build_swap_bundles(tmp_path_factory.mktemp("swap-bundles"))
