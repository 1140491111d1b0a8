#!/usr/bin/env bash
# Issue 23: the cost of replicated persistent sessions. A 3-node cluster on loopback, once with
# `session.replicas = 0` and once with 1, RUNS times each (3 by default), alternating; prints
# each run's figure, then the medians and their ratio.
#
#   bench/replicas.sh [PUBLISHERS MESSAGES SIZE]     # default 4 20000 64; PUB_ON=n1 publishes
#                                                    # on the subscriber's node instead;
#                                                    # CLEAN=1: a clean-session subscriber,
#                                                    # online, instead of the parked one
#
# Per run: a fresh cluster (n1 founds, n2 and n3 join); a persistent subscriber
# (`mosquitto_sub -c -i parked -q 1 -t bench/fanin -E`) subscribes on n1 and leaves, so every
# message is queued (and stored) for an offline persistent session on n1; then
# `fubar bench fanin -q 1 --subscribers 0` publishes on n2: every PUBACK waits for n1 to have
# the message stored and, with replicas = 1, for n1's backup to have its copy.
set -euo pipefail
cd "$(dirname "$0")/.."
PUBS=${1:-4}; MSGS=${2:-20000}; SIZE=${3:-64}; RUNS=${RUNS:-3}
FUBAR=${FUBAR:-${CARGO_TARGET_DIR:-$PWD/target}/release/fubar}
[ -x "$FUBAR" ] || { echo "build first: cargo build --release --workspace ($FUBAR)" >&2; exit 1; }
work=$(mktemp -d)
# `start` runs in a command substitution (a subshell), so the pids go to a file, not an array
# (an array there never reached the parent: every run left its three nodes running).
pids="$work/pids"; : > "$pids"
stop_nodes() { while read -r p; do kill -9 "$p" 2>/dev/null || true; done < "$pids"; : > "$pids"; }
trap 'stop_nodes; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
wait_line() { for _ in $(seq 1 600); do grep -m1 -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "never saw '$2' in $1" >&2; tail -20 "$1" >&2; return 1; }

# start DIR NAME MASTER: prints "MQTT_PORT CLUSTER_PORT".
start() {
  local dir=$1 name=$2 master=$3 port; port=$(free_port)
  "$FUBAR" node --name "$name@localhost" --master "$master" --data-dir "$dir" \
    --config "$dir/cluster.toml" --bind 127.0.0.1 --mqtt-port "$port" --cluster-port 0 \
    --log-stdout info,warning > "$dir/$name.log" 2>&1 &
  echo "$!" >> "$pids"
  local line; line=$(wait_line "$dir/$name.log" "cluster port on cluster://" | tail -1)
  wait_line "$dir/$name.log" "listening on mqtt://" >/dev/null
  echo "$port ${line##*:}"
}

# run REPLICAS: one fresh cluster, one fan-in; prints messages/s.
run() {
  local dir; dir=$(mktemp -d -p "$work")
  printf '[session]\nreplicas = %s\nmax_queued_messages = 10000000\nmax_queued_bytes = 4294967296\n' "$1" > "$dir/cluster.toml"
  local a b c
  read -r a ac < <(start "$dir" n1 n1@localhost)
  read -r b _ < <(start "$dir" n2 "n1@localhost:$ac")
  read -r c _ < <(start "$dir" n3 "n1@localhost:$ac")
  wait_line "$dir/n3.log" "joined the cluster" >/dev/null
  [ "$1" = 0 ] || wait_line "$dir/n1.log" "persistent session replication switched" >/dev/null
  local subs=0
  if [ "${CLEAN:-0}" = 1 ]; then
    subs=1 # the bench's own subscriber: clean session, online, on n1
  else
    mosquitto_sub -h 127.0.0.1 -p "$a" -i parked -c -q 1 -t bench/fanin -E >/dev/null
  fi
  local pub=$b; [ "${PUB_ON:-n2}" = n1 ] && pub=$a
  "$FUBAR" bench fanin -p "$pub" --sub-port "$a" --publishers "$PUBS" --messages "$MSGS" \
    --size "$SIZE" -q 1 --subscribers "$subs" -t bench/fanin --json \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["publish_rate"]))'
  stop_nodes
}

zero=(); one=()
for i in $(seq 1 "$RUNS"); do
  z=$(run 0); o=$(run 1); zero+=("$z"); one+=("$o")
  echo "run $i: replicas 0 $z msg/s, replicas 1 $o msg/s"
done
mz=$(printf '%s\n' "${zero[@]}" | median); mo=$(printf '%s\n' "${one[@]}" | median)
echo "median: replicas 0 $mz msg/s, replicas 1 $mo msg/s, ratio $(awk -v a="$mo" -v b="$mz" 'BEGIN { printf "%.2f", a / b }')"
