#!/usr/bin/env bash
# What the `protocol` log class costs: QoS 0 throughput (publishers -> broker -> one
# subscriber) with the class closed, and open with a daily-file redirect, beside mosquitto on
# the same machine in the same run.
#
#   bench/log_cost.sh [publishers] [messages-per-publisher] [payload-bytes]
#
# Needs a release build (cargo build --release) and mosquitto (apt-get install mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."
PUBS=${1:-4}; MSGS=${2:-50000}; SIZE=${3:-64}
. bench/common.sh

run_fubar() { # $1 = label, $2 = [log] classes table
  local port; port=$(free_port)
  printf '[log]\nclasses = %s\n[session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 1073741824\n' "$2" > "$work/$1.toml"
  "$FUBAR" node --bind 127.0.0.1 --mqtt-port "$port" --name "bench-$1@localhost" \
    --data-dir "$work/data" --config "$work/$1.toml" > "$work/$1.log" 2>&1 &
  local pid=$!
  until grep -qs 'listening on' "$work/$1.log"; do sleep 0.1; done
  "$FUBAR" bench fanin -p "$port" --publishers "$PUBS" --messages "$MSGS" --size "$SIZE" -q 0 --json
  kill -TERM "$pid"; wait "$pid" || true
}

run_mosquitto() {
  start_mosquitto
  local port=$mosq_port pid=$mosq_pid
  "$FUBAR" bench fanin -p "$port" --publishers "$PUBS" --messages "$MSGS" --size "$SIZE" -q 0 --json
  kill -TERM "$pid"; wait "$pid" || true
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $PUBS publishers x $MSGS QoS 0 messages of $SIZE B, one subscriber"
printf 'fubar protocol closed        '; run_fubar closed '{ warning = "fubar" }'
printf 'fubar protocol -> daily file '; run_fubar open '{ warning = "fubar", protocol = "proto" }'
printf 'mosquitto                    '; run_mosquitto
