#!/usr/bin/env python3
"""Time until every shard of a cluster takes writes again after a node died.

Usage: failover-probe.py SHARDS HTTP_ADDR [HTTP_ADDR ...]

Picks one stream name per shard (streams are placed on shard
fnv1a32(name) % SHARDS), then, in one thread per shard, writes a record to
it through the given nodes' REST API (POST /v1/streams/{name}/records,
answered once the record is durable on a majority of the shard's
replicas), again and again until one write succeeds. Prints, as JSON, the
seconds from the start until each shard's first successful write, and the
slowest. Started right after a SIGKILL, the slowest is how long the
cluster took until every shard was writable again. Gives up after 60 s.
"""
import json
import sys
import threading
import time
import urllib.error
import urllib.request


def fnv1a32(name):
    h = 2166136261
    for b in name.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def stream_names(shards):
    names, i = {}, 0
    while len(names) < shards:
        name = "failover-probe-%d" % i
        names.setdefault(fnv1a32(name) % shards, name)
        i += 1
    return [names[s] for s in range(shards)]


def main():
    shards, nodes = int(sys.argv[1]), sys.argv[2:]
    start = time.monotonic()
    took = [None] * shards
    errors = [0] * shards

    def probe(shard, name):
        k = shard
        body = json.dumps({"payload": {"probe": shard}}).encode()
        while time.monotonic() - start < 60:
            node = nodes[k % len(nodes)]
            k += 1
            req = urllib.request.Request(
                "http://%s/v1/streams/%s/records" % (node, name), data=body, method="POST",
                headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        took[shard] = time.monotonic() - start
                        return
            except (urllib.error.URLError, OSError):
                errors[shard] += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=probe, args=(s, n)) for s, n in enumerate(stream_names(shards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [t for t in took if t is not None]
    print(json.dumps({
        "writable_after_s": [round(t, 3) if t is not None else None for t in took],
        "slowest_s": round(max(done), 3) if len(done) == shards else None,
        "failed_attempts": sum(errors),
    }))
    sys.exit(0 if len(done) == shards else 1)


if __name__ == "__main__":
    main()
