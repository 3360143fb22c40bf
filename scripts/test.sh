#!/usr/bin/env bash
# The one test command: sets up what it needs, then lint, types and the whole test suite.
#   bash scripts/test.sh [pytest args...]
# Creates .venv when missing, installs the package with its toolkit and test extras,
# installs mosquitto with apt-get when missing and we are root (otherwise says how).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${EDGE_AGENT_VENV:-.venv}"

need_mosquitto() {
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || return 0
    command -v mosquitto_rr >/dev/null 2>&1 || return 0
    return 1
}

if need_mosquitto; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing mosquitto and mosquitto-clients (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
    else
        echo "mosquitto is missing. Install it, then run this again:" >&2
        echo "    sudo apt-get install -y mosquitto mosquitto-clients" >&2
        exit 1
    fi
fi

# shellcheck lints the deploy scripts; optional (its test skips without it).
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing shellcheck (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null || true
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv "$VENV"
        else
            echo "python3 venv support is missing: sudo apt-get install -y python3-venv" >&2
            exit 1
        fi
    fi
fi
echo "==> installing edge-agent with the toolkit and test extras"
# torch is pinned (==2.13.0) in the toolkit extra; pip's configured indexes supply the build.
"$VENV/bin/python" -m pip install -q -e '.[toolkit,test]'

echo "==> ruff check"
"$VENV/bin/ruff" check .
echo "==> ruff format --check"
"$VENV/bin/ruff" format --check .
echo "==> mypy"
"$VENV/bin/mypy"
echo "==> pytest"
exec "$VENV/bin/python" -m pytest "$@"
