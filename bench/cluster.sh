#!/usr/bin/env bash
# Issue 8's cluster targets, three `fubar node`s on loopback on this machine, RUNS times (3 by
# default), each run on a fresh cluster in a temporary directory; prints each run's figures,
# then their medians. Every process it starts is stopped at exit.
#
#   bench/cluster.sh            # RUNS=n CLIENTS=n MESSAGES=n FORWARD_QUEUE=n VICTIM_CLIENTS=n
#                               # KEEP=1 keeps the nodes' logs; STEPS="qos0 burst kill" (all
#                               # by default) picks what runs after the joins
#
# Per run:
#   join     from starting a node with --master to a message published on the founder reaching
#            a subscriber on the new node (n2, then n3): `fubar bench fanout -p FOUNDER
#            --sub-port NEW --messages 1`, whose readiness probe waits for the route.
#   qos0     `fubar bench fanin` (4 publishers -> 1 subscriber) and `fanout` (1 -> 10), QoS 0:
#            publishers and subscribers on n1 ("single"), then publishers on n1 and subscribers
#            on n2 ("cross"), one after the other; the ratio cross/single of delivered/s.
#   burst    CLIENTS clients (50,000) connect and each subscribes to burst/<its id>, a third
#            per node (three `fubar bench conns --subscribe` processes, one per node, at
#            once); `ctl cluster status` of n1 sampled every 100 ms: replicated changes/s
#            (routes + client registrations) from the start to the moment every route and
#            client is in n1's tables with nothing pending; then every node's counts. Then
#            the clients go, and the removals are timed the same way.
#   kill     VICTIM_CLIENTS subscribers on a follower, then `kill -9` of it: time until both
#            survivors' route tables no longer hold its routes, and until a message published
#            on one survivor reaches a new subscriber on the other. The victim is restarted
#            (rejoin time), then the same with the leader as the victim.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-50000}
MESSAGES=${MESSAGES:-50000}
FORWARD_QUEUE=${FORWARD_QUEUE:-1000000}   # the default of cluster.forward_queue
VICTIM_CLIENTS=${VICTIM_CLIENTS:-1000}
STEPS=${STEPS:-qos0 burst kill}
want() { [[ " $STEPS " == *" $1 "* ]]; }
FUBAR=${FUBAR:-${CARGO_TARGET_DIR:-$PWD/target}/release/fubar}
[ -x "$FUBAR" ] || { echo "build first: cargo build --release --workspace ($FUBAR)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d)
declare -a started=()
stop_all() {
  local p
  for p in "${started[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop_all; if [ -n "${KEEP:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi' EXIT

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Waits (up to $3 s) until file $1 has a line matching $2; prints it.
wait_line() {
  local deadline; deadline=$(awk -v t="$(now)" -v w="${3:-30}" 'BEGIN { printf "%.3f", t + w }')
  until grep -m1 -- "$2" "$1" 2>/dev/null; do
    if awk -v d="$deadline" -v t="$(now)" 'BEGIN { exit !(t > d) }'; then
      echo "never saw '$2' in $1:" >&2; tail -20 "$1" >&2; return 1
    fi
    sleep 0.01
  done
}

declare -A PID PORT CPORT LOG
# start NAME MASTER: a member on a free MQTT port (the same one again on a restart), with a log
# file of its own; returns once it serves MQTT.
start() {
  local name=$1 master=$2
  PORT[$name]=${PORT[$name]:-$(free_port)}
  LOG[$name]=$dir/$name.$(date +%s%N).log
  "$FUBAR" node --name "$name@localhost" --master "$master" --data-dir "$dir" \
    --config "$dir/cluster.toml" --bind 127.0.0.1 --mqtt-port "${PORT[$name]}" \
    --cluster-port 0 --log-stdout info,warning > "${LOG[$name]}" 2>&1 &
  PID[$name]=$!; started+=("$!")
  local line; line=$(wait_line "${LOG[$name]}" "cluster port on cluster://" 30 | tail -1)
  CPORT[$name]=${line##*:}
  wait_line "${LOG[$name]}" "listening on mqtt://" 30 >/dev/null
}
# Kills processes this script started, quietly (no job notices).
kill_quiet() { kill -9 "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }
status() { "$FUBAR" ctl --node "$1@localhost" --data-dir "$dir" cluster status 2>&1; }
# field NODE KEY...: values from the header line of NODE's cluster status.
field() {
  local node=$1; shift
  status "$node" | awk -v keys="$*" 'BEGIN { n = split(keys, k, " ") }
    NR == 1 { for (j = 1; j <= n; j++) for (i = 1; i < NF; i++) if ($i == k[j]) printf "%s%s", (j > 1 ? " " : ""), $(i + 1); print "" }'
}
# One message from a publisher on $1 to a new subscriber on $2 (waits for the route).
one_message() {
  "$FUBAR" bench fanout -p "${PORT[$1]}" --sub-port "${PORT[$2]}" --publishers 1 \
    --subscribers 1 --messages 1 -t "check/$1/$2/$RANDOM" --json > "$work/one.json"
  [ "$(json "['delivered']" < "$work/one.json")" = 1 ]
}

# join NAME MASTER: starts NAME joining through MASTER and times it until a message published
# on MASTER reaches a subscriber on NAME; sets JOINED (seconds). Not in a subshell: start()
# records the process.
join() {
  local t0; t0=$(now)
  start "$1" "$2@localhost:${CPORT[$2]}"
  one_message "$2" "$1"
  JOINED=$(since "$t0")
}

flow() { # flow KIND SUBNODE: fanin/fanout QoS 0, publishers on n1, subscribers on SUBNODE
  local args
  case $1 in
    fanin) args=(fanin --publishers 4 --subscribers 1 --messages "$MESSAGES") ;;
    fanout) args=(fanout --publishers 1 --subscribers 10 --messages "$((MESSAGES / 2))") ;;
  esac
  "$FUBAR" bench "${args[@]}" -q 0 -p "${PORT[n1]}" --sub-port "${PORT[$2]}" \
    -t "flow/$1/$2/$RANDOM" --json > "$work/flow.json"
  echo "$(json "['delivery_rate']" < "$work/flow.json") $(json "['lost']" < "$work/flow.json")"
}

# sample_until NODE COND_ROUTES COND_CLIENTS OUT: samples NODE's status every 100 ms into OUT
# until routes and clients equal the targets and nothing is pending; prints the seconds.
sample_until() {
  local node=$1 want_r=$2 want_c=$3 out=$4 t0 r c p a
  t0=$(now); : > "$out"
  while true; do
    read -r r c p a <<< "$(field "$node" routes clients pending applied)"
    echo "$(since "$t0") $r $c $p $a" >> "$out"
    if [ "$r" = "$want_r" ] && [ "$c" = "$want_c" ] && [ "$p" = 0 ]; then since "$t0"; return; fi
    if awk -v s="$(since "$t0")" 'BEGIN { exit !(s > 300) }'; then echo "timeout"; return 1; fi
    sleep 0.1
  done
}

# kill_member VICTIM A B: VICTIM_CLIENTS subscribers on VICTIM, kill -9, convergence on A and
# B; sets ROUTES_GONE and FLOWING (seconds after the kill).
kill_member() {
  local victim=$1 a=$2 b=$3 r0 r_a r_b t0 t_routes
  r0=$(field "$a" routes)
  "$FUBAR" bench conns -p "${PORT[$victim]}" --clients "$VICTIM_CLIENTS" --id-prefix "v$RANDOM-" \
    --subscribe victim --hold 3600 --json > /dev/null 2>&1 &
  local conns=$!; started+=("$conns")
  until [ "$(field "$a" routes)" -ge $((r0 + VICTIM_CLIENTS)) ] && [ "$(field "$b" routes)" -ge $((r0 + VICTIM_CLIENTS)) ] \
      && [ "$(field "$victim" pending)" = 0 ]; do sleep 0.1; done
  sleep 0.5 # let the victim's own changes settle
  r_a=$(field "$a" routes); r_b=$(field "$b" routes)
  t0=$(now)
  kill -9 "${PID[$victim]}"
  wait "${PID[$victim]}" 2>/dev/null || true
  while [ "$(field "$a" routes)" -gt $((r_a - VICTIM_CLIENTS)) ] || [ "$(field "$b" routes)" -gt $((r_b - VICTIM_CLIENTS)) ]; do
    sleep 0.05
  done
  ROUTES_GONE=$(since "$t0")
  one_message "$a" "$b"
  FLOWING=$(since "$t0")
  kill_quiet "$conns"
}

# The leader as n1 sees it, once there is one.
leader() {
  local l
  while l=$(field n1 leader); [ "$l" = none ]; do sleep 0.05; done
  echo "${l%@*}"
}

echo "machine: $(nproc) cores; $(uptime)"
echo "$FUBAR; STEPS=$STEPS RUNS=$RUNS CLIENTS=$CLIENTS MESSAGES=$MESSAGES FORWARD_QUEUE=$FORWARD_QUEUE VICTIM_CLIENTS=$VICTIM_CLIENTS"
: > "$work/figures"
for run in $(seq "$RUNS"); do
  dir=$work/run$run; mkdir -p "$dir"; PORT=(); CPORT=(); PID=(); LOG=()
  cat > "$dir/cluster.toml" <<CONF
[session]
inflight_window = 100
max_queued_messages = 100000000
max_queued_bytes = 8589934592
[cluster]
forward_queue = $FORWARD_QUEUE
CONF
  start n1 n1@localhost
  wait_line "${LOG[n1]}" "cluster founded" 30 > /dev/null
  join n2 n1; j2=$JOINED; join n3 n1; j3=$JOINED
  until [ "$(status n1 | grep -c ' voter ')" = 3 ]; do sleep 0.05; done
  echo "run $run: join n2 ${j2} s, n3 ${j3} s" | tee -a "$work/log"
  echo "join $j2" >> "$work/figures"; echo "join $j3" >> "$work/figures"

  want qos0 && for kind in fanin fanout; do
    read -r single single_lost <<< "$(flow "$kind" n1)"
    read -r cross cross_lost <<< "$(flow "$kind" n2)"
    ratio=$(awk -v c="$cross" -v s="$single" 'BEGIN { printf "%.3f", c / s }')
    echo "run $run: $kind QoS 0 single $single/s (lost $single_lost), cross $cross/s (lost $cross_lost), cross/single $ratio" | tee -a "$work/log"
    { echo "$kind-single $single"; echo "$kind-cross $cross"; echo "$kind-ratio $ratio"; echo "$kind-cross-lost $cross_lost"; } >> "$work/figures"
  done

  if want burst; then
  read -r r0 c0 <<< "$(field n1 routes clients)"
  per=$((CLIENTS / 3)); i=0; conns=()
  for n in n1 n2 n3; do
    i=$((i + 1)); count=$per; [ $i = 1 ] && count=$((CLIENTS - 2 * per))
    "$FUBAR" bench conns -p "${PORT[$n]}" --clients "$count" --id-prefix "b$n-" --subscribe burst \
      --hold 3600 --json > "$dir/conns-$n.json" 2>"$dir/conns-$n.err" &
    conns+=("$!"); started+=("$!")
  done
  burst=$(sample_until n1 $((r0 + CLIENTS)) $((c0 + CLIENTS)) "$dir/burst.samples")
  rate=$(awk -v n=$((2 * CLIENTS)) -v s="$burst" 'BEGIN { printf "%.0f", n / s }')
  peak=$(awk 'NR > 1 { d = ($2 + $3) - (pr + pc); t = $1 - pt; if (t > 0 && d / t > m) m = d / t }
    { pt = $1; pr = $2; pc = $3 } END { printf "%.0f", m }' "$dir/burst.samples")
  counts=""; for n in n1 n2 n3; do counts+="$n $(field $n routes clients pending)/ "; done
  echo "run $run: burst $CLIENTS clients + routes in ${burst} s: $rate changes/s (peak $peak over 100 ms); routes clients pending: $counts" | tee -a "$work/log"
  echo "burst $rate" >> "$work/figures"
  kill_quiet "${conns[@]}"
  gone=$(sample_until n1 "$r0" "$c0" "$dir/gone.samples")
  echo "run $run: removals in ${gone} s: $(awk -v n=$((2 * CLIENTS)) -v s="$gone" 'BEGIN { printf "%.0f", n / s }') changes/s" | tee -a "$work/log"
  echo "removals $(awk -v n=$((2 * CLIENTS)) -v s="$gone" 'BEGIN { printf "%.0f", n / s }')" >> "$work/figures"

  fi

  if want kill; then
  l=$(leader); follower=n3; [ "$l" = n3 ] && follower=n2
  others=(); for n in n1 n2 n3; do [ $n != "$follower" ] && others+=("$n"); done
  kill_member "$follower" "${others[@]}"
  echo "run $run: kill -9 follower $follower: its routes gone on both survivors after ${ROUTES_GONE} s, traffic between survivors after ${FLOWING} s" | tee -a "$work/log"
  echo "kill-follower $FLOWING" >> "$work/figures"
  join "$follower" "$l"
  echo "run $run: $follower restarted, serving cross-node traffic after ${JOINED} s" | tee -a "$work/log"
  echo "rejoin $JOINED" >> "$work/figures"
  l=$(leader)
  others=(); for n in n1 n2 n3; do [ $n != "$l" ] && others+=("$n"); done
  kill_member "$l" "${others[@]}"
  echo "run $run: kill -9 leader $l: its routes gone on both survivors after ${ROUTES_GONE} s, traffic between survivors after ${FLOWING} s" | tee -a "$work/log"
  echo "kill-leader $FLOWING" >> "$work/figures"
  fi
  stop_all; started=()
done

echo "medians of $RUNS runs:"
for k in join fanin-single fanin-cross fanin-ratio fanin-cross-lost fanout-single fanout-cross fanout-ratio fanout-cross-lost burst removals kill-follower rejoin kill-leader; do
  printf '  %-18s %s\n' "$k" "$(awk -v k="$k" '$1 == k { print $2 }' "$work/figures" | median)"
done
echo "load after: $(uptime)"
