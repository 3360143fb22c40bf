from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.bundle.keys import Keyring
from edge_agent.bundle.signer import Signer, generate_keypair
from edge_agent.ota.receiver import Action, OtaReceiver, OtaSettings, Report, Subscribe, Unsubscribe

NOW = datetime(2026, 11, 23, 9, 40, tzinfo=UTC)
PREFIX = "test/ota"
DEVICE = "pi-7"
FLEET = "kitchen"


@dataclass
class Operator:
    signer: Signer
    keyring: Keyring
    public_key: Path
    private_key: Path


@pytest.fixture
def operator(tmp_path: Path) -> Operator:
    (tmp_path / "keys").mkdir()
    pair = generate_keypair(tmp_path / "keys" / "operator")
    return Operator(
        Signer.from_file(pair.private_path),
        Keyring.from_files([pair.public_path]),
        pair.public_path,
        pair.private_path,
    )


@dataclass
class Device:
    """An OTA receiver plus a record of what it asked the MQTT link to do."""

    models_dir: Path
    state_dir: Path
    receiver: OtaReceiver
    subscribed: set[str]
    reports: list[Report]
    asked: list[str] = field(default_factory=list)  # every topic ever subscribed, in order

    def apply(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, Subscribe):
                self.subscribed.update(action.topics)
                self.asked.extend(action.topics)
            elif isinstance(action, Unsubscribe):
                self.subscribed.difference_update(action.topics)
            elif isinstance(action, Report):
                self.reports.append(action)
        return actions

    @property
    def last_state(self) -> str:
        return self.reports[-1].state

    @property
    def last_reason(self) -> str:
        return str(self.reports[-1].document.get("reason"))


DeviceFactory = Callable[..., Device]


@pytest.fixture
def make_device(tmp_path: Path, operator: Operator) -> DeviceFactory:
    def factory(
        *,
        keyring: Keyring | None = None,
        clock: datetime = NOW,
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
            clock=lambda: clock,
        )
        device = Device(models_dir, state_dir, receiver, set(), [])
        device.apply(receiver.start())
        return device

    return factory
