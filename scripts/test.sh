#!/usr/bin/env bash
# Runs every test of the workspace, after installing the independent MQTT clients the
# black-box tests drive the broker with (mosquitto_pub/sub, paho-mqtt), the mosquitto broker,
# iproute2 for the partition test, Prometheus for the observe tests, and headless Chromium with
# Selenium and MQTT.js (npm `mqtt`, under target/mqttjs) for the WebSocket browser test. Safe
# to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
# The broker itself: the topic rules test compares an imported acl_file with mosquitto's decisions.
command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# `ip netns` for the partition test (it skips itself where namespaces are not allowed).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# A real Prometheus server scrapes nodes in the `observe` tests (they skip, saying why, without it).
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
# The WebSocket browser test: Chromium driven by Selenium, MQTT.js installed by npm.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if ! python3 -c 'import paho.mqtt' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3'
fi

if ! python3 -c 'import selenium' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'selenium>=4.10'
fi
# Where the browser test looks for MQTT.js: <target dir>/mqttjs.
target="${CARGO_TARGET_DIR:-target}"
if [ ! -f "$target/mqttjs/node_modules/mqtt/dist/mqtt.min.js" ]; then
  npm install --silent --no-audit --no-fund --prefix "$target/mqttjs" 'mqtt@5'
fi

cargo test --workspace --locked "$@"
