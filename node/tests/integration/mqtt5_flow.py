import sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

port = int(sys.argv[1])
scenario = sys.argv[2]
V2 = mqtt.CallbackAPIVersion.VERSION2
WAIT = 10


def code(rc):
    return int(rc.value) if hasattr(rc, "value") else int(rc)


class Client:
    """A paho client whose callbacks fill events the script waits on (no sleeps)."""

    def __init__(self, cid, version=mqtt.MQTTv5, keepalive=60, **connect_props):
        self.c = mqtt.Client(V2, client_id=cid, protocol=version)
        self.version = version
        self.connack = None
        self.connected = threading.Event()
        self.acks = {}
        self.acked = threading.Condition()
        self.messages = []
        self.got = threading.Condition()
        self.c.on_connect = self.on_connect
        self.c.on_subscribe = self.on_ack
        self.c.on_unsubscribe = self.on_ack
        self.c.on_publish = self.on_publish
        self.c.on_message = self.on_message
        props = None
        if version == mqtt.MQTTv5 and connect_props:
            props = Properties(PacketTypes.CONNECT)
            for k, v in connect_props.items():
                setattr(props, k, v)
        if version == mqtt.MQTTv5:
            self.c.connect("127.0.0.1", port, keepalive, properties=props)
        else:
            self.c.connect("127.0.0.1", port, keepalive)
        self.c.loop_start()
        assert self.connected.wait(WAIT), cid + ": no CONNACK"

    def on_connect(self, c, u, flags, rc, props):
        self.connack = props
        self.connected.set()

    def on_ack(self, c, u, mid, rcs, props):
        with self.acked:
            reason = getattr(props, "ReasonString", None) if props else None
            self.acks[mid] = ([code(r) for r in rcs], reason)
            self.acked.notify_all()

    def on_publish(self, c, u, mid, rc, props):
        with self.acked:
            self.acks[mid] = code(rc)
            self.acked.notify_all()

    def on_message(self, c, u, m):
        with self.got:
            alias = getattr(m.properties, "TopicAlias", None) if m.properties else None
            self.messages.append((m.topic, alias, m.payload.decode()))
            self.got.notify_all()

    def wait_ack(self, mid):
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.acks, WAIT), "no ack for %d" % mid
            return self.acks[mid]

    def subscribe(self, filters):
        _, mid = self.c.subscribe([(f, 1) for f in filters])
        return self.wait_ack(mid)

    def unsubscribe(self, filters):
        _, mid = self.c.unsubscribe(filters)
        return self.wait_ack(mid)

    def publish(self, topic, payload, qos=1, **props):
        p = None
        if props:
            p = Properties(PacketTypes.PUBLISH)
            for k, v in props.items():
                setattr(p, k, v)
        info = self.c.publish(topic, payload, qos=qos, properties=p)
        return self.wait_ack(info.mid)

    def wait_messages(self, n):
        with self.got:
            assert self.got.wait_for(lambda: len(self.messages) >= n, WAIT), str(self.messages)
            return list(self.messages)

    def prop(self, name):
        return getattr(self.connack, name, None) if self.connack else None

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


if scenario == "acks":
    c = Client("acks5")
    print("receive maximum", c.prop("ReceiveMaximum"), flush=True)
    print("puback nobody", c.publish("nobody/here", b"x"), flush=True)
    print("suback", *c.subscribe(["ok/#", "$share/grp"]), flush=True)
    print("puback subscribed", c.publish("ok/x", b"x"), flush=True)
    print("unsuback", *c.unsubscribe(["ok/#", "never/subscribed"]), flush=True)
    quiet = Client("quiet5", RequestProblemInformation=0)
    print("suback quiet", *quiet.subscribe(["ok/#", "$share/grp"]), flush=True)
    old = Client("acks311", mqtt.MQTTv311)
    print("suback 3.1.1", old.subscribe(["ok/#", "$share/grp"])[0], flush=True)
    for x in (c, quiet, old):
        x.close()

elif scenario == "quota":
    c = Client("quota5")
    print("suback", c.subscribe(["q/1", "q/2", "q/3"])[0], flush=True)
    # Subscribing again to a filter it has is a replacement, not one more.
    print("again", c.subscribe(["q/1"])[0], flush=True)
    old = Client("quota311", mqtt.MQTTv311)
    print("suback 3.1.1", old.subscribe(["q/1", "q/2", "q/3"])[0], flush=True)
    for x in (c, old):
        x.close()

elif scenario == "aliases":
    sub = Client("alias-sub", TopicAliasMaximum=5)
    sub.subscribe(["alias/#"])
    old = Client("alias-old", mqtt.MQTTv311)
    old.subscribe(["alias/#"])
    pub = Client("alias-pub")
    print("server alias maximum", pub.prop("TopicAliasMaximum"), flush=True)
    pub.publish("alias/topic/long", b"one", TopicAlias=1)
    pub.publish("", b"two", TopicAlias=1)
    pub.publish("alias/other", b"three")
    pub.publish("", b"four", TopicAlias=1)
    for m in sub.wait_messages(4):
        print("v5 %r %s %s" % m, flush=True)
    for m in old.wait_messages(4):
        print("3.1.1 %r %s %s" % m, flush=True)
    for x in (sub, old, pub):
        x.close()

elif scenario == "keepalive":
    for asked in (0, 7200, 60):
        c = Client("ka%d" % asked, keepalive=asked)
        print("asked", asked, "server keep alive", c.prop("ServerKeepAlive"), flush=True)
        c.close()

elif scenario == "too-large":
    sub = Client("small", MaximumPacketSize=300, ReceiveMaximum=1)
    sub.subscribe(["big/#"])
    pub = Client("big-pub")
    pub.publish("big/a", b"x" * 1000)
    pub.publish("big/b", b"small")
    print("received", *sub.wait_messages(1)[0], flush=True)
    # One more: had the big one been kept in flight, receive maximum 1 would hold this back.
    pub.publish("big/c", b"next")
    print("then", *sub.wait_messages(2)[1], flush=True)
    for x in (sub, pub):
        x.close()

else:
    sys.exit("unknown scenario " + scenario)
