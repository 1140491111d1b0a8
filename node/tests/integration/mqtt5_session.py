# MQTT 5.0 session expiry, will delay and the client's DISCONNECT, driven by paho-mqtt (MQTTv5).
# Usage: mqtt5_session.py PORT SCENARIO; prints one line per check.
import sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

port = int(sys.argv[1])
scenario = sys.argv[2]
V2 = mqtt.CallbackAPIVersion.VERSION2


def client(cid, expiry=None, clean=True, will=None, will_delay=None):
    """A connected v5 client; returns (client, session_present)."""
    c = mqtt.Client(V2, client_id=cid, protocol=mqtt.MQTTv5)
    done = threading.Event()
    res = {}

    def on_connect(cl, u, flags, rc, props):
        res["present"] = bool(flags.session_present)
        res["rc"] = int(rc.value)
        done.set()

    c.on_connect = on_connect
    if will:
        wp = Properties(PacketTypes.WILLMESSAGE)
        if will_delay is not None:
            wp.WillDelayInterval = will_delay
        c.will_set(will, b"gone:" + cid.encode(), qos=1, properties=wp)
    p = Properties(PacketTypes.CONNECT)
    if expiry is not None:
        p.SessionExpiryInterval = expiry
    c.connect("127.0.0.1", port, 60, clean_start=clean, properties=p)
    c.loop_start()
    assert done.wait(10), "no CONNACK"
    assert res["rc"] == 0, res
    return c, res["present"]


def settle():
    """Gives the broker time to handle a connection's end before the same client id returns
    on a new connection (two sockets: nothing orders their packets)."""
    time.sleep(1)


def drop(c):
    """Ends the connection without DISCONNECT: the broker sees the socket close."""
    c.loop_stop()
    c.socket().close()


class Watcher:
    """A subscriber to will/#, noting when each message came."""

    def __init__(self):
        self.got = []
        self.event = threading.Event()
        self.c, _ = client("watcher")
        self.c.on_message = self.on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.subscribe("will/#", qos=1)
        assert subscribed.wait(10)

    def on_message(self, c, u, m):
        self.got.append((time.monotonic(), m.topic, m.payload.decode()))
        self.event.set()

    def wait(self, timeout):
        ok = self.event.wait(timeout)
        self.event.clear()
        return ok


if scenario == "will-delay":
    w = Watcher()
    # Comes back within its will delay: the will is never sent.
    a, _ = client("wd-a", expiry=120, will="will/a", will_delay=30)
    drop(a)
    a2, present = client("wd-a", expiry=120, clean=False)
    print("back in time, session present", present, flush=True)
    # Stays away: the will goes out once the delay has passed.
    b, _ = client("wd-b", expiry=120, will="will/b", will_delay=2)
    t0 = time.monotonic()
    drop(b)
    print("delayed will arrives", w.wait(20), flush=True)
    at, topic, payload = w.got[-1]
    print("after the delay", at - t0 >= 1.5, topic, payload, flush=True)
    # The session ends before the delay: the will goes out with it.
    c, _ = client("wd-c", expiry=2, will="will/c", will_delay=600)
    drop(c)
    print("will at session end", w.wait(20), w.got[-1][1], flush=True)
    a2.disconnect()
    a2.loop_stop()
    print("wills seen", sorted(t for _, t, _ in w.got), flush=True)

elif scenario == "disconnect-with-will":
    w = Watcher()
    a, _ = client("dw-a", will="will/a")
    a.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
    a.loop_stop()
    print("0x04 publishes the will", w.wait(10), flush=True)
    b, _ = client("dw-b", will="will/b")
    b.disconnect()
    b.loop_stop()
    # The watcher's own ping proves the broker has handled b's DISCONNECT by now.
    c, _ = client("dw-c", will="will/c")
    c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
    c.loop_stop()
    w.wait(10)
    print("wills seen", [t for _, t, _ in w.got], flush=True)

