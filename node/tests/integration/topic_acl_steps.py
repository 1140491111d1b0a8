# Runs MQTT steps against a broker with paho-mqtt 2.x and prints what each step saw, one line
# per step, for the Rust test to compare. argv: PORT STEPS_JSON [CTL_PREFIX_JSON]
#
# Steps (each waits for its acknowledgement, never for a while):
#   {"op": "connect", "name": N, "client": ID, "user": U or null, "v": 5 or 4}
#   {"op": "sub", "name": N, "filter": F}                 -> "suback N F CODE"
#   {"op": "pub", "name": N, "topic": T, "retain": bool}   -> "puback N T CODE" (QoS 1; 3.1.1: 0)
#   {"op": "until", "name": N, "topic": T}  -> "got N T1,T2,..": topics received before T
#   {"op": "ctl", "args": [...]}            -> "ctl ok" / "ctl refused"
#   {"op": "disconnect", "name": N}
import json, queue, subprocess, sys, threading
import paho.mqtt.client as mqtt

port = int(sys.argv[1])
steps = json.loads(sys.argv[2])
ctl_prefix = json.loads(sys.argv[3]) if len(sys.argv) > 3 else []
V2 = mqtt.CallbackAPIVersion.VERSION2
WAIT = 20


def code(rc):
    return int(rc.value) if hasattr(rc, "value") else int(rc)


class Client:
    def __init__(self, client_id, user, v):
        proto = mqtt.MQTTv5 if v == 5 else mqtt.MQTTv311
        self.c = mqtt.Client(V2, client_id=client_id, protocol=proto)
        if user is not None:
            self.c.username_pw_set(user, None)
        self.connected = threading.Event()
        self.acks = {}
        self.ack_events = {}
        self.lock = threading.Lock()
        self.messages = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.c.on_message = lambda c, u, m: self.messages.put(m.topic)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.acked(mid, [code(r) for r in rcs])
        self.c.on_publish = lambda c, u, mid, rc, p: self.acked(mid, code(rc))
        self.c.connect("127.0.0.1", port, 60)
        self.c.loop_start()
        if not self.connected.wait(WAIT):
            raise SystemExit(f"{client_id}: no CONNACK")

    def event(self, mid):
        with self.lock:
            return self.ack_events.setdefault(mid, threading.Event())

    def acked(self, mid, value):
        with self.lock:
            self.acks[mid] = value
        self.event(mid).set()

    def wait_ack(self, mid):
        if not self.event(mid).wait(WAIT):
            raise SystemExit(f"no acknowledgement of {mid}")
        with self.lock:
            return self.acks[mid]


clients = {}
for step in steps:
    op = step["op"]
    if op == "connect":
        clients[step["name"]] = Client(step["client"], step.get("user"), step.get("v", 5))
    elif op == "sub":
        cl = clients[step["name"]]
        _, mid = cl.c.subscribe(step["filter"], qos=1)
        print("suback", step["name"], step["filter"], cl.wait_ack(mid)[0], flush=True)
    elif op == "pub":
        cl = clients[step["name"]]
        info = cl.c.publish(step["topic"], b"x", qos=1, retain=step.get("retain", False))
        print("puback", step["name"], step["topic"], cl.wait_ack(info.mid), flush=True)
    elif op == "until":
        cl = clients[step["name"]]
        seen = []
        while True:
            t = cl.messages.get(timeout=WAIT)
            if t == step["topic"]:
                break
            seen.append(t)
        print("got", step["name"], ",".join(seen), flush=True)
    elif op == "ctl":
        r = subprocess.run(ctl_prefix + step["args"], capture_output=True, text=True)
        print("ctl", "ok" if r.returncode == 0 else "refused", flush=True)
        if r.returncode != 0:
            print(r.stdout + r.stderr, file=sys.stderr, flush=True)
    elif op == "disconnect":
        cl = clients.pop(step["name"])
        cl.c.disconnect()
        cl.c.loop_stop()
for cl in clients.values():
    cl.c.disconnect()
    cl.c.loop_stop()
