# Sourced by the bench scripts (run from the repository root): the release binary, mosquitto,
# a scratch directory removed at exit with every process started, and a free loopback port.
FUBAR=${FUBAR:-${CARGO_TARGET_DIR:-$PWD/target}/release/fubar}
[ -x "$FUBAR" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v mosquitto >/dev/null || { echo "install mosquitto: apt-get install -y mosquitto" >&2; exit 1; }
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts mosquitto on a free port with its defaults (no queue limit), anonymous clients allowed:
# sets $mosq_port and $mosq_pid once it answers.
start_mosquitto() {
  mosq_port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n' "$mosq_port" > "$work/mosq.conf"
  mosquitto -c "$work/mosq.conf" > "$work/mosq.log" 2>&1 &
  mosq_pid=$!
  until mosquitto_sub -h 127.0.0.1 -p "$mosq_port" -t x -E 2>/dev/null; do sleep 0.1; done
}
