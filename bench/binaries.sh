#!/usr/bin/env bash
# Two fubar binaries side by side on QoS 0 fan-in (publishers -> broker -> one subscriber):
# what a change on the message path costs. Fresh broker per run, the binaries alternating,
# RUNS pairs; prints each run's JSON, then each binary's mean delivery rate and NEW/BASE.
#
#   bench/binaries.sh BASE NEW [publishers] [messages-per-publisher] [payload-bytes] [runs]
#
# Build BASE from the commit before the change (git archive COMMIT | tar -x -C DIR, then
# cargo build --release there) and NEW from this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bench/binaries.sh BASE NEW [publishers] [messages] [size] [runs]}
NEW=${2:?usage: bench/binaries.sh BASE NEW [publishers] [messages] [size] [runs]}
PUBS=${3:-4}; MSGS=${4:-1000000}; SIZE=${5:-64}; RUNS=${6:-6}
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # $1 = label, $2 = binary
  local port; port=$(free_port)
  printf '[log]\nclasses = { warning = "fubar" }\n[session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 1073741824\n' > "$work/$1.toml"
  rm -rf "$work/data" "$work/$1.log"
  "$2" node --bind 127.0.0.1 --mqtt-port "$port" --name "bench-$1@localhost" \
    --data-dir "$work/data" --config "$work/$1.toml" > "$work/$1.log" 2>&1 &
  local pid=$!
  until grep -qs 'listening on mqtt://' "$work/$1.log"; do sleep 0.1; done
  "$NEW" bench fanin -p "$port" --publishers "$PUBS" --messages "$MSGS" --size "$SIZE" -q 0 --json \
    | tee -a "$work/$1.json"
  kill -TERM "$pid"; wait "$pid" || true
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $PUBS publishers x $MSGS QoS 0 messages of $SIZE B, one subscriber"
for i in $(seq "$RUNS"); do
  printf 'run %s base ' "$i"; run base "$BASE"
  printf 'run %s new  ' "$i"; run new "$NEW"
done
python3 - "$work/base.json" "$work/new.json" <<'PY'
import json, statistics, sys
rates = [[json.loads(l)["delivery_rate"] for l in open(f)] for f in sys.argv[1:]]
base, new = (statistics.mean(r) for r in rates)
print(f"mean base {base:,.0f} msg/s, new {new:,.0f} msg/s, new/base {new / base:.3f}")
PY
