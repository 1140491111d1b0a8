import sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

port = int(sys.argv[1])
V2 = mqtt.CallbackAPIVersion.VERSION2
out = []
got = threading.Event()
got311 = threading.Event()
connack = {}

def on_connect(c, u, flags, rc, props):
    connack["rc"] = int(rc.value) if hasattr(rc, "value") else int(rc)
    connack["assigned"] = getattr(props, "AssignedClientIdentifier", None) if props else None
    connack["shared"] = getattr(props, "SharedSubscriptionAvailable", None) if props else None
    connack["retain"] = getattr(props, "RetainAvailable", None) if props else None

def on_message(c, u, m):
    p = m.properties
    out.append(("v5", m.topic, m.payload.decode(), getattr(p, "ResponseTopic", None),
                getattr(p, "CorrelationData", None), getattr(p, "UserProperty", None),
                getattr(p, "ContentType", None)))
    got.set()

def on_message311(c, u, m):
    out.append(("v311", m.topic, m.payload.decode()))
    got311.set()

sub = mqtt.Client(V2, client_id="", protocol=mqtt.MQTTv5)
sub.on_connect = on_connect
sub.on_message = on_message
sub.connect("127.0.0.1", port, 60)
sub.loop_start()
time.sleep(0.5)
print("connack", connack.get("rc"), bool(connack.get("assigned")), connack.get("shared"), connack.get("retain"), flush=True)
sub.subscribe("req/#", qos=1)
old = mqtt.Client(V2, client_id="old-311", protocol=mqtt.MQTTv311)
old.on_message = on_message311
old.connect("127.0.0.1", port, 60)
old.loop_start()
old.subscribe("req/#", qos=1)
time.sleep(0.5)

pub = mqtt.Client(V2, client_id="pub5", protocol=mqtt.MQTTv5)
pub.connect("127.0.0.1", port, 60)
pub.loop_start()
props = Properties(PacketTypes.PUBLISH)
props.ResponseTopic = "resp/1"
props.CorrelationData = b"corr-42"
props.UserProperty = [("k", "v")]
props.ContentType = "text/plain"
pub.publish("req/x", b"hello", qos=1, properties=props).wait_for_publish(5)
got.wait(5); got311.wait(5)
for line in sorted(out, key=lambda l: l[0]):
    print(*line, flush=True)

reasons = []
def on_disconnect(c, u, flags, rc, props):
    reasons.append(int(rc.value) if hasattr(rc, "value") else int(rc))
    reasons.append(getattr(props, "ReasonString", None) if props else None)
first = mqtt.Client(V2, client_id="twin5", protocol=mqtt.MQTTv5)
first.on_disconnect = on_disconnect
first.connect("127.0.0.1", port, 60)
first.loop_start()
time.sleep(0.3)
second = mqtt.Client(V2, client_id="twin5", protocol=mqtt.MQTTv5)
second.connect("127.0.0.1", port, 60)
second.loop_start()
deadline = time.time() + 5
while not reasons and time.time() < deadline:
    time.sleep(0.05)
first.loop_stop()
print("takeover", *(reasons[:2] if reasons else [None]), flush=True)
for c in (sub, old, pub, second):
    c.disconnect(); c.loop_stop()

res = {}
def on_auth_connect(c, u, flags, rc, props):
    res["rc"] = int(rc.value) if hasattr(rc, "value") else int(rc)
ap = Properties(PacketTypes.CONNECT)
ap.AuthenticationMethod = "SCRAM-SHA-1"
a = mqtt.Client(V2, client_id="auth5", protocol=mqtt.MQTTv5)
a.on_connect = on_auth_connect
a.connect("127.0.0.1", port, 60, properties=ap)
a.loop_start()
deadline = time.time() + 5
while "rc" not in res and time.time() < deadline:
    time.sleep(0.05)
a.loop_stop()
print("auth", res.get("rc"), flush=True)

from paho.mqtt.subscribeoptions import SubscribeOptions
r = mqtt.Client(V2, client_id="retainer", protocol=mqtt.MQTTv5)
r.connect("127.0.0.1", port, 60)
r.loop_start()
r.publish("keep/x", b"old", qos=1, retain=True).wait_for_publish(5)
got_o = []
o = mqtt.Client(V2, client_id="opts5", protocol=mqtt.MQTTv5)
o.on_message = lambda c, u, m: got_o.append((m.topic, m.payload.decode(), int(m.retain)))
o.connect("127.0.0.1", port, 60)
o.loop_start()
o.subscribe([
    ("keep/#", SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND, retainAsPublished=True)),
    ("mine", SubscribeOptions(qos=1, noLocal=True)),
])
time.sleep(0.5)
o.publish("mine", b"self", qos=1).wait_for_publish(5)
r.publish("mine", b"other", qos=1).wait_for_publish(5)
r.publish("keep/x", b"new", qos=1, retain=True).wait_for_publish(5)
deadline = time.time() + 5
while len(got_o) < 2 and time.time() < deadline:
    time.sleep(0.05)
time.sleep(0.3)
for t in sorted(got_o):
    print("opts", *t, flush=True)
for c in (r, o):
    c.disconnect(); c.loop_stop()
