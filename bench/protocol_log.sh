#!/usr/bin/env bash
# Whether the `protocol` (or `packet`, `trace`) class keeps up with the broker: QoS 0 fan-in
# with the class closed and with it open to a daily file, side by side on one build, and
# whether every event the broker produced was recorded or counted as dropped.
#
#   bench/protocol_log.sh saturate [publishers] [messages-per-publisher]
#       throughput with the class closed, then open (interleaved, RUNS times), and the
#       events written and dropped of each open run
#   bench/protocol_log.sh steady [rate] [seconds]
#       one run at a fixed offered rate (fubar bench fanin --rate) with the class open:
#       events written and dropped
#
# CLASS (protocol, packet or trace; default protocol) picks the class; RUNS (default 3) the
# pairs of the saturation runs. Needs a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-saturate}
CLASS=${CLASS:-protocol}
RUNS=${RUNS:-3}
. bench/common.sh

# Starts a node whose [log] classes table is $2: sets $port and $pid.
start_node() { # $1 = label, $2 = classes table, $3 = extra toml
  port=$(free_port)
  printf '[log]\nclasses = %s\n%s\n[session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 1073741824\n' \
    "$2" "${3:-}" > "$work/$1.toml"
  rm -rf "$work/data-$1"
  "$FUBAR" node --bind 127.0.0.1 --mqtt-port "$port" --name "bench-$1@localhost" \
    --data-dir "$work/data-$1" --config "$work/$1.toml" > "$work/$1.log" 2>&1 &
  pid=$!
  until grep -qs 'listening on' "$work/$1.log"; do sleep 0.1; done
}

# The class's line of `fubar ctl log list` (events written, dropped) on the node of label $1.
class_counts() {
  "$FUBAR" ctl --data-dir "$work/data-$1" --name "bench-$1@localhost" log list \
    | awk -v c="$CLASS" '$1 == c'
}

stop_node() { kill -TERM "$pid"; wait "$pid" || true; }

open_table() {
  case "$CLASS" in
    trace) echo "{ warning = \"fubar\", trace = \"proto\" }" ;;
    *) echo "{ warning = \"fubar\", $CLASS = \"proto\" }" ;;
  esac
}

# A traced run follows every client: `ctl trace client` for each bench client id is not
# known ahead, so the trace class is measured with a topic trace on the bench topic.
trace_all() {
  [ "$CLASS" = trace ] || return 0
  "$FUBAR" ctl --data-dir "$work/data-$1" --name "bench-$1@localhost" trace topic 'bench/#' > /dev/null
}

case "$MODE" in
  saturate)
    PUBS=${2:-4}; MSGS=${3:-250000}
    echo "# $(date -u +%FT%TZ) $(nproc) cores: $CLASS, QoS 0 fan-in $PUBS x $MSGS of 64 B, one subscriber, $RUNS pairs"
    for i in $(seq "$RUNS"); do
      start_node closed '{ warning = "fubar" }'
      printf 'closed  '
      "$FUBAR" bench fanin -p "$port" --publishers "$PUBS" --messages "$MSGS" -q 0 --json
      stop_node
      start_node open "$(open_table)" "${LOG_EXTRA:-}"
      trace_all open
      printf 'open    '
      "$FUBAR" bench fanin -p "$port" --publishers "$PUBS" --messages "$MSGS" -q 0 --json
      "$FUBAR" ctl --data-dir "$work/data-open" --name "bench-open@localhost" log list > "$work/list"
      printf 'counts  %s\n' "$(awk -v c="$CLASS" '$1 == c' "$work/list")"
      stop_node
    done
    ;;
  steady)
    RATE=${2:-200000}; SECS=${3:-60}
    echo "# $(date -u +%FT%TZ) $(nproc) cores: $CLASS open to a daily file, QoS 0 fan-in offered at $RATE msg/s for $SECS s"
    start_node open "$(open_table)" "${LOG_EXTRA:-}"
    trace_all open
    "$FUBAR" bench fanin -p "$port" --publishers 4 --messages 100000000 --rate "$RATE" \
      --duration "$SECS" -q 0 --json
    "$FUBAR" ctl --data-dir "$work/data-open" --name "bench-open@localhost" log list
    stop_node
    ;;
  *) echo "usage: $0 saturate|steady ..." >&2; exit 2 ;;
esac
