#!/usr/bin/env python3
"""Interoperability smoke test with Eclipse paho-mqtt (Python, 1.6 API).

Usage: interop_paho.py HOST PORT

Runs a few scenarios against a broker with an MQTT client library
independent of the Go ones the rest of the tests use, prints one line per
scenario and exits non-zero if any failed. Topics are prefixed so the
scenarios do not see each other's messages.
"""
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST, PORT = sys.argv[1], int(sys.argv[2])
WAIT = 5.0
failures = []


class Client:
    """A connected client that records (topic, payload, qos, retain) it receives."""

    def __init__(self, cid, v5=False, clean=True):
        self.got = []
        self.cond = threading.Condition()
        self.v5 = v5
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        if v5:
            self.c = mqtt.Client(client_id=cid, protocol=proto)
        else:
            self.c = mqtt.Client(client_id=cid, clean_session=clean, protocol=proto)
        self.c.on_message = self._on_message
        self.connected = threading.Event()
        self.c.on_connect = lambda *a: self.connected.set()
        if v5:
            self.c.connect(HOST, PORT, keepalive=30, clean_start=clean)
        else:
            self.c.connect(HOST, PORT, keepalive=30)
        self.c.loop_start()
        if not self.connected.wait(WAIT):
            raise RuntimeError(cid + ": no CONNACK")

    def _on_message(self, _c, _u, m):
        with self.cond:
            self.got.append((m.topic, m.payload.decode(), m.qos, m.retain))
            self.cond.notify_all()

    def subscribe(self, *subs):
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(list(subs))
        if not done.wait(WAIT):
            raise RuntimeError("no SUBACK")

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            info.wait_for_publish(WAIT)

    def until(self, topic):
        """Messages received before the first one on topic (the marker)."""
        deadline = time.time() + WAIT
        with self.cond:
            while True:
                for i, m in enumerate(self.got):
                    if m[0] == topic:
                        return self.got[:i]
                left = deadline - time.time()
                if left <= 0:
                    raise RuntimeError("marker %s not received; got %s" % (topic, self.got))
                self.cond.wait(left)

    def wait_count(self, n):
        """The first n messages received."""
        deadline = time.time() + WAIT
        with self.cond:
            while len(self.got) < n:
                left = deadline - time.time()
                if left <= 0:
                    raise RuntimeError("got %d of %d messages: %s" % (len(self.got), n, self.got))
                self.cond.wait(left)
            return self.got[:n]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def scenario(fn):
    try:
        fn()
        print("ok   " + fn.__name__)
    except Exception as e:  # noqa: BLE001 - report every failure
        print("FAIL %s: %s" % (fn.__name__, e))
        failures.append(fn.__name__)
    return fn


@scenario
def qos_levels_v311():
    sub = Client("py-qos-sub")
    sub.subscribe(("pq/#", 2))
    pub = Client("py-qos-pub")
    for q in (0, 1, 2):
        pub.publish("pq/%d" % q, "m%d" % q, qos=q)
    # paho hands a QoS 2 message to the application only on PUBREL, so a
    # marker can overtake it: wait for the count instead.
    got = sorted((t, q) for t, _, q, _ in sub.wait_count(3))
    assert got == [("pq/0", 0), ("pq/1", 1), ("pq/2", 2)], got
    sub.close()
    pub.close()


@scenario
def retained_parent_level_and_dollar_topics():
    pub = Client("py-ret-pub")
    pub.publish("pr", "parent", retain=True)
    pub.publish("$pr/x", "dollar", retain=True)
    sub = Client("py-ret-sub")
    sub.subscribe(("pr/#", 1), ("+/#", 1), ("#", 1))
    pub.publish("pr/mark", "x")
    got = sub.until("pr/mark")
    topics = [t for t, _, _, _ in got]
    assert "pr" in topics, "pr/# (or +/#, #) did not get the retained message on pr: %s" % got
    assert all(r for t, _, _, r in got if t == "pr"), "retained message without RETAIN flag"
    assert not [t for t in topics if t.startswith("$")], "wildcard filters got $ topics: %s" % topics
    pub.publish("pr", "", retain=True)  # clear
    pub.publish("$pr/x", "", retain=True)
    sub.close()
    pub.close()


@scenario
def no_local_is_per_subscription_v5():
    c = Client("py-nl", v5=True)
    c.subscribe(("pnl/t", SubscribeOptions(qos=1, noLocal=True)), ("pnl/#", SubscribeOptions(qos=1)))
    c.publish("pnl/t", "own")
    c.publish("pnl/mark", "x")
    got = c.until("pnl/mark")
    assert [t for t, _, _, _ in got] == ["pnl/t"], "want one copy through pnl/#, got %s" % got
    c.close()


@scenario
def persistent_session_gets_queued_messages_in_order():
    c = Client("py-away", clean=False)
    c.subscribe(("pa/t", 1))
    c.close()
    pub = Client("py-away-pub")
    for i in range(20):
        pub.publish("pa/t", str(i))
    back = Client("py-away", clean=False)
    back.subscribe(("pa/mark", 1))
    pub.publish("pa/mark", "x")
    got = [p for t, p, _, _ in back.until("pa/mark")]
    assert got == [str(i) for i in range(20)], got
    back.close()
    pub.close()


@scenario
def shared_subscription_delivers_each_message_once():
    # A consumer group serves $share from the stored records, so its
    # deliveries may come after a marker sent live: count instead.
    a = Client("py-sh-a")
    b = Client("py-sh-b")
    for m in (a, b):
        m.subscribe(("$share/pg/ps/#", 1))
    pub = Client("py-sh-pub")
    for i in range(20):
        pub.publish("ps/t", str(i))
    deadline = time.time() + WAIT
    while len(a.got) + len(b.got) < 20 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # a duplicate, if any, would arrive meanwhile
    got = sorted(int(p) for m in (a, b) for t, p, _, _ in m.got)
    assert got == list(range(20)), got
    for m in (a, b, pub):
        m.close()


sys.exit(1 if failures else 0)
