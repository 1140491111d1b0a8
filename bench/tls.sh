#!/usr/bin/env bash
# TLS cost: connection handshakes per second, and QoS 0 throughput over TLS against plain TCP,
# for fubar and for mosquitto (same certificates, same machine, same run).
#
#   bench/tls.sh [handshakes] [publishers] [messages-per-publisher]
#
# Needs a release build (cargo build --release) and mosquitto (apt-get install mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}; PUBS=${2:-4}; MSGS=${3:-50000}
. bench/common.sh
"$FUBAR" ssl new-certs --dir "$work/ssl" >/dev/null
CA="$work/ssl/cacert.pem"

measure() { # $1 label, $2 plain port, $3 tls port
  printf '%-10s handshakes tcp  ' "$1"; "$FUBAR" bench handshakes -p "$2" --count "$N" --json
  printf '%-10s handshakes tls  ' "$1"; "$FUBAR" bench handshakes -p "$3" --count "$N" --cafile "$CA" --server-name localhost --json
  printf '%-10s qos0 tcp        ' "$1"; "$FUBAR" bench fanin -p "$2" --publishers "$PUBS" --messages "$MSGS" -q 0 --json
  printf '%-10s qos0 tls        ' "$1"; "$FUBAR" bench fanin -p "$3" --publishers "$PUBS" --messages "$MSGS" -q 0 --cafile "$CA" --server-name localhost --json
}

P=$(free_port); T=$(free_port)
printf '[ssl]\ncertfile = "%s"\nkeyfile = "%s"\n[log]\nclasses = { warning = "fubar" }\n[session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 1073741824\n' \
  "$work/ssl/cert.pem" "$work/ssl/key.pem" > "$work/fubar.toml"
"$FUBAR" node --bind 127.0.0.1 --mqtt-port "$P" --mqtts-port "$T" --name bench@localhost \
  --data-dir "$work/data" --config "$work/fubar.toml" > "$work/fubar.log" 2>&1 &
pid=$!
until grep -qs 'listening on mqtt://' "$work/fubar.log"; do sleep 0.1; done
echo "# $(date -u +%FT%TZ) $(nproc) cores; $N handshakes 8 at a time; $PUBS x $MSGS QoS 0 messages of 64 B to one subscriber"
measure fubar "$P" "$T"
kill -TERM "$pid"; wait "$pid" || true

P=$(free_port); T=$(free_port)
cat > "$work/mosq.conf" <<CONF
user root
allow_anonymous true
max_queued_messages 0
listener $P 127.0.0.1
listener $T 127.0.0.1
cafile $CA
certfile $work/ssl/cert.pem
keyfile $work/ssl/key.pem
CONF
mosquitto -c "$work/mosq.conf" > "$work/mosq.log" 2>&1 &
pid=$!
until mosquitto_sub -h 127.0.0.1 -p "$P" -t x -E 2>/dev/null; do sleep 0.1; done
measure mosquitto "$P" "$T"
kill -TERM "$pid"; wait "$pid" || true
