"""deploy/install.sh and uninstall.sh against a staging root (--root), as far as a container
allows: no systemd runs here, so starting the service is not exercised (install.sh skips
systemctl start whenever --root is given); everything else is real: useradd, venv, pip,
offline `systemctl enable`, and `systemd-analyze verify` against the installed entry point.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent import __version__
from tests.support.deploy import REPO, UNIT, seed_systemd_root

INSTALL = REPO / "deploy" / "install.sh"
UNINSTALL = REPO / "deploy" / "uninstall.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("useradd") is None or shutil.which("systemctl") is None,
    reason="needs useradd (passwd) and systemctl (systemd) on the host",
)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("edge_agent-*.whl")
    return found


def _empty_system(system: Path) -> Path:
    """An empty system: root's account lines and systemd's own targets."""
    (system / "etc").mkdir(parents=True)
    (system / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (system / "etc/group").write_text("root:x:0:\n")
    (system / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (system / "etc/gshadow").write_text("root:*::\n")
    for name in ("shadow", "gshadow"):
        (system / "etc" / name).chmod(0o600)
    seed_systemd_root(system)
    return system


def _shipped_models(models: Path) -> Path:
    """A models/ folder shaped like the repo's: one bundle and one half-written staging copy."""
    bundle = models / "sentiment" / "1.0.0"
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text('{"name": "sentiment", "version": "1.0.0"}\n')
    (bundle / "model.onnx").write_bytes(os.urandom(4096))
    staging = models / "sentiment" / ".tmp-2.0.0"
    staging.mkdir()
    (staging / "manifest.json").write_text("{}\n")
    return models


@pytest.fixture(scope="module")
def shipped_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _shipped_models(tmp_path_factory.mktemp("src") / "models")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, wheel: Path, shipped_models: Path) -> Path:
    """One installed system shared by this module's tests, in file order: creating the venv
    (ensurepip) is the slow part, so it happens once. The tests leave it installed, except
    the last one, which uninstalls."""
    system = _empty_system(tmp_path_factory.mktemp("system") / "root")
    _install(system, wheel, shipped_models, "--device-id", "pi-kitchen")
    return system


