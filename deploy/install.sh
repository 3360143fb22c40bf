#!/usr/bin/env bash
# Install or upgrade edge-agent as a systemd service (Raspberry Pi OS / Debian bookworm).
# Idempotent: re-running it upgrades the package and the unit, keeps config, keys and models.
#
#   sudo deploy/install.sh [--device-id ID] [--wheel FILE] [--lan-only] [--no-start]
#
# Layout:  /opt/edge-agent/venv          the package and its runtime dependencies
#          /etc/edge-agent/              edge-agent.yaml, broker-password, tls/, keys/
#          /var/lib/edge-agent/models/   bundles (shipped ones copied from the repo's models/)
#          /var/lib/edge-agent/state/    attempt counters, OTA staging
#          /etc/systemd/system/edge-agent.service (+ edge-agent.service.d/)
#
# --root DIR (or ROOT=DIR) installs into a staging root instead of / and never touches the
# running system: no systemctl start, the user is written to DIR/etc/passwd. Tests use it.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install.sh [options]
  --root DIR         install under DIR instead of / (env ROOT or DESTDIR works too)
  --wheel FILE       install this wheel (default: build one from this source tree)
  --python PYTHON    interpreter for the venv (default: python3; needs >= 3.11)
  --device-id ID     client id / username written into a new config (default: hostname)
  --models DIR       shipped bundles to copy (default: <source>/models)
  --lan-only         add the drop-in that limits the agent to loopback and private networks
  --no-deps          install the package without its dependencies (tests; a venv that has them)
  --no-start         install and enable, but do not (re)start the service
  -h, --help         this text
EOF
}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${ROOT:-${DESTDIR:-}}
WHEEL=""
PYTHON=${PYTHON:-python3}
DEVICE_ID=""
MODELS_SRC="$SRC/models"
LAN_ONLY=0
NO_DEPS=0
START=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --wheel) WHEEL=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    --device-id) DEVICE_ID=$2; shift 2 ;;
    --models) MODELS_SRC=$2; shift 2 ;;
    --lan-only) LAN_ONLY=1; shift ;;
    --no-deps) NO_DEPS=1; shift ;;
    --no-start) START=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
ROOT=${ROOT%/}
[ -z "$ROOT" ] || ROOT=$(cd "$ROOT" && pwd)   # absolute: pip and venv store these paths

SERVICE_USER=edge-agent
PREFIX=$ROOT/opt/edge-agent
VENV=$PREFIX/venv
ETC=$ROOT/etc/edge-agent
STATE=$ROOT/var/lib/edge-agent
UNIT_DIR=$ROOT/etc/systemd/system
NOLOGIN=/usr/sbin/nologin

