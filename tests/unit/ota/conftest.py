"""A device's OTA receiver on a clock of the test's choosing, trusting the test's operator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from edge_agent.bundle.keys import Keyring
from edge_agent.ota.receiver import OtaReceiver, OtaSettings
from tests.support.keys import Operator
from tests.support.ota_protocol import DEVICE, FLEET, NOW, PREFIX, Device, DeviceFactory


@pytest.fixture
def make_device(tmp_path: Path, operator: Operator) -> DeviceFactory:
    def factory(
        *,
        keyring: Keyring | None = None,
        clock: datetime | Callable[[], datetime] = NOW,
        fleet: str | None = FLEET,
        served: frozenset[str] | None = None,
    ) -> Device:
        models_dir = tmp_path / "models"
        state_dir = tmp_path / "state"
        models_dir.mkdir(exist_ok=True)
        receiver = OtaReceiver(
            OtaSettings(
                device_id=DEVICE, fleet=fleet, prefix=PREFIX, window=4, served_models=served
            ),
            keyring if keyring is not None else operator.keyring,
            models_dir,
            state_dir,
            clock=clock if callable(clock) else lambda: clock,
        )
        device = Device(models_dir, state_dir, receiver, set(), [])
        device.apply(receiver.start())
        return device

    return factory
