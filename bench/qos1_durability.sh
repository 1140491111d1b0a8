#!/usr/bin/env bash
# QoS 1 throughput with fubar's group commit on and off, beside mosquitto on the same machine
# in the same run. Each publish also lands in an offline persistent session's queue, so every
# acknowledgement depends on a stored copy (the durability rule of store.sync = "group").
#
#   bench/qos1_durability.sh [publishers] [messages-per-publisher] [payload-bytes]
#
# Needs a release build (cargo build --release) and mosquitto (apt-get install mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."
PUBS=${1:-4}; MSGS=${2:-20000}; SIZE=${3:-64}
. bench/common.sh

# A persistent subscriber that then goes away: its session queues every QoS 1 message.
park_subscriber() {
  mosquitto_sub -h 127.0.0.1 -p "$1" -i parked -c -q 1 -t bench/fanin -E >/dev/null
}

run_fubar() { # $1 = group | none
  local port; port=$(free_port)
  printf '[store]\nsync = "%s"\n[session]\nmax_queued_messages = 10000000\nmax_queued_bytes = 4294967296\n' "$1" > "$work/$1.toml"
  "$FUBAR" node --bind 127.0.0.1 --mqtt-port "$port" --name "bench-$1@localhost" \
    --data-dir "$work/data" --config "$work/$1.toml" --log-stdout error > "$work/$1.log" 2>&1 &
  local pid=$!
  until grep -qs 'listening on' "$work/$1.log"; do sleep 0.1; done
  park_subscriber "$port"
  "$FUBAR" bench fanin -p "$port" --publishers "$PUBS" --messages "$MSGS" --size "$SIZE" -q 1 --subscribers 0 -t bench/fanin --json
  kill -TERM "$pid"; wait "$pid" || true
}

run_mosquitto() {
  local port; port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\n' "$port" > "$work/mosq.conf"
  mosquitto -c "$work/mosq.conf" > "$work/mosq.log" 2>&1 &
  local pid=$!
  until mosquitto_sub -h 127.0.0.1 -p "$port" -t x -E 2>/dev/null; do sleep 0.1; done
  park_subscriber "$port"
  "$FUBAR" bench fanin -p "$port" --publishers "$PUBS" --messages "$MSGS" --size "$SIZE" -q 1 --subscribers 0 -t bench/fanin --json
  kill -TERM "$pid"; wait "$pid" || true
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $PUBS publishers x $MSGS QoS 1 messages of $SIZE B, window 32"
printf 'fubar store.sync=group  '; run_fubar group
printf 'fubar store.sync=none   '; run_fubar none
printf 'mosquitto (in memory)   '; run_mosquitto
