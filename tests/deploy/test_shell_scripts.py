"""The deployment scripts: bash syntax everywhere, shellcheck where it is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.deploy import REPO

SCRIPTS = sorted((REPO / "deploy").rglob("*.sh"))


def test_there_are_scripts() -> None:
    names = {script.name for script in SCRIPTS}
    assert {"install.sh", "uninstall.sh", "check-arm64.sh", "make-test-certs.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_bash_parses(script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean() -> None:
    done = subprocess.run(
        ["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout
