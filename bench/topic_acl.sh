#!/usr/bin/env bash
# What 10,000 topic rules cost: QoS 0 fan-in (publishers -> broker -> one subscriber) on a node
# without rules, then on the same binary with 10,000 rules imported (9,000 per-user rules of
# other tenants, 1,000 rules for everyone under the benchmark's first level `bench/`, so each
# decision the cache misses walks a thousand filters), alternating, RUNS times each.
#
#   bench/topic_acl.sh [publishers] [messages-per-publisher] [runs]
#
# Needs a release build (cargo build --release) and mosquitto (bench/common.sh checks).
set -euo pipefail
cd "$(dirname "$0")/.."
PUBS=${1:-4}; MSGS=${2:-250000}; RUNS=${3:-3}
. bench/common.sh

rules="$work/rules.acl"
{
  echo "pattern readwrite bench/#"
  for i in $(seq 1 999); do echo "pattern deny bench/x$i/#"; done
  for i in $(seq 1 9000); do printf 'user u%s\ntopic readwrite tenants/u%s/#\n' "$i" "$i"; done
} > "$rules"

run_fubar() { # $1 = label, $2 = import rules (yes/no)
  local port; port=$(free_port)
  local name="bench-$1@localhost"
  printf '[session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 1073741824\n' > "$work/$1.toml"
  rm -rf "$work/data" "$work/$1.log"
  "$FUBAR" node --bind 127.0.0.1 --mqtt-port "$port" --name "$name" \
    --data-dir "$work/data" --config "$work/$1.toml" > "$work/$1.log" 2>&1 &
  local pid=$!
  until grep -qs 'listening on' "$work/$1.log"; do sleep 0.1; done
  if [ "$2" = yes ]; then
    "$FUBAR" ctl --data-dir "$work/data" --name "$name" acl topic import "$rules" >&2
    "$FUBAR" ctl --data-dir "$work/data" --name "$name" acl topic list | tail -1 >&2
  fi
  "$FUBAR" bench fanin -p "$port" --publishers "$PUBS" --messages "$MSGS" --size 64 -q 0 --json
  kill -TERM "$pid"; wait "$pid" || true
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $PUBS publishers x $MSGS QoS 0 messages of 64 B, one subscriber"
for r in $(seq 1 "$RUNS"); do
  printf 'run %s no rules     ' "$r"; run_fubar none no
  printf 'run %s 10,000 rules ' "$r"; run_fubar rules yes
done
