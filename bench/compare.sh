#!/usr/bin/env bash
# One scenario against fubar, mosquitto and rumqttd on this machine, in one run: each broker
# fresh for every run, the brokers alternating, three runs each (RUNS=n to change). Prints
# every run's JSON, then each figure's median per broker and the ratios fubar/mosquitto and
# fubar/rumqttd, with the broker's CPU seconds (work per broker CPU-second is steadier than
# wall-clock rates on a shared, noisy machine).
#
#   bench/compare.sh SCENARIO [extra fubar bench flags...]
#
# Scenarios: fanin-qos0 fanin-qos1 fanout-qos0 fanout-qos1 latency-qos0 latency-qos1
#            conns (CLIENTS=n, 10,000 by default) handshakes probe
#
# Brokers are configured fairly: TCP_NODELAY on everywhere; fubar's and mosquitto's queues bounded
# at 1,000,000 messages, in-flight windows of 100 (rumqttd's default; fubar's own is 32),
# rumqttd's connection limit and connection delay lifted: none drops or throttles what
# the others accept. Needs a release build (cargo build --release); installs
# mosquitto (apt) and rumqttd (cargo install, into target/bench-tools) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${1:?usage: bench/compare.sh SCENARIO [extra fubar bench flags...]}; shift
RUNS=${RUNS:-3}
BROKERS=${BROKERS:-fubar mosquitto rumqttd}

if ! command -v mosquitto >/dev/null; then
  apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null
fi
RUMQTTD=$(command -v rumqttd || echo "$PWD/target/bench-tools/bin/rumqttd")
if [ ! -x "$RUMQTTD" ]; then
  echo "installing rumqttd (cargo install rumqttd) ..." >&2
  cargo install -q rumqttd --root "$PWD/target/bench-tools"
fi
. bench/common.sh

# The shapes of issue 21's table (64-byte payloads, the bench's default); MESSAGES=n changes
# the messages per publisher of a run, CLIENTS=n the clients of `conns` (19000 for the
# memory row: the most this machine's 20,000 descriptors allow).
case $SCENARIO in
  fanin-qos0)   ARGS=(fanin -q 0 --publishers 4 --messages "${MESSAGES:-250000}") ;;
  fanin-qos1)   ARGS=(fanin -q 1 --publishers 4 --window 100 --messages "${MESSAGES:-100000}") ;;
  fanout-qos0)  ARGS=(fanout -q 0 --subscribers 100 --messages "${MESSAGES:-20000}") ;;
  fanout-qos1)  ARGS=(fanout -q 1 --subscribers 100 --messages "${MESSAGES:-10000}") ;;
  latency-qos0) ARGS=(latency -q 0 --rate 5000 --messages "${MESSAGES:-25000}") ;;
  latency-qos1) ARGS=(latency -q 1 --rate 5000 --messages "${MESSAGES:-25000}") ;;
  conns)        ARGS=(conns --clients "${CLIENTS:-10000}") ;;
  handshakes)   ARGS=(handshakes --count 5000) ;;
  probe)        ARGS=(probe --clients 1000 --interval 1 --duration 5) ;;
  *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac

# Waits until something accepts TCP connections on 127.0.0.1:$1.
wait_port() {
  local i
  for i in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2; return 1
}

start_fubar() { # $1 = port; prints the pid
  rm -rf "$work/data"
  # Its defaults but for the queue bound (issue 21's table: 1,000,000 messages, as mosquitto's)
  # and the in-flight window (100, as the others).
  printf '[session]\ninflight_window = 100\nmax_queued_messages = 1000000\nmax_queued_bytes = 8589934592\n' > "$work/fubar.toml"
  "$FUBAR" node --bind 127.0.0.1 --mqtt-port "$1" --name "bench@localhost" \
    --data-dir "$work/data" --config "$work/fubar.toml" > "$work/fubar.log" 2>&1 &
  echo $!
}

start_mosquitto() {
  cat > "$work/mosquitto.conf" <<CONF
listener $1 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 1000000
max_inflight_messages 100
max_connections -1
persistence false
CONF
  mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
  echo $!
}

start_rumqttd() {
  cat > "$work/rumqttd.toml" <<CONF
id = 0
[router]
id = 0
max_connections = 30000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$1"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
    dynamic_filters = true
CONF
  "$RUMQTTD" -q -c "$work/rumqttd.toml" > "$work/rumqttd.log" 2>&1 &
  echo $!
}

results="$work/results.jsonl"
echo "# $(date -u +%FT%TZ) $(nproc) cores; fubar bench ${ARGS[*]} $*; $RUNS runs each" >&2
for run in $(seq "$RUNS"); do
  for broker in $BROKERS; do
    port=$(free_port)
    pid=$("start_$broker" "$port")
    wait_port "$port"
    json=$("$FUBAR" bench "${ARGS[@]}" "$@" -p "$port" --broker-pid "$pid" --json) || json='{"failed":true}'
    kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    echo "$broker run $run: $json" >&2
    printf '{"broker":"%s","result":%s}\n' "$broker" "$json" >> "$results"
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
brokers = list(dict.fromkeys(r["broker"] for r in rows))
def flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flat(v, prefix + k + ".")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield prefix + k, v
per = {b: {} for b in brokers}
for r in rows:
    for k, v in flat(r["result"]):
        per[r["broker"]].setdefault(k, []).append(v)
for b, figs in per.items():
    cpu = figs.get("broker.cpu_seconds", [])
    work = figs.get("delivered") or figs.get("received") or figs.get("connected")
    if cpu and work:
        figs["work_per_cpu_second"] = [w / c if c else 0 for w, c in zip(work, cpu)]
keys = [k for k in per[brokers[0]] if all(k in per[b] for b in brokers)]
print(f"{'median of ' + str(len(per[brokers[0]].get(keys[0], []))) + ' runs':<28}" + "".join(f"{b:>16}" for b in brokers)
      + "".join(f"{'fubar/' + b:>18}" for b in brokers if b != "fubar"))
for k in keys:
    med = {b: statistics.median(per[b][k]) for b in brokers}
    line = f"{k:<28}" + "".join(f"{med[b]:>16,.1f}" for b in brokers)
    if "fubar" in med:
        for b in brokers:
            if b != "fubar":
                line += f"{(med['fubar'] / med[b] if med[b] else float('nan')):>18.2f}"
    print(line)
PY
