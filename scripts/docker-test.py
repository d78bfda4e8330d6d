"""Helpers of scripts/docker-test.sh: a QoS 1 load generator and the checks
it makes over REST. Needs only the standard library and paho-mqtt (Debian:
python3-paho-mqtt).

  docker-test.py load HOST:PORT OUT [--topic T] [--streams N] [--prefix P]
                 [--rate R] [--count C] [--stop FILE] [--reconnect]
      publishes QoS 1 messages whose payloads are P<sequence number> to
      T<i>/load (i = sequence % N; T alone when N is 0) over MQTT 3.1.1,
      at most 200 unacknowledged, R per second (0 = as fast as it can),
      until C are sent, FILE exists, or (without --reconnect) the
      connection is lost. With --reconnect it reconnects (paho sends the
      unacknowledged ones again). OUT.progress holds the number acked so
      far; at the end OUT holds the payloads the server acknowledged, one a
      line, and a JSON summary is printed. MQTT 3.1.1 because a refused
      publish is a disconnect there, never a PUBACK: every ack counted is a
      stored record.
  docker-test.py verify HOST:PORT STREAMS ACKED...
      reads every record of the comma-separated STREAMS and fails unless
      every payload listed in the ACKED files is among them (within 15 s:
      followers apply what the leader acknowledged a moment later).
  docker-test.py streams HOST:PORT
      prints each stream's name, first and next offset and record count.
  docker-test.py cluster HOST:PORT MEMBERS
      exits 0 when the node lists MEMBERS alive members and shards that all
      have a leader; prints what it sees.
"""

import json
import os
import sys
import threading
import time
import urllib.request


def get(hostport, path):
    with urllib.request.urlopen("http://%s%s" % (hostport, path), timeout=5) as r:
        return json.load(r)


def load(args):
    import paho.mqtt.client as mqtt

    hostport, out = args[0], args[1]
    opts = {"--topic": "load", "--streams": "0", "--prefix": "", "--rate": "0",
            "--count": "1000000", "--stop": ""}
    reconnect = False
    rest = args[2:]
    while rest:
        if rest[0] == "--reconnect":
            reconnect, rest = True, rest[1:]
        else:
            opts[rest[0]], rest = rest[1], rest[2:]
    host, port = hostport.rsplit(":", 1)
    streams, rate, count = int(opts["--streams"]), float(opts["--rate"]), int(opts["--count"])
    stop_file, prefix, topic = opts["--stop"], opts["--prefix"], opts["--topic"]
    window, deadline = 200, time.time() + 600

    client_id = "docker-test-%s-%d" % (prefix.strip("-") or "load", os.getpid())
    try:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, clean_session=True)
    except AttributeError:  # paho-mqtt 1.x
        c = mqtt.Client(client_id=client_id, clean_session=True)
    c.max_inflight_messages_set(window)
    c.reconnect_delay_set(min_delay=1, max_delay=2)
    cond = threading.Condition()
    state = {"acks": 0, "gone": False, "connected": False, "disconnects": 0, "stopping": False}

    def on_connect(client, userdata, flags, rc):
        with cond:
            state["connected"] = rc == 0
            cond.notify_all()

    def on_publish(client, userdata, mid):
        with cond:
            state["acks"] += 1
            cond.notify_all()

    def on_disconnect(client, userdata, rc):
        with cond:
            state["connected"] = False
            if not state["stopping"]:
                state["disconnects"] += 1
            if not reconnect:
                state["gone"] = True
            cond.notify_all()
        if not reconnect:
            client.disconnect()  # no automatic reconnect: the count must stop here

    c.on_connect, c.on_publish, c.on_disconnect = on_connect, on_publish, on_disconnect
    c.connect(host, int(port), keepalive=30)
    c.loop_start()
    with cond:
        cond.wait_for(lambda: state["connected"] or state["gone"], timeout=10)

    def stopped():
        return state["gone"] or time.time() > deadline or (stop_file and os.path.exists(stop_file))

    done = threading.Event()

    def progress():  # OUT.progress: the acks so far, for the script to wait on
        while not done.wait(0.2):
            with open(out + ".progress.tmp", "w") as f:
                f.write(str(state["acks"]))
            os.replace(out + ".progress.tmp", out + ".progress")

    progress_thread = threading.Thread(target=progress, daemon=True)
    progress_thread.start()
    sent, started = [], time.time()
    for seq in range(count):
        with cond:
            while not stopped():
                if state["connected"] and len(sent) - state["acks"] < window:
                    break
                cond.wait(timeout=0.2)
            if stopped():
                break
        if rate > 0:
            ahead = started + seq / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
        payload = "%s%d" % (prefix, seq)
        t = "%s%d/load" % (topic, seq % streams) if streams > 0 else topic
        info = c.publish(t, payload, qos=1)  # never under cond: paho calls on_publish under its own lock
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            break
        sent.append((payload, info))
    with cond:  # the rest of the acks, while connected
        cond.wait_for(lambda: state["acks"] >= len(sent) or not state["connected"], timeout=15)
        state["stopping"] = True
    c.disconnect()
    c.loop_stop()
    done.set()
    progress_thread.join()
    # _published, not is_published(): that raises for a message queued
    # while disconnected (rc NO_CONN) even when paho sent it later and got
    # its PUBACK.
    acked = [p for p, info in sent if info._published]
    with open(out, "w") as f:
        f.write("\n".join(acked))
    with open(out + ".progress", "w") as f:
        f.write(str(len(acked)))
    print(json.dumps({"published": len(sent), "acked": len(acked), "disconnects": state["disconnects"],
                      "interrupted": state["gone"], "seconds": round(time.time() - started, 1)}))


