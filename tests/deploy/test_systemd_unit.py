"""The shipped unit: systemd accepts it, its exposure stays low, and it agrees with the config."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.support.deploy import DEPLOY_CONFIG, DROP_INS, EXPOSURE_LIMIT, UNIT, seed_systemd_root

_OVERALL = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def _unit_settings(path: Path) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file; systemd allows a key more than once, so lists."""
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _exposure(systemd_analyze: str, *args: str) -> tuple[float, str]:
    threshold = f"--threshold={round(EXPOSURE_LIMIT * 10)}"  # the threshold is on a 0-100 scale
    done = subprocess.run(
        [systemd_analyze, "security", "--offline=true", threshold, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    match = _OVERALL.search(output)
    assert match is not None, output
    assert done.returncode == 0, output
    return float(match.group(1)), output


def test_security_exposure_is_at_most_1_5(systemd_analyze: str, tmp_path: Path) -> None:
    # A copy on its own: next to the repo's unit, systemd-analyze would also read the
    # optional drop-ins in systemd/edge-agent.service.d/ and report the unit plus them.
    alone = tmp_path / UNIT.name
    shutil.copy2(UNIT, alone)
    exposure, output = _exposure(systemd_analyze, str(alone))
    assert exposure <= EXPOSURE_LIMIT, output
    assert "IPAddressDeny=" in output and "allow list with non-localhost" not in output


def test_lan_only_drop_in_reaches_1_0(systemd_analyze: str, tmp_path: Path) -> None:
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    shutil.copy2(UNIT, unit_dir / UNIT.name)
    shutil.copytree(DROP_INS, unit_dir / DROP_INS.name)
    exposure, output = _exposure(systemd_analyze, f"--root={tmp_path}", UNIT.name)
    assert exposure <= 1.0, output
    assert "IP address allow list with non-localhost entries" in output


def test_systemd_verify_accepts_the_unit(systemd_analyze: str, tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists and is executable, so the unit is
    # checked inside a scratch root that has it; tests/deploy/test_install_script.py
    # verifies the unit again against the real installed entry point.
    seed_systemd_root(tmp_path)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy2(UNIT, tmp_path / "etc/systemd/system" / UNIT.name)
    exec_start = _unit_settings(UNIT)["ExecStart"][0].split()[0]
    binary = tmp_path / exec_start.lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    done = subprocess.run(
        [systemd_analyze, "verify", "--recursive-errors=no", f"--root={tmp_path}", UNIT.name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_systemd_verify_rejects_a_broken_unit(systemd_analyze: str, tmp_path: Path) -> None:
    """The check above can fail: an unknown key (a typo) makes verify complain."""
    seed_systemd_root(tmp_path)
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    text = UNIT.read_text().replace("PrivateTmp=yes", "PrivateTmpp=yes")
    (unit_dir / UNIT.name).write_text(text)
    done = subprocess.run(
        [systemd_analyze, "verify", "--recursive-errors=no", f"--root={tmp_path}", UNIT.name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "PrivateTmpp" in done.stderr


def test_unit_matches_the_daemon_contract() -> None:
    unit = _unit_settings(UNIT)
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["RestartPreventExitStatus"] == ["3"]  # edge_agent.cli.STARTUP_FAILURE
    assert unit["Restart"] == ["on-failure"]
    assert int(unit["WatchdogSec"][0]) > 0
    # Stopping must outlast the graceful drain, or systemd SIGKILLs a draining agent.
    assert int(unit["TimeoutStopSec"][0]) > config["shutdown_timeout_s"] + 5
    assert unit["ExecStart"][0].endswith("run --config /etc/edge-agent/edge-agent.yaml")
    # cryptography's cffi callbacks need writable+executable memory.
    assert "MemoryDenyWriteExecute" not in unit
    # A crash loop ends (an OOM kill on every start would otherwise go on for ever), and the
    # agent yields CPU and I/O to the broker and the OS when it is saturated.
    assert int(unit["StartLimitBurst"][0]) >= 3 and int(unit["StartLimitIntervalSec"][0]) > 0
    assert int(unit["CPUWeight"][0]) < 100 and int(unit["IOWeight"][0]) < 100


def test_credential_matches_the_config() -> None:
    unit = _unit_settings(UNIT)
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    credentials = dict(value.split(":", 1) for value in unit["LoadCredential"])
    assert config["broker"]["credential"] in credentials


def test_only_the_state_directory_is_writable() -> None:
    unit = _unit_settings(UNIT)
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    assert unit["ProtectSystem"] == ["strict"]
    assert "ReadWritePaths" not in unit
    state_root = Path("/var/lib") / unit["StateDirectory"][0]
    assert unit["NoExecPaths"] == [str(state_root)]  # written over the network: never run
    assert Path(config["models"]["dir"]).is_relative_to(state_root)
    assert Path(config["state_dir"]).is_relative_to(state_root)


def test_thread_count_is_explicit_when_resources_calls_are_filtered() -> None:
    """onnxruntime pins threads (sched_setaffinity, in @resources) only when it picks the
    thread count itself; the filtered unit therefore needs an explicit models.threads."""
    unit = _unit_settings(UNIT)
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    filters = " ".join(unit["SystemCallFilter"])
    if "@resources" in filters:
        assert "~" in filters
        assert isinstance(config["models"]["threads"], int)
        assert unit["SystemCallErrorNumber"] == ["EPERM"]
