#!/usr/bin/env bash
# The main job in one command: install, start a broker if needed, start the agent with the
# shipped default model, publish a few sentences with a real MQTT client, show the labels,
# then keep serving until Ctrl-C.
#   bash scripts/demo.sh
# Environment: EDGE_AGENT_CONFIG (default config/edge-agent.yaml),
#              EDGE_AGENT_BROKER_PORT / EDGE_AGENT_BROKER_HOST (override the config's broker).
set -euo pipefail
cd "$(dirname "$0")/.."

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
say "serving; publish your own with: mosquitto_pub -h $HOST -p $PORT -t $TOPIC -m 'some text'"
say "Ctrl-C to stop"
wait "$AGENT"