def verify(args):
    hostport, names, files = args[0], args[1].split(","), args[2:]
    acked = []
    for name in files:
        with open(name) as f:
            acked += [line for line in f.read().split() if line]
    # A follower applies an entry a moment after the leader acknowledged it
    # (docs/operations.md, Reads): read on until every acked payload is
    # there, for at most 15 s.
    stored, total, offsets = set(), 0, dict.fromkeys(names, 0)
    deadline = time.time() + 15
    while True:
        for name in names:
            while True:
                page = get(hostport, "/v1/streams/%s/records?from_offset=%d&limit=10000" % (name, offsets[name]))
                if not page["records"]:
                    break
                for r in page["records"]:
                    stored.add(str(r["payload"]))
                total += len(page["records"])
                offsets[name] = page["next_offset"]
        missing = [p for p in acked if p not in stored]
        if not missing or time.time() > deadline:
            break
        time.sleep(0.2)
    print(json.dumps({"node": hostport, "acked": len(acked), "stored": total, "unique": len(stored),
                      "missing": len(missing)}))
    if missing:
        print("acknowledged but not stored: " + " ".join(missing[:20]), file=sys.stderr)
        sys.exit(1)


def streams(args):
    got = get(args[0], "/v1/streams")["streams"]
    print(json.dumps(sorted([s["name"], s["first_offset"], s["next_offset"], s["records"]] for s in got)))


def cluster(args):
    hostport, want = args[0], int(args[1])
    try:
        got = get(hostport, "/v1/cluster")
    except Exception as e:  # not up yet
        print(e)
        sys.exit(1)
    alive = sorted(m["id"] for m in got["members"] if m["status"] == "alive")
    shards = got["shards"]
    leaderless = [s["id"] for s in shards if not s["leader"]]
    print("alive %s; %d shards, leaders %s" % (
        ",".join(alive), len(shards),
        ",".join("%s:%d" % (n, sum(s["leader"] == n for s in shards)) for n in alive)))
    sys.exit(0 if len(alive) == want and shards and not leaderless else 1)


if __name__ == "__main__":
    {"load": load, "verify": verify, "streams": streams, "cluster": cluster}[sys.argv[1]](sys.argv[2:])
