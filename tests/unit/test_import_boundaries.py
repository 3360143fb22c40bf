"""The package map's import rules (docs/design.md), checked on what Python really loads.

Each check runs in a fresh interpreter, so whatever an earlier test imported cannot hide
an import the code under test makes, directly or through another module.
"""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edge_agent.pipeline
from tests.support.agent_process import REPO_ROOT

WORKSTATION_ONLY = ("torch", "transformers", "onnx", "tqdm", "safetensors")


def _loaded_after(statements: str) -> set[str]:
    """Top-level packages and edge_agent modules in sys.modules after `statements`."""
    code = f"import sys, json\n{statements}\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return {m if m.startswith("edge_agent") else m.split(".")[0] for m in modules}


def test_help_loads_no_network_inference_or_crypto_library() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edge_agent", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    assert "run the daemon" in done.stdout
    # -X importtime writes one line per import to stderr: "import time: self | cumulative | name"
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert imported, "no -X importtime output to check"
    heavy = imported & {"paho", "onnxruntime", "cryptography", "tokenizers", *WORKSTATION_ONLY}
    assert not heavy, f"`edge-agent --help` imported {sorted(heavy)}"


def test_the_pipeline_is_pure() -> None:
    """pipeline/ takes resolved routes and a classify function: no paho, no onnxruntime, and
    nothing from config/ or daemon/ (which would bring both back)."""
    names = [
        f"edge_agent.pipeline.{module.name}"
        for module in pkgutil.iter_modules(edge_agent.pipeline.__path__)
    ]
    assert "edge_agent.pipeline.processing" in names
    loaded = _loaded_after("\n".join(f"import {name}" for name in names))
    forbidden = {
        name
        for name in loaded
        if name in ("paho", "onnxruntime", "tokenizers", "cryptography", *WORKSTATION_ONLY)
        or re.match(r"edge_agent\.(config|daemon|mqtt|models|engine\.(classifier|session))", name)
    }
    assert not forbidden, f"the pipeline pulled in {sorted(forbidden)}"


def test_the_device_side_never_imports_the_workstation_toolkit() -> None:
    loaded = _loaded_after(
        "import edge_agent.daemon.wiring, edge_agent.engine.classifier\n"
        "import edge_agent.commands.bench, edge_agent.commands.classify\n"
        "import edge_agent.commands.model_inspect, edge_agent.commands.run"
    )
    assert not loaded & set(WORKSTATION_ONLY)
    assert not any(name.startswith("edge_agent.toolkit") for name in loaded)


PACKAGES = sorted(
    path.name
    for path in (REPO_ROOT / "edge_agent").iterdir()
    if path.is_dir() and not path.name.startswith("__")
)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_says_what_it_owns(package: str) -> None:
    init = Path(REPO_ROOT / "edge_agent" / package / "__init__.py")
    docstring = init.read_text(encoding="utf-8").strip()
    assert docstring.startswith('"""') and len(docstring) > 20, f"{init}: no docstring"
