"""What the OTA receiver asks of the daemon: pure values, carried out by the OTA worker.

`Subscribe`/`Unsubscribe` (QoS 1), `Report` (publish retained, QoS 1), `Installed` (a bundle
now sits in the models directory; the hot-swap watcher takes over).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Report:
    """Publish `payload` retained (QoS 1) on `topic`: the device's latest OTA state."""

    topic: str
    document: Mapping[str, object]

    @property
    def state(self) -> str:
        return str(self.document["state"])

    @property
    def payload(self) -> bytes:
        return json.dumps(self.document, sort_keys=True).encode()


@dataclass(frozen=True)
class Subscribe:
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Unsubscribe:
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    path: Path


Action = Report | Subscribe | Unsubscribe | Installed
