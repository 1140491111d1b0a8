#!/usr/bin/env bash
# MQTT over WebSocket against TCP, on one fubar: the memory an idle connection holds (issue 19:
# at most 2x TCP) and QoS 0 fan-in throughput (issue 19: at least 0.7 of TCP).
#
#   bench/ws.sh [clients] [publishers] [messages-per-publisher]
#
# Needs a release build (cargo build --release). Each measurement starts a fresh node, so the
# RSS before and after is that transport's alone.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-10000}; PUBS=${2:-4}; MSGS=${3:-50000}
. bench/common.sh
printf '[log]\nclasses = { warning = "fubar" }\n[session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 1073741824\n' > "$work/fubar.toml"

node() { # starts a node with a ws listener; sets P (tcp), W (ws), pid
  P=$(free_port); W=$(free_port)
  rm -rf "$work/data" "$work/fubar.log"  # no line of the node before
  "$FUBAR" node --bind 127.0.0.1 --mqtt-port "$P" --ws-port "$W" --name bench@localhost \
    --data-dir "$work/data" --config "$work/fubar.toml" > "$work/fubar.log" 2>&1 &
  pid=$!
  until grep -qs 'listening on mqtt://' "$work/fubar.log"; do sleep 0.1; done
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }

echo "# $(date -u +%FT%TZ) $(nproc) cores; $CLIENTS idle clients; $PUBS x $MSGS QoS 0 messages of 64 B to one subscriber"
node; printf 'conns tcp  '; "$FUBAR" bench conns -p "$P" --clients "$CLIENTS" --broker-pid "$pid" --json; stop
node; printf 'conns ws   '; "$FUBAR" bench conns -p "$W" --ws --clients "$CLIENTS" --broker-pid "$pid" --json; stop
node
printf 'qos0 tcp   '; "$FUBAR" bench fanin -p "$P" --publishers "$PUBS" --messages "$MSGS" -q 0 --json
printf 'qos0 ws    '; "$FUBAR" bench fanin -p "$W" --ws --publishers "$PUBS" --messages "$MSGS" -q 0 --json
stop