def _install(root: Path, wheel: Path, models: Path, *extra: str, no_deps: bool = True) -> str:
    done = subprocess.run(
        [
            "bash",
            str(INSTALL),
            "--root",
            str(root),
            "--wheel",
            str(wheel),
            *(["--no-deps"] if no_deps else []),
            "--python",
            sys.executable,
            "--models",
            str(models),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _uninstall(root: Path, *extra: str) -> str:
    done = subprocess.run(
        ["bash", str(UNINSTALL), "--root", str(root), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _account(root: Path, database: str, name: str) -> list[str] | None:
    for line in (root / "etc" / database).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def test_install_lays_out_a_working_system(
    root: Path, shipped_models: Path, systemd_analyze: str
) -> None:
    user = _account(root, "passwd", "edge-agent")
    assert user is not None
    assert user[6] == "/usr/sbin/nologin"
    assert int(user[2]) < 1000, "a system account"
    uid, gid = int(user[2]), int(user[3])

    state = root / "var/lib/edge-agent"
    for folder in (state, state / "models", state / "state"):
        assert folder.stat().st_uid == uid
        assert folder.stat().st_mode & 0o777 == 0o750
    etc = root / "etc/edge-agent"
    assert (etc.stat().st_uid, etc.stat().st_gid) == (0, gid)  # the service reads, never writes
    assert (etc / "keys").is_dir()
    password = etc / "broker-password"
    assert password.stat().st_mode & 0o777 == 0o600 and password.stat().st_uid == 0

    config = (etc / "edge-agent.yaml").read_text()
    assert "DEVICE_ID" not in config
    assert "client_id: pi-kitchen" in config

    installed = state / "models/sentiment/1.0.0"
    assert (installed / "model.onnx").read_bytes() == (
        shipped_models / "sentiment/1.0.0/model.onnx"
    ).read_bytes()
    assert [p.name for p in (state / "models/sentiment").iterdir()] == ["1.0.0"]

    unit = root / "etc/systemd/system/edge-agent.service"
    assert unit.read_text() == UNIT.read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/edge-agent.service"
    assert wants.is_symlink()

    venv_python = root / "opt/edge-agent/venv/bin/python"
    version = subprocess.run(
        [str(venv_python), "-c", "import edge_agent; print(edge_agent.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout.strip()
    assert version == __version__
    assert os.access(root / "opt/edge-agent/venv/bin/edge-agent", os.X_OK)

    verify = subprocess.run(
        [
            systemd_analyze,
            "verify",
            "--recursive-errors=no",
            f"--root={root}",
            "edge-agent.service",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr


def test_reinstall_upgrades_code_and_keeps_operator_files(
    root: Path, wheel: Path, shipped_models: Path
) -> None:
    config = root / "etc/edge-agent/edge-agent.yaml"
    config.write_text(config.read_text() + "# operator edit\n")
    (root / "etc/edge-agent/broker-password").write_text("s3cret\n")
    model = root / "var/lib/edge-agent/models/sentiment/1.0.0/model.onnx"
    model_inode = model.stat().st_ino
    (package,) = (root / "opt/edge-agent/venv/lib").glob("python3*/site-packages/edge_agent")
    (package / "telemetry" / "stats.py").unlink()  # stands for any file an upgrade must bring back

    output = _install(root, wheel, shipped_models, "--lan-only")

    assert config.read_text().endswith("# operator edit\n")
    assert (root / "etc/edge-agent/edge-agent.yaml.dist").is_file()
    assert (root / "etc/edge-agent/broker-password").read_text() == "s3cret\n"
    assert model.stat().st_ino == model_inode, "an installed bundle is never rewritten"
    assert (package / "telemetry" / "stats.py").is_file()
    assert [line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()] == [
        "root",
        "edge-agent",
    ]
    assert (root / "etc/systemd/system/edge-agent.service.d/lan-only.conf").is_file()
    assert "user edge-agent exists" in output


def test_bad_device_id_is_refused(tmp_path: Path, wheel: Path, shipped_models: Path) -> None:
    done = subprocess.run(
        [
            "bash",
            str(INSTALL),
            "--root",
            str(_empty_system(tmp_path / "root")),
            "--wheel",
            str(wheel),
            "--no-deps",
            "--python",
            sys.executable,
            "--models",
            str(shipped_models),
            "--device-id",
            "a/b#",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "not a plain name" in done.stderr
    assert not (tmp_path / "root/opt").exists(), "refused before touching anything"


def test_uninstall_keeps_data_until_purge(root: Path) -> None:
    # runs last: the shared root was installed with --lan-only by the reinstall test
    _uninstall(root)
    assert not (root / "opt/edge-agent").exists()
    assert not (root / "etc/systemd/system/edge-agent.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/edge-agent.service").exists()
    assert not (root / "etc/systemd/system/edge-agent.service.d").exists()
    assert (root / "etc/edge-agent/edge-agent.yaml").is_file()
    assert (root / "var/lib/edge-agent/models/sentiment/1.0.0/manifest.json").is_file()
    assert _account(root, "passwd", "edge-agent") is not None

    _uninstall(root, "--purge")
    assert not (root / "etc/edge-agent").exists()
    assert not (root / "var/lib/edge-agent").exists()
    assert _account(root, "passwd", "edge-agent") is None
    assert _account(root, "group", "edge-agent") is None


@pytest.mark.slow
def test_full_install_brings_runtime_dependencies_only(
    tmp_path: Path, wheel: Path, shipped_models: Path
) -> None:
    """Without --no-deps: pip resolves the runtime dependencies from the index (about 20 s
    with a warm pip cache), the CLI runs, and nothing of the workstation toolkit comes."""
    system = _empty_system(tmp_path / "root")
    _install(system, wheel, shipped_models, "--device-id", "pi-kitchen", no_deps=False)
    venv = system / "opt/edge-agent/venv/bin"
    version = subprocess.run(
        [str(venv / "edge-agent"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"edge-agent {__version__}"
    installed = subprocess.run(
        [str(venv / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for runtime in ("onnxruntime", "paho-mqtt", "tokenizers", "numpy", "cryptography"):
        assert f"{runtime}==" in installed
    for toolkit in ("torch", "transformers", "onnx=="):
        assert toolkit not in installed
