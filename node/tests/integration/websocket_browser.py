"""MQTT.js in headless Chromium (Selenium) against fubar over WebSocket.

argv: TCP_PORT WS_PORT MQTT_MIN_JS SCREENSHOT
The page (served here, from a temp dir) connects to ws://127.0.0.1:WS_PORT/mqtt, subscribes
to browser/in, and when mosquitto_pub's message arrives publishes one (retained) on
browser/out, which mosquitto_sub must receive. Prints "ok" at the end.
"""
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

tcp_port, ws_port, mqtt_js, screenshot = sys.argv[1:5]

PAGE = """<!doctype html><html><head><title>loading</title>
<script src="mqtt.min.js"></script></head><body>
<h1>fubar over WebSocket</h1><pre id="log"></pre>
<script>
  const log = (line) => (document.getElementById("log").textContent += line + "\\n");
  const client = mqtt.connect("ws://127.0.0.1:WS_PORT/mqtt",
    { protocolVersion: 5, clientId: "browser-1", reconnectPeriod: 0 });
  client.on("connect", () => {
    log("connected");
    client.subscribe("browser/in", { qos: 1 }, (err) => {
      log(err ? "subscribe failed: " + err : "subscribed");
      if (!err) document.title = "subscribed";
    });
  });
  client.on("message", (topic, payload) => {
    log("got " + topic + ": " + payload);
    client.publish("browser/out", "from-browser", { qos: 1, retain: true }, () => {
      log("published browser/out");
      document.title = "done";
    });
  });
  client.on("error", (e) => log("error: " + e.message));
</script></body></html>
""".replace("WS_PORT", ws_port)

root = tempfile.mkdtemp()
with open(f"{root}/index.html", "w") as f:
    f.write(PAGE)
shutil.copy(mqtt_js, f"{root}/mqtt.min.js")
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tempfile.mkdtemp()}"]:
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_title(want, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if driver.title == want:
            return
        time.sleep(0.1)
    log = driver.find_element("id", "log").text
    driver.save_screenshot(screenshot)
    sys.exit(f"page title never became {want!r} (is {driver.title!r}); page log:\n{log}")


try:
    driver.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
    wait_title("subscribed")
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", tcp_port, "-q", "1",
                    "-t", "browser/in", "-m", "from-mosquitto"], check=True, timeout=20)
    wait_title("done")
    sub = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", tcp_port, "-C", "1",
                          "-W", "10", "-t", "browser/out"],
                         capture_output=True, text=True, timeout=20)
    if sub.stdout.strip() != "from-browser":
        sys.exit(f"mosquitto_sub got {sub.stdout!r} {sub.stderr!r}")
    log = driver.find_element("id", "log").text
    if "got browser/in: from-mosquitto" not in log:
        sys.exit(f"page log: {log}")
    driver.save_screenshot(screenshot)
    print("ok")
finally:
    driver.quit()
    server.shutdown()
