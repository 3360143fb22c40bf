#!/usr/bin/env bash
# Proof on 64-bit ARM: install this project's wheel and bundles in an arm64 (Raspberry Pi OS
# bookworm-like) root under qemu user-mode emulation, run the tests that need no broker,
# classify every bundle's golden examples, and compare labels and scores with this host.
#
#   sudo deploy/check-arm64.sh [--models DIR] [--tests "PATHS"] [--mark EXPR]
#
# The arm64 root comes from shared/tools/arm64/setup.sh (about 7 minutes, once):
#   sudo ROOT=/var/tmp/arm64-rootfs ../shared/tools/arm64/setup.sh
# Emulated timings are meaningless (10x-300x slower); correctness is the point.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${ROOT:-/var/tmp/arm64-rootfs}
PYTHON=${PYTHON:-python3}                       # host interpreter with the runtime deps
MODELS=${MODELS:-$REPO/models}                  # <name>/<version>/manifest.json bundles
TESTS=${TESTS:-"tests/unit/engine tests/unit/pipeline tests/unit/config tests/unit/daemon tests/unit/telemetry tests/integration/agent"}
MARK=${MARK:-"not slow"}                      # tests needing a broker are skipped by a plugin
TOLERANCE=${TOLERANCE:-1e-3}
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --tests) TESTS=$2; shift 2 ;;
    --mark) MARK=$2; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "check-arm64: unknown option $1" >&2; exit 2 ;;
  esac
done

say() { echo "[check-arm64] $*"; }
die() { echo "[check-arm64] $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: it mounts /proc, /sys and /dev into the arm64 root"
[ -x "$ROOT/opt/venv/bin/python" ] ||
  die "no arm64 root at $ROOT: run 'sudo ROOT=$ROOT ../shared/tools/arm64/setup.sh' first"
[ -e "$ROOT/etc/cpuinfo.rpi4" ] || die "$ROOT lacks etc/cpuinfo.rpi4 (made by setup.sh)"
find "$MODELS" -mindepth 3 -maxdepth 3 -name manifest.json 2>/dev/null | grep -q . ||
  die "no bundles (<name>/<version>/manifest.json) under $MODELS"

STAGE=/opt/edge-agent-check                     # inside the root
HOST_STAGE=$ROOT$STAGE
WORK=$(mktemp -d)

# ---- mounts, as setup.sh's arm64-run makes them, undone on exit
MOUNTS=()
mount_once() {  # target, then mount arguments
  local target=$1
  shift
  mountpoint -q "$target" && return
  mount "$@" "$target"
  MOUNTS=("$target" "${MOUNTS[@]}")
}
cleanup() {
  local target
  for target in "${MOUNTS[@]}"; do umount -R "$target" 2>/dev/null || umount -l "$target"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
mount_once "$ROOT/proc" -t proc proc
# qemu passes the host's x86 /proc/cpuinfo through, which crashes onnxruntime's cpuinfo:
# setup.sh wrote a Raspberry Pi 4 one.
mount_once "$ROOT/proc/cpuinfo" --bind "$ROOT/etc/cpuinfo.rpi4"
mount_once "$ROOT/sys" --rbind /sys
mount_once "$ROOT/dev" --rbind /dev
mount --make-rslave "$ROOT/sys"
mount --make-rslave "$ROOT/dev"

arm64() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    QEMU_CPU="${QEMU_CPU:-cortex-a72}" "$@"
}

# ---- 1. the wheel, built here (pure Python: the same file installs on both machines)
say "building the wheel on $(uname -m)"
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WORK" "$REPO" 2>/dev/null ||
  "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK" "$REPO"
WHEEL=$(ls "$WORK"/edge_agent-*.whl)

# ---- 2. stage wheel, bundles and tests in the root; install runtime deps + test tools there
rm -rf "$HOST_STAGE"
mkdir -p "$HOST_STAGE"
cp "$WHEEL" "$HOST_STAGE/"
cp -R "$MODELS" "$HOST_STAGE/models"
cp -R "$REPO/tests" "$REPO/pyproject.toml" "$HOST_STAGE/"
find "$HOST_STAGE" -name __pycache__ -prune -exec rm -rf {} +
# the tests must import the installed wheel, never a source tree
[ ! -e "$HOST_STAGE/edge_agent" ] || die "source tree leaked into the stage"
say "installing $(basename "$WHEEL") in the arm64 venv"
arm64 python -m pip install --quiet --disable-pip-version-check "$STAGE/$(basename "$WHEEL")" pytest hypothesis
arm64 python -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$STAGE/$(basename "$WHEEL")"
arm64 python -c 'import platform, sys, onnxruntime, edge_agent
print("arm64 root:", platform.machine(), "Python", sys.version.split()[0],
      "onnxruntime", onnxruntime.__version__, "edge-agent", edge_agent.__version__)'

# ---- 3. golden examples on both machines, through the engine's own loader
cat > "$HOST_STAGE/golden.py" <<'EOF'
"""Classify each bundle's golden texts; print {"bundle precision": [[label, score]]} as JSON.
load_classifier itself checks the goldens against the manifest (labels, scores within 1e-3).
An embedding bundle gives ["embedding", cosine with the recorded golden vector] per text
(load_encoder checks those too)."""
import json, sys
from pathlib import Path
import numpy as np
from edge_agent.engine.classifier import load_classifier
from edge_agent.engine.encoder import load_encoder

out = {}
for manifest in sorted(Path(sys.argv[1]).glob("*/*/manifest.json")):
    bundle = manifest.parent
    if bundle.name.startswith(".") or bundle.parent.name.startswith("."):
        continue
    data = json.loads(manifest.read_text())
    texts = [g["text"] for g in data.get("golden", [])]
    # Both precisions the bundle has, each forced: "auto" picks by timing, which differs
    # between machines, and INT8 and fp32 scores differ by more than the tolerance.
    for precision in ("int8", "fp32"):
        if precision == "fp32" and "model.fp32.onnx" not in data["files"]:
            continue
        if data["task"] == "embedding":
            encoder = load_encoder(bundle, precision=precision, threads=2)
            out[f"{bundle.parent.name}/{bundle.name} {encoder.precision}"] = [
                ["embedding", float(encoder.embed([g["text"]])[0][0] @ np.array(g["embedding"]))]
                for g in data.get("golden", [])
            ]
            continue
        classifier = load_classifier(bundle, precision=precision, threads=2)
        predictions = classifier.classify(texts) if texts else []
        out[f"{bundle.parent.name}/{bundle.name} {classifier.precision}"] = [
            [p.label, p.score] for p in predictions
        ]
print(json.dumps(out))
EOF
say "golden examples on $(uname -m) (host)"
PYTHONPATH=$REPO "$PYTHON" "$HOST_STAGE/golden.py" "$MODELS" > "$WORK/host.json"
say "golden examples on aarch64 (emulated)"
arm64 python "$STAGE/golden.py" "$STAGE/models" > "$WORK/arm64.json"
GOLDEN=0
"$PYTHON" - "$WORK/host.json" "$WORK/arm64.json" "$TOLERANCE" <<'EOF' || GOLDEN=$?
import json, sys
host, arm, tolerance = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3])
failures = 0
assert host.keys() == arm.keys(), (host.keys(), arm.keys())
for key in sorted(host):
    h, a = host[key], arm[key]
    worst = max((abs(hs - as_) for (_, hs), (_, as_) in zip(h, a)), default=0.0)
    same = [hl == al for (hl, _), (al, _) in zip(h, a)]
    ok = len(h) == len(a) and all(same) and worst <= tolerance
    failures += not ok
    print(f"[check-arm64] {key}: {sum(same)}/{len(h)} labels equal, max |score diff| "
          f"x86 vs arm64 {worst:.1e} (tolerance {tolerance:g}): {'OK' if ok else 'MISMATCH'}")
