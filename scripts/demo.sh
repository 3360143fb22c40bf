#!/usr/bin/env bash
# The main job in one command: install, start a broker if needed, start the agent with the
# shipped default model, publish a few sentences with a real MQTT client, show the labels,
# then keep serving until Ctrl-C.
#   bash scripts/demo.sh                  # or: bash scripts/demo.sh --homeassistant
# --homeassistant: also announce the agent to Home Assistant (MQTT discovery) and print the
#                  discovery topic and the entities it created.
# Environment: EDGE_AGENT_CONFIG (default config/edge-agent.yaml),
#              EDGE_AGENT_BROKER_PORT / EDGE_AGENT_BROKER_HOST (override the config's broker).
set -euo pipefail
cd "$(dirname "$0")/.."

HOMEASSISTANT=0
for arg in "$@"; do
    case "$arg" in
        --homeassistant) HOMEASSISTANT=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) printf 'demo: unknown option %s (try --help)\n' "$arg" >&2; exit 2 ;;
    esac
done

PYTHON="${PYTHON:-python3}"
VENV="${EDGE_AGENT_VENV:-.venv}"
CONFIG="${EDGE_AGENT_CONFIG:-config/edge-agent.yaml}"
RUN_DIR="state/demo"
mkdir -p "$RUN_DIR"

say() { printf '==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# 1. mosquitto broker and clients
if ! { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } \
    || ! command -v mosquitto_pub >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing mosquitto and mosquitto-clients (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
    else
        die "mosquitto is missing; run: sudo apt-get install -y mosquitto mosquitto-clients"
    fi
fi
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

# 2. virtual environment with the daemon's runtime dependencies only
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV" || die "python3 venv support is missing; run: sudo apt-get install -y python3-venv"
fi
say "installing edge-agent (runtime dependencies only)"
"$VENV/bin/python" -m pip install -q -e .

# 3. the effective config tells the broker address and the model
"$VENV/bin/edge-agent" check-config --config "$CONFIG" > "$RUN_DIR/effective.yaml" \
    || die "config $CONFIG is not valid (see the line above)"
if [ "$HOMEASSISTANT" = 1 ]; then
    # The effective config has every path resolved, so it works from $RUN_DIR as it is;
    # only the masked password is dropped (its source, if any, is still named).
    "$VENV/bin/python" - "$RUN_DIR/effective.yaml" "$RUN_DIR/homeassistant.yaml" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
c["broker"].pop("password", None)
c["homeassistant"] = {**c.get("homeassistant", {}), "enabled": True}
yaml.safe_dump(c, open(sys.argv[2], "w"), sort_keys=False)
PY
    CONFIG="$RUN_DIR/homeassistant.yaml"
    say "Home Assistant discovery on (config: $CONFIG)"
fi
read -r HOST PORT CLIENT_ID MODEL MODELS_DIR SUBSCRIBE < <("$VENV/bin/python" - "$RUN_DIR/effective.yaml" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
r = c["routes"][0]
print(c["broker"]["host"], c["broker"]["port"], c["broker"]["client_id"], r["model"], c["models"]["dir"], r["subscribe"])
PY
)
[ -d "$MODELS_DIR/$MODEL" ] || die "model '$MODEL' not found in $MODELS_DIR (the shipped default model is models/$MODEL)"

PIDS=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'echo; say "stopping"; exit 0' INT TERM

# 4. a broker: use the one listening on the configured port, else start a private one
if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
    say "using the MQTT broker already listening on $HOST:$PORT"
else
    say "starting a private mosquitto on $HOST:$PORT (data in $RUN_DIR/broker)"
    mkdir -p "$RUN_DIR/broker"
    cat > "$RUN_DIR/broker/mosquitto.conf" <<CONF
listener $PORT $HOST
allow_anonymous true
persistence true
persistence_location $PWD/$RUN_DIR/broker/
user $(id -un)
log_dest file $PWD/$RUN_DIR/broker/mosquitto.log
CONF
    "$MOSQUITTO" -c "$RUN_DIR/broker/mosquitto.conf" 2>/dev/null & PIDS+=($!)
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null && break; sleep 0.1; done
fi

# 5. the agent; its JSON logs go to a file so the labels stay readable here
STATUS_TOPIC="edge-agent/$CLIENT_ID/status"
say "starting the agent (model $MODEL; logs in $RUN_DIR/agent.log)"
# Its own session (setsid): Ctrl-C reaches this script only, which then sends the agent one
# SIGTERM (a second signal would skip the graceful drain).
setsid "$VENV/bin/edge-agent" run --config "$CONFIG" > "$RUN_DIR/agent.log" 2>&1 &
AGENT=$!
PIDS+=("$AGENT")
for _ in $(seq 300); do
    if ! kill -0 "$AGENT" 2>/dev/null; then
        tail -n 5 "$RUN_DIR/agent.log" >&2
        die "the agent stopped during startup (see above)"
    fi
    state=$(mosquitto_sub -h "$HOST" -p "$PORT" -t "$STATUS_TOPIC" -C 1 -W 1 2>/dev/null || true)
    case "$state" in *'"online"'*) break ;; esac
done
case "$state" in *'"online"'*) say "agent online: $state" ;; *) die "agent not online after 30 s" ;; esac

