"""paho-mqtt (2.x) over WebSocket against fubar, beside a TCP client.

argv: TCP_PORT WS_PORT PROTOCOL(4|5) ws|wss CA_FILE(or -)
Prints one line per check that passed; exits non-zero on the first that fails.
"""
import queue
import ssl
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

tcp_port, ws_port, level, scheme, ca = sys.argv[1:6]
proto = mqtt.MQTTv5 if level == "5" else mqtt.MQTTv311
tag = f"{scheme}{level}"


def client(name, websocket, will=None):
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{tag}",
        protocol=proto,
        transport="websockets" if websocket else "tcp",
    )
    c.inbox = queue.Queue()
    c.on_message = lambda cl, u, m: cl.inbox.put((m.topic, m.payload.decode(), m.retain))
    if websocket:
        c.ws_set_options(path="/mqtt")
        if scheme == "wss":
            c.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
    if will:
        c.will_set(will[0], will[1], qos=1)
    c.connect("localhost" if websocket and scheme == "wss" else "127.0.0.1",
              int(ws_port if websocket else tcp_port), keepalive=30)
    return c


def expect(c, topic, payload, what):
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            got = c.inbox.get(timeout=max(0.0, deadline - time.time()))
        except queue.Empty:
            break
        if got[0] == topic and got[1] == payload:
            print(what, "retained" if got[2] else "")
            sys.stdout.flush()
            return
    sys.exit(f"{what}: nothing on {topic}")


def subscribed(c, topic):
    c.subscribe(topic, qos=1)
    time.sleep(0.3)  # paho has no synchronous subscribe; SUBACK comes on the loop thread


tcp = client("tcp", False)
tcp.loop_start()
tcp.publish(f"{tag}/ret", "kept", qos=1, retain=True).wait_for_publish(10)
subscribed(tcp, f"{tag}/out")
subscribed(tcp, f"{tag}/will")

ws = client("ws", True)
ws.loop_start()
subscribed(ws, f"{tag}/in")
subscribed(ws, f"{tag}/ret")
expect(ws, f"{tag}/ret", "kept", "ws got retained")

tcp.publish(f"{tag}/in", "to-ws", qos=1).wait_for_publish(10)
expect(ws, f"{tag}/in", "to-ws", "ws got from tcp")
big = "x" * 300_000
tcp.publish(f"{tag}/in", big, qos=0)
expect(ws, f"{tag}/in", big, "ws got a large message")
ws.publish(f"{tag}/out", "from-ws", qos=1).wait_for_publish(10)
expect(tcp, f"{tag}/out", "from-ws", "tcp got from ws")

# A will: a WebSocket client whose socket drops without DISCONNECT.
dying = client("dying", True, will=(f"{tag}/will", "gone"))
deadline = time.time() + 10
while not dying.is_connected() and time.time() < deadline:
    dying.loop(timeout=0.2)
dying.socket().close()
expect(tcp, f"{tag}/will", "gone", "tcp got the will")

ws.disconnect()
ws.loop_stop()
tcp.disconnect()
tcp.loop_stop()
print("done")