sys.exit(1 if failures else 0)
EOF

# ---- 4. the tests that need no broker, against the installed wheel
# The arm64 root has no torch and no mosquitto. A small pytest plugin (staged below) skips
# tests that ask for the `broker` fixture, and lets the tests' tiny bundles (built by the
# real toolkit, which needs torch) be built on this host first and replayed in the root.
cat > "$HOST_STAGE/arm64_check_plugin.py" <<'EOF'
"""pytest plugin for deploy/check-arm64.sh: EA_TINY_MODE=record|replay, EA_TINY_CACHE=dir."""
import hashlib, os, shutil
from pathlib import Path

import pytest
import tests.support.bundles as tiny

_build = tiny.build_tiny_bundle
_cache = Path(os.environ["EA_TINY_CACHE"])
_mode = os.environ["EA_TINY_MODE"]


def _replayable(out_dir, **options):
    key = hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()[:16]
    name, version = options.get("name", "tiny"), options.get("version", "1.0.0")
    target = Path(out_dir) / name / version
    if _mode == "record":
        built = _build(out_dir, **options)
        if not (_cache / key).exists():
            shutil.copytree(built, _cache / key)
        return built
    if not (_cache / key).exists():
        pytest.skip(f"tiny bundle {options} was not recorded on the host")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(_cache / key, target)
    return target


tiny.build_tiny_bundle = _replayable

try:  # tests that start their own mosquitto (not through the fixture) skip too, on both
    import tests.support.broker as broker_support

    def _no_broker(self):
        pytest.skip("needs a broker: not in the arm64 root")

    broker_support.Broker.start = _no_broker
except ImportError:
    pass


def pytest_collection_modifyitems(items):
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason="needs a broker: not in the arm64 root"))
EOF
mkdir -p "$HOST_STAGE/tiny-cache"
RESULTS=()
run_tests() {  # machine, then the command that runs pytest
  local machine=$1 rc=0
  shift
  say "pytest -m '$MARK' $TESTS ($machine)"
  "$@" || rc=$?
  RESULTS+=("$machine tests: $([ "$rc" = 0 ] && echo passed || echo "FAILED (rc $rc)")")
  return 0
}
PYTEST_ARGS="-q -p no:cacheprovider -p arm64_check_plugin -m '$MARK' $TESTS"
run_tests "$(uname -m), recording tiny bundles" env -C "$REPO" \
  PYTHONPATH="$HOST_STAGE:$REPO" EA_TINY_MODE=record EA_TINY_CACHE="$HOST_STAGE/tiny-cache" \
  bash -c "$PYTHON -m pytest $PYTEST_ARGS"
run_tests "aarch64, emulated" arm64 bash -c \
  "cd $STAGE && EA_TINY_MODE=replay EA_TINY_CACHE=$STAGE/tiny-cache python -m pytest $PYTEST_ARGS"
TESTS_RC=0
for result in "${RESULTS[@]}"; do
  say "$result"
  case "$result" in *FAILED*) TESTS_RC=1 ;; esac
done
say "golden comparison: $([ "$GOLDEN" = 0 ] && echo passed || echo FAILED)"
[ "$GOLDEN" = 0 ] && [ "$TESTS_RC" = 0 ]