# 5b. with --homeassistant: what the agent announced (retained, so readable any time)
show_discovery() {
    local topic
    topic=$("$VENV/bin/python" - "$CONFIG" <<'PY'
import re, sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
node = "edge_agent_" + (re.sub(r"[^a-zA-Z0-9_-]+", "_", c["broker"]["client_id"]) or "agent")
print(f'{c["homeassistant"]["discovery_prefix"].rstrip("/")}/device/{node}/config')
PY
)
    mosquitto_sub -h "$HOST" -p "$PORT" -t "$topic" -v -C 1 -W 5 > "$RUN_DIR/discovery.txt" 2>/dev/null || true
    "$VENV/bin/python" - "$RUN_DIR/discovery.txt" <<'PY' || say "no discovery config on $topic within 5 s (see $RUN_DIR/agent.log)"
import json, sys
topic, _, payload = open(sys.argv[1]).readline().rstrip("\n").partition(" ")
if not payload:
    sys.exit(1)
print(f"==> Home Assistant discovery: {topic} (retained)")
for key, component in json.loads(payload)["cmps"].items():
    name = component.get("name", key)
    print(f"    {component['p']:7} {name:32} <- {component.get('state_topic', '')}")
PY
}
if [ "$HOMEASSISTANT" = 1 ]; then
    show_discovery
    say "wildcard routes get entities per topic on its first message (shown after the samples)"
fi

# 6. show results as they come back, then publish sample sentences
TOPIC="${SUBSCRIBE//+/demo}"
TOPIC="${TOPIC//#/demo}"
mosquitto_sub -h "$HOST" -p "$PORT" -t "$TOPIC/label" -t "edge-agent/$CLIENT_ID/errors" -F '%t  %p' &
PIDS+=($!)
sleep 0.5
say "publishing sample messages to $TOPIC"
for text in \
    "I love how fast this little board answers" \
    "the update broke everything and support never replied" \
    "meeting moved to 3pm" \
    '{"id": "json-1", "text": "what a fantastic day at the lake"}' \
    "this is the worst coffee I have ever had"; do
    printf '    -> %s\n' "$text"
    mosquitto_pub -h "$HOST" -p "$PORT" -q 1 -t "$TOPIC" -m "$text"
done
if [ "$HOMEASSISTANT" = 1 ]; then
    sleep 1
    show_discovery
fi
say "serving; publish your own with: mosquitto_pub -h $HOST -p $PORT -t $TOPIC -m 'some text'"
say "Ctrl-C to stop"
wait "$AGENT"