say() { echo "install: $*"; }
die() { echo "install: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || [ -n "$ROOT" ] || die "run as root (sudo), or pass --root DIR"
DEVICE_ID=${DEVICE_ID:-$(hostname -s)}
# it becomes an MQTT client id and topic level: no wildcards, separators or spaces
[[ "$DEVICE_ID" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] || die "device id '$DEVICE_ID' is not a plain name"
IS_ROOT_USER=$([ "$(id -u)" = 0 ] && echo 1 || echo 0)

# ---- 1. service user: a system account with no shell and no home of its own
ensure_user() {
  mkdir -p "$ROOT/etc"
  if grep -q "^$SERVICE_USER:" "$ROOT/etc/passwd" 2>/dev/null; then
    say "user $SERVICE_USER exists"
    return
  fi
  # useradd --prefix edits DIR/etc/{passwd,group,shadow} without chrooting (shadow >= 4.9).
  local prefix=()
  [ -z "$ROOT" ] || prefix=(--prefix "$ROOT")
  useradd "${prefix[@]}" --system --user-group --no-create-home \
    --home-dir /var/lib/edge-agent --shell "$NOLOGIN" \
    --comment "edge-agent MQTT classifier" "$SERVICE_USER"
  say "created system user $SERVICE_USER"
}

# uid/gid as the target root sees them (the host's NSS knows nothing of a staging root)
ids() {
  local uid gid
  uid=$(awk -F: -v u="$SERVICE_USER" '$1 == u { print $3 }' "$ROOT/etc/passwd")
  gid=$(awk -F: -v u="$SERVICE_USER" '$1 == u { print $4 }' "$ROOT/etc/passwd")
  echo "$uid:$gid"
}

# install -d with an owner only when we may chown (a non-root test run keeps its own)
make_dir() {  # mode owner path
  install -d -m "$1" "$3"
  [ "$IS_ROOT_USER" = 0 ] || chown "$2" "$3"
}

put_file() {  # mode owner source dest
  install -m "$1" "$3" "$4"
  [ "$IS_ROOT_USER" = 0 ] || chown "$2" "$4"
}

# ---- 2. directories
ensure_dirs() {
  local svc root_svc
  svc=$(ids)
  root_svc="0:${svc#*:}"
  make_dir 0755 0:0 "$PREFIX"
  # config: readable by the service group, writable by root only
  make_dir 0750 "$root_svc" "$ETC"
  make_dir 0750 "$root_svc" "$ETC/keys"
  make_dir 0750 "$root_svc" "$ETC/tls"
  # state: the only place the service writes (the unit's StateDirectory=edge-agent)
  make_dir 0750 "$svc" "$STATE"
  make_dir 0750 "$svc" "$STATE/models"
  make_dir 0750 "$svc" "$STATE/state"
}

# ---- 3. the package in its own venv, runtime dependencies only (no toolkit extra)
ensure_venv() {
  local want have=""
  want=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is $want; need >= 3.11"
  [ -x "$VENV/bin/python" ] && have=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' || true)
  if [ "$have" != "$want" ]; then
    # Debian splits venv support out of python3
    if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
      if [ -n "$ROOT" ] || ! command -v apt-get >/dev/null; then
        die "$PYTHON cannot make venvs: apt-get install python3-venv"
      fi
      DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
    fi
    [ -z "$have" ] || say "venv has Python $have, want $want: recreating"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    say "created venv $VENV"
  fi
  local wheel=$WHEEL build=""
  if [ -z "$wheel" ]; then
    build=$(mktemp -d)
    "$VENV/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$build" "$SRC"
    wheel=$(ls "$build"/edge_agent-*.whl)
  fi
  local pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  if [ "$NO_DEPS" = 1 ]; then
    "${pip[@]}" --no-deps --force-reinstall "$wheel"
  else
    "${pip[@]}" "$wheel"                                   # dependencies, when missing
    "${pip[@]}" --no-deps --force-reinstall "$wheel"       # same version number: new code anyway
  fi
  [ -z "$build" ] || rm -rf "$build"
  say "installed $(basename "$wheel") into $VENV"
  install -d -m 0755 "$PREFIX/share/doc"
  [ ! -f "$SRC/docs/deployment.md" ] || install -m 0644 "$SRC/docs/deployment.md" "$PREFIX/share/doc/"
}

# ---- 4. shipped bundles: copied once per version, never overwritten (bundles are immutable)
install_models() {
  local svc
  svc=$(ids)
  if [ ! -d "$MODELS_SRC" ]; then
    say "no shipped models at $MODELS_SRC: skipping"
    return
  fi
  local manifest bundle name version dest
  while IFS= read -r -d '' manifest; do
    bundle=$(dirname "$manifest")
    version=$(basename "$bundle")
    name=$(basename "$(dirname "$bundle")")
    case "$name/$version" in .* | */.*) continue ;; esac   # staging folders
    dest=$STATE/models/$name/$version
    if [ -d "$dest" ]; then
      say "model $name $version already installed"
      continue
    fi
    make_dir 0750 "$svc" "$STATE/models/$name"
    # The agent watches this directory: stage under a dot-name it ignores, then rename.
    rm -rf "$STATE/models/$name/.tmp-$version"
    cp -R "$bundle" "$STATE/models/$name/.tmp-$version"
    [ "$IS_ROOT_USER" = 0 ] || chown -R "$svc" "$STATE/models/$name/.tmp-$version"
    chmod -R u=rwX,g=rX,o= "$STATE/models/$name/.tmp-$version"
    sync
    mv -T "$STATE/models/$name/.tmp-$version" "$dest"
    say "installed model $name $version"
  done < <(find "$MODELS_SRC" -mindepth 3 -maxdepth 3 -name manifest.json -print0 | sort -z)
}

# ---- 5. configuration: written once, then the operator's; the new default lands beside it
install_config() {
  local svc root_svc
  svc=$(ids)
  root_svc="0:${svc#*:}"
  local rendered
  rendered=$(mktemp)
  sed "s/DEVICE_ID/$DEVICE_ID/g" "$SRC/deploy/edge-agent.yaml" > "$rendered"
  if [ -f "$ETC/edge-agent.yaml" ]; then
    put_file 0640 "$root_svc" "$rendered" "$ETC/edge-agent.yaml.dist"
    say "kept $ETC/edge-agent.yaml (new default: edge-agent.yaml.dist)"
  else
    put_file 0640 "$root_svc" "$rendered" "$ETC/edge-agent.yaml"
    say "wrote $ETC/edge-agent.yaml for device $DEVICE_ID"
  fi
  rm -f "$rendered"
  # LoadCredential= fails the start when its file is missing: keep an empty one (root only;
  # systemd reads it as root and hands the service a private copy).
  if [ ! -f "$ETC/broker-password" ]; then
    put_file 0600 0:0 /dev/null "$ETC/broker-password"
    say "created empty $ETC/broker-password: put the device's broker password in it"
  fi
}

# ---- 6. the unit
install_unit() {
  install -d -m 0755 "$UNIT_DIR"
  install -m 0644 "$SRC/systemd/edge-agent.service" "$UNIT_DIR/edge-agent.service"
  if [ "$LAN_ONLY" = 1 ]; then
    install -d -m 0755 "$UNIT_DIR/edge-agent.service.d"
    install -m 0644 "$SRC/systemd/edge-agent.service.d/lan-only.conf" "$UNIT_DIR/edge-agent.service.d/"
  fi
  say "installed $UNIT_DIR/edge-agent.service"
}

# ---- 7. systemctl: only against a running systemd on this very system
activate() {
  if [ -n "$ROOT" ]; then
    # offline enablement works on a staging root: it only writes the WantedBy= symlink
    systemctl --root="$ROOT" --quiet enable edge-agent.service
    say "enabled in $ROOT (not started: staging root)"
  elif [ ! -d /run/systemd/system ]; then
    # an image being built, a chroot or a container: enable offline so that it boots enabled
    systemctl --root=/ --quiet enable edge-agent.service
    say "systemd is not running here (image build, chroot, container?): enabled, not started"
  else
    systemctl daemon-reload
    systemctl enable edge-agent.service
    if [ "$START" = 1 ]; then
      systemctl restart edge-agent.service     # restart, not start: picks up an upgrade
      say "started; follow it with: journalctl -u edge-agent -f -o cat"
    fi
  fi
}

ensure_user
ensure_dirs
ensure_venv
install_models
install_config
install_unit
activate
say "done"