elif scenario == "session-expiry":
    # A session kept for 60 s is there when the client returns.
    a, _ = client("se-a", expiry=60)
    a.disconnect()
    a.loop_stop()
    a, present = client("se-a", expiry=60, clean=False)
    print("kept", present, flush=True)
    # Its DISCONNECT sets the interval to 0: the session ends with the connection.
    p = Properties(PacketTypes.DISCONNECT)
    p.SessionExpiryInterval = 0
    a.disconnect(properties=p)
    a.loop_stop()
    settle()
    a, present = client("se-a", expiry=60, clean=False)
    print("ended by DISCONNECT", not present, flush=True)
    a.disconnect()
    a.loop_stop()
    # A session of 1 s is gone once its interval has passed.
    b, _ = client("se-b", expiry=1)
    b.disconnect()
    b.loop_stop()
    # (Each return would resume it and start its second again, so look once, later.)
    time.sleep(2.5)
    b, present = client("se-b", expiry=1, clean=False)
    b.disconnect()
    b.loop_stop()
    print("expired", not present, flush=True)
    # Clean start 0 with expiry 0: resumes the session, which then ends with the connection.
    c, _ = client("se-c", expiry=60)
    c.disconnect()
    c.loop_stop()
    c, present = client("se-c", expiry=0, clean=False)
    c.disconnect()
    c.loop_stop()
    settle()
    c, again = client("se-c", expiry=60, clean=False)
    print("resumed then ended", present, not again, flush=True)
    c.disconnect()
    c.loop_stop()

elif scenario == "expiry-after-zero":
    # Expiry 0 in CONNECT, then more in DISCONNECT: a protocol error, so the will goes out.
    w = Watcher()
    a, _ = client("ez-a", expiry=0, will="will/ez")
    p = Properties(PacketTypes.DISCONNECT)
    p.SessionExpiryInterval = 30
    a.disconnect(properties=p)
    a.loop_stop()
    print("protocol error publishes the will", w.wait(10), flush=True)

elif scenario == "share-leave":
    # Two members of $share/g/jobs: a raw MQTT 3.1.1 one that never acknowledges, and a paho
    # v5 one. Once the raw one has messages in flight it leaves; they go to the other.
    import socket, struct

    def utf8(s):
        b = s.encode()
        return struct.pack("!H", len(b)) + b

    def packet(kind, body):
        n, out = len(body), bytearray([kind])
        while True:
            d, n = n % 128, n // 128
            out.append(d | (128 if n else 0))
            if not n:
                return bytes(out) + body

    lazy = socket.create_connection(("127.0.0.1", port))
    lazy.sendall(packet(0x10, utf8("MQTT") + bytes([4, 2, 0, 60]) + utf8("lazy")))
    lazy.sendall(packet(0x82, struct.pack("!H", 1) + utf8("$share/g/jobs") + bytes([1])))
    lazy.settimeout(10)
    seen = b""
    while b"\x90" not in seen:  # SUBACK
        seen += lazy.recv(4096)

    got = set()
    all_in = threading.Event()
    worker, _ = client("worker")

    def on_message(c, u, m):
        got.add(m.payload.decode())
        if len(got) == 10:
            all_in.set()

    worker.on_message = on_message
    subscribed = threading.Event()
    worker.on_subscribe = lambda *a: subscribed.set()
    worker.subscribe("$share/g/jobs", qos=1)
    assert subscribed.wait(10)
    pub, _ = client("boss")
    for i in range(10):
        pub.publish("jobs", str(i).encode(), qos=1).wait_for_publish(10)
    # The lazy member has its turns' messages in flight: PUBLISH packets (0x32) it never acks.
    lazy_bytes = b""
    deadline = time.monotonic() + 10
    while lazy_bytes.count(b"jobs") < 5 and time.monotonic() < deadline:
        lazy_bytes += lazy.recv(4096)
    print("lazy member had", lazy_bytes.count(b"jobs"), flush=True)
    print("worker before all", len(got) < 10, flush=True)
    lazy.close()
    print("worker gets every job", all_in.wait(20), sorted(got, key=int) == [str(i) for i in range(10)], flush=True)
