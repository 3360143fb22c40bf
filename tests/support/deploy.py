"""Paths and helpers shared by the deployment tests (imported by name: no package here)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

import pytest

REPO: Final = Path(__file__).resolve().parents[2]
UNIT: Final = REPO / "systemd" / "edge-agent.service"
DROP_INS: Final = REPO / "systemd" / "edge-agent.service.d"
DEPLOY_CONFIG: Final = REPO / "deploy" / "edge-agent.yaml"
EXPOSURE_LIMIT: Final = 1.5


def host_unit_dir() -> Path:
    """Where the host keeps systemd's own units (targets and slices the unit refers to)."""
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "multi-user.target").exists():
            return candidate
    pytest.skip("no systemd unit directory with multi-user.target on this host")


def seed_systemd_root(root: Path) -> None:
    """Give `systemd-analyze verify --root` the targets and slices a unit depends on.

    verify resolves dependencies (sysinit.target, multi-user.target, ...) inside the root;
    an empty root fails with "Unit sysinit.target not found" whatever the unit says.
    """
    unit_dir = root / "usr/lib/systemd/system"
    unit_dir.mkdir(parents=True, exist_ok=True)
    for pattern in ("*.target", "*.slice"):
        for unit in host_unit_dir().glob(pattern):
            if unit.is_file() and not (unit_dir / unit.name).exists():
                shutil.copy2(unit, unit_dir / unit.name)
