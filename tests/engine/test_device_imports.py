"""The device side never imports the workstation toolkit's heavy dependencies."""

from __future__ import annotations

import subprocess
import sys


def test_engine_and_device_commands_import_no_torch_onnx_or_transformers() -> None:
    code = (
        "import sys\n"
        "import edge_agent.engine.classifier, edge_agent.bundle.manifest\n"
        "import edge_agent.commands.bench, edge_agent.commands.model_inspect\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'onnx', 'tqdm'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
