#!/usr/bin/env bash
# Remove what deploy/install.sh installed. Keeps /etc/edge-agent (config, keys, password),
# /var/lib/edge-agent (models, state) and the service user unless --purge is given.
#
#   sudo deploy/uninstall.sh [--purge] [--root DIR]
set -euo pipefail

ROOT=${ROOT:-${DESTDIR:-}}
PURGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --purge) PURGE=1; shift ;;
    -h | --help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
ROOT=${ROOT%/}
[ -z "$ROOT" ] || ROOT=$(cd "$ROOT" && pwd)
[ "$(id -u)" = 0 ] || [ -n "$ROOT" ] || { echo "uninstall: run as root (sudo)" >&2; exit 1; }

SERVICE_USER=edge-agent
UNIT_DIR=$ROOT/etc/systemd/system
say() { echo "uninstall: $*"; }

if [ -n "$ROOT" ]; then
  [ ! -f "$UNIT_DIR/edge-agent.service" ] || systemctl --root="$ROOT" --quiet disable edge-agent.service
elif [ -d /run/systemd/system ]; then
  systemctl disable --now edge-agent.service 2>/dev/null || true   # absent unit: nothing to stop
else
  say "systemd is not running here: nothing to stop"
fi

rm -f "$UNIT_DIR/edge-agent.service" "$UNIT_DIR/multi-user.target.wants/edge-agent.service"
# Our drop-in goes; an operator's own overrides (systemctl edit) go only with --purge.
rm -f "$UNIT_DIR/edge-agent.service.d/lan-only.conf"
rmdir "$UNIT_DIR/edge-agent.service.d" 2>/dev/null || true
[ -n "$ROOT" ] || [ ! -d /run/systemd/system ] || systemctl daemon-reload
rm -rf "$ROOT/opt/edge-agent"
say "removed the unit and /opt/edge-agent"

if [ "$PURGE" = 1 ]; then
  rm -rf "$UNIT_DIR/edge-agent.service.d" "$ROOT/etc/edge-agent" "$ROOT/var/lib/edge-agent"
  # a unit that ran with StateDirectory= may have left systemd's private copy
  rm -rf "$ROOT/var/lib/private/edge-agent"
  prefix=()
  [ -z "$ROOT" ] || prefix=(--prefix "$ROOT")
  if grep -q "^$SERVICE_USER:" "$ROOT/etc/passwd" 2>/dev/null; then
    userdel "${prefix[@]}" "$SERVICE_USER"
    say "removed user $SERVICE_USER"
  fi
  # userdel drops the user's group only where login.defs says USERGROUPS_ENAB yes
  if grep -q "^$SERVICE_USER:" "$ROOT/etc/group" 2>/dev/null; then
    groupdel "${prefix[@]}" "$SERVICE_USER"
  fi
  say "purged config, models and state"
else
  say "kept /etc/edge-agent, /var/lib/edge-agent and user $SERVICE_USER (--purge removes them)"
fi
