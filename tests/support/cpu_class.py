"""Which integer kernels onnxruntime runs here, for tests whose numbers depend on them.

onnxruntime's x86 kernel for uint8 activations x int8 weights multiplies with VPMADDUBSW
on CPUs without VNNI (AVX2, AVX-512 without VNNI): pairs of products are added into
saturating 16-bit sums, so full-range int8 weights (|w| up to 127) can saturate. With
VNNI (avx512_vnni or avx_vnni) and on ARM64 the products are summed in 32 bits and never
saturate. int7 weights (|w| <= 64) and uint8 weights never saturate anywhere.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Literal

CpuClass = Literal["x86-no-vnni", "x86-vnni", "arm64", "other"]


def cpu_class() -> CpuClass:
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if machine not in ("x86_64", "amd64"):
        return "other"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "other"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return "x86-vnni" if flags & {"avx512_vnni", "avx_vnni"} else "x86-no-vnni"


def int8_weights_saturate() -> bool:
    """True where full-range int8 weights may saturate (x86 without VNNI); False where
    they cannot (VNNI, ARM64). Unknown machines count as saturating: the weaker claim."""
    return cpu_class() not in ("x86-vnni", "arm64")
