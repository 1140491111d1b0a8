#!/usr/bin/env bash
# Issue 15.2: what routing a PUBLISH after the SUBSCRIBEs that reached the server before it
# costs and gives. For each run: the subscribe/publish race (bench/sub_race.py, raw sockets)
# and QoS 0 fan-in (4 publishers -> 1 subscriber), fubar with the ordering on (the default
# mqtt.publish_order_wait_us) and off (0), and mosquitto, on the same machine in the same run.
#
#   bench/publish_order.sh [runs] [race-tries] [messages-per-publisher]
#
# Needs a release build (cargo build --release) and mosquitto (apt-get install mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; TRIES=${2:-1000}; MSGS=${3:-100000}
. bench/common.sh

run_fubar() { # $1 = label, $2 = publish_order_wait_us
  local port; port=$(free_port)
  printf '[mqtt]\npublish_order_wait_us = %s\n[session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 1073741824\n' "$2" > "$work/$1.toml"
  rm -rf "$work/data"
  "$FUBAR" node --bind 127.0.0.1 --mqtt-port "$port" --name "bench-$1@localhost" \
    --data-dir "$work/data" --config "$work/$1.toml" > "$work/$1.log" 2>&1 &
  local pid=$!
  until grep -qs 'listening on' "$work/$1.log"; do sleep 0.1; done
  printf '%-22s race: %s  fan-in: ' "$1" "$(python3 bench/sub_race.py "$port" "$TRIES")"
  "$FUBAR" bench fanin -p "$port" --publishers 4 --messages "$MSGS" -q 0 --json
  kill -TERM "$pid"; wait "$pid" || true
}

run_mosquitto() {
  local port; port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n' "$port" > "$work/mosq.conf"
  mosquitto -c "$work/mosq.conf" > "$work/mosq.log" 2>&1 &
  local pid=$!
  until mosquitto_sub -h 127.0.0.1 -p "$port" -t x -E 2>/dev/null; do sleep 0.1; done
  printf '%-22s race: %s  fan-in: ' mosquitto "$(python3 bench/sub_race.py "$port" "$TRIES")"
  "$FUBAR" bench fanin -p "$port" --publishers 4 --messages "$MSGS" -q 0 --json
  kill -TERM "$pid"; wait "$pid" || true
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg); $TRIES race tries, 4 x $MSGS QoS 0 fan-in"
for run in $(seq "$RUNS"); do
  echo "## run $run"
  run_fubar ordered 10000
  run_fubar unordered 0
  run_mosquitto
done
