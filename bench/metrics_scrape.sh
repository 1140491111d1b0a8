#!/usr/bin/env bash
# What a Prometheus scrape costs the broker: QoS 0 fan-in (publishers -> broker -> one
# subscriber) with the HTTP endpoint on, without scrapes and with `GET /metrics` every second,
# alternated RUNS times on fresh brokers.
#
#   bench/metrics_scrape.sh [publishers] [messages-per-publisher] [payload-bytes] [runs]
#
# Needs a release build (cargo build --release; FUBAR=path overrides target/release/fubar)
# and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
PUBS=${1:-4}; MSGS=${2:-1000000}; SIZE=${3:-64}; RUNS=${4:-3}
FUBAR=${FUBAR:-$PWD/target/release/fubar}
[ -x "$FUBAR" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v curl >/dev/null || { echo "install curl" >&2; exit 1; }
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # $1 = label, $2 = scrape (1) or not (0)
  local port; port=$(free_port)
  printf '[log]\nclasses = { warning = "fubar" }\n[session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 1073741824\n' > "$work/$1.toml"
  # The previous run's log goes first: the wait below must not read it before the new node
  # truncates it.
  rm -rf "$work/data" "$work/$1.log"
  "$FUBAR" node --bind 127.0.0.1 --mqtt-port "$port" --http-port 0 --name "bench-$1@localhost" \
    --data-dir "$work/data" --config "$work/$1.toml" > "$work/$1.log" 2>&1 &
  local pid=$!
  until grep -qs 'listening on mqtt://' "$work/$1.log" && grep -qs 'http on http://' "$work/$1.log"; do
    sleep 0.1
  done
  local http; http=$(grep -o 'http://[0-9.:]*' "$work/$1.log")
  local scraper=""
  if [ "$2" = 1 ]; then
    ( while true; do curl -s -o /dev/null "$http/metrics"; sleep 1; done ) &
    scraper=$!
  fi
  "$FUBAR" bench fanin -p "$port" --publishers "$PUBS" --messages "$MSGS" --size "$SIZE" -q 0 --json
  [ -n "$scraper" ] && kill "$scraper"
  kill -TERM "$pid"; wait "$pid" || true
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $PUBS publishers x $MSGS QoS 0 messages of $SIZE B, one subscriber"
for i in $(seq "$RUNS"); do
  printf 'run %s no scrape       ' "$i"; run plain 0
  printf 'run %s scrape every 1 s ' "$i"; run scraped 1
done
