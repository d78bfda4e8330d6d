#!/usr/bin/env bash
# End-to-end test of the container image and the Compose cluster, on a
# machine where Docker runs (Debian: apt-get install docker.io docker-compose
# mosquitto-clients python3-paho-mqtt; dockerd started as root).
#
#   scripts/docker-test.sh
#
# 1. builds mqstream:dev (scripts/image.sh: static binary, under 40 MB);
# 2. runs it with a named volume (ports published on 127.0.0.1 only),
#    checks the non-root user, the health check, and that it is ready;
# 3. publishes with a real MQTT client at QoS 1 and reads the record back
#    over REST;
# 4. runs a QoS 1 load, `docker stop`s the container while it runs,
#    `docker start`s it, and checks that every acknowledged publish is stored
#    (by sequence number, not only by count);
# 5. brings up examples/cluster/compose.yaml on free host ports and checks
#    that every node lists three alive members within 30 s and turns healthy.
# Every step is bounded in time; containers, volumes and networks it made
# are removed on exit. All traffic goes to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

run_id=mqstream-test-$$
container=$run_id
volume=$run_id-data
project=mqstreamtest$$
work=$(mktemp -d)
compose_file=$root/examples/cluster/compose.yaml

t0=$(date +%s)
say() { echo "docker-test [$(($(date +%s) - t0))s]: $*"; }
fail() {
  echo "docker-test: FAIL: $*" >&2
  exit 1
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    timeout 180 docker compose -p "$project" -f "$compose_file" "$@"
  else
    timeout 180 docker-compose -p "$project" -f "$compose_file" "$@"
  fi
}

cleanup() {
  status=$?
  if [ "$status" != 0 ]; then
    echo "--- logs of $container (last 30 lines)" >&2
    timeout 20 docker logs --tail 30 "$container" 2>&1 | sed 's/^/  /' >&2 || true
  fi
  timeout 60 docker rm -f "$container" >/dev/null 2>&1 || true
  timeout 60 docker volume rm -f "$volume" >/dev/null 2>&1 || true
  if [ -n "${compose_up:-}" ]; then
    if [ "$status" != 0 ]; then compose logs --tail 20 >&2 2>&1 || true; fi
    compose down -v -t 10 >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- requirements -----------------------------------------------------------
command -v docker >/dev/null || fail "docker is not installed"
timeout 20 docker info >/dev/null 2>&1 || fail "the Docker daemon does not answer (docker info)"
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  fail "neither 'docker compose' nor docker-compose is installed"
fi
command -v curl >/dev/null || fail "curl is not installed"
python=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import paho.mqtt.client' 2>/dev/null; then
    python=$p
    break
  fi
done
[ -n "$python" ] || fail "python3 with paho-mqtt is needed for the QoS 1 load (apt-get install python3-paho-mqtt)"

# free_ports N prints N free TCP ports of 127.0.0.1.
free_ports() {
  "$python" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND every 0.2 s.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local deadline=$(($(date +%s) + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within ${limit}s"
    sleep 0.2
  done
}

ready() { curl -fsS --max-time 2 "http://$1/readyz"; }
healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$1")" = healthy ]; }
host_port() { docker port "$container" "$1/tcp" | grep -m1 '^127.0.0.1:'; }

# --- 1. image -----------------------------------------------------------------
say "building the image"
timeout 900 scripts/image.sh | sed 's/^/  /'
size=$(docker image inspect -f '{{.Size}}' mqstream:dev)

# --- 2. run -----------------------------------------------------------------
say "docker run with volume $volume"
timeout 60 docker volume create "$volume" >/dev/null
timeout 60 docker run -d --name "$container" --stop-timeout 40 \
  -v "$volume:/data" -p 127.0.0.1::1883 -p 127.0.0.1::8080 mqstream:dev >/dev/null
mqtt=$(host_port 1883)
http=$(host_port 8080)
wait_for 30 "the container's /readyz" ready "$http"
uid=$(docker top "$container" -o pid,uid | awk 'NR == 2 {print $2}')
[ "$uid" = 65532 ] || fail "mqstream runs as uid '$uid', not 65532"
wait_for 60 "the container's health check" healthy "$container"
say "ready on mqtt $mqtt http $http as uid $uid; health check: $(docker inspect -f '{{.State.Health.Status}}' "$container")"

# --- 3. publish and read back ---------------------------------------------------
say "QoS 1 publish with a real MQTT client, read back over REST"
message='{"greeting":"hello from docker-test","n":1}'
if command -v mosquitto_pub >/dev/null; then
  client=mosquitto_pub
  timeout 20 mosquitto_pub -h 127.0.0.1 -p "${mqtt##*:}" -q 1 -i docker-test-hello -t hello/docker -m "$message" ||
    fail "mosquitto_pub"
else
  client="paho-mqtt (python)"
  timeout 20 "$python" - "${mqtt##*:}" "$message" <<'EOF' || fail "paho-mqtt publish"
import sys, paho.mqtt.publish as publish
publish.single("hello/docker", sys.argv[2], qos=1, hostname="127.0.0.1", port=int(sys.argv[1]), client_id="docker-test-hello")
EOF
fi
got=$(curl -fsS --max-time 10 "http://$http/v1/streams/hello/records?from_offset=0&limit=10") ||
  fail "GET /v1/streams/hello/records"
case $got in
*'"topic":"hello/docker"'*'"greeting":"hello from docker-test"'*) ;;
*) fail "GET /v1/streams/hello/records: $got" ;;
esac
say "  $client -> stream hello, offset 0, read back"

# --- 4. docker stop during a QoS 1 load -------------------------------------------
cat >"$work/load.py" <<'EOF'
# load.py HOST PORT COUNT OUT: publishes COUNT QoS 1 messages whose
# payloads are their sequence numbers, at most WINDOW unacknowledged, until
# done or the connection is lost (never reconnecting); writes the sequence
# numbers the server acknowledged to OUT, prints a JSON summary.
import json, sys, threading, time
import paho.mqtt.client as mqtt

host, port, count, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
WINDOW, DEADLINE = 200, time.time() + 90
try:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id="docker-test-load", clean_session=True)
except AttributeError:  # paho-mqtt 1.x
    c = mqtt.Client(client_id="docker-test-load", clean_session=True)
c.max_inflight_messages_set(WINDOW)
cond = threading.Condition()
state = {"acks": 0, "gone": False, "connected": False}

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
        state["gone"] = True
        cond.notify_all()
    client.disconnect()  # no automatic reconnect: the count must stop here

c.on_connect, c.on_publish, c.on_disconnect = on_connect, on_publish, on_disconnect
c.connect(host, port, keepalive=30)
c.loop_start()
with cond:
    cond.wait_for(lambda: state["connected"] or state["gone"], timeout=10)
sent = []
for seq in range(count):
    with cond:
        cond.wait_for(lambda: len(sent) - state["acks"] < WINDOW or state["gone"] or time.time() > DEADLINE, timeout=5)
        if state["gone"] or time.time() > DEADLINE:
            break
    info = c.publish("load/docker", str(seq), qos=1)  # never under cond: paho calls on_publish under its own lock
    if info.rc != mqtt.MQTT_ERR_SUCCESS:
        break
    sent.append((seq, info))
with cond:  # the rest of the acks, unless the connection is gone
    cond.wait_for(lambda: state["acks"] >= len(sent) or state["gone"], timeout=10)
c.loop_stop()
acked = [seq for seq, info in sent if info.is_published()]
with open(out, "w") as f:
    f.write("\n".join(map(str, acked)))
print(json.dumps({"published": len(sent), "acked": len(acked), "interrupted": state["gone"]}))
EOF
cat >"$work/verify.py" <<'EOF'
# verify.py HTTP STREAM ACKED: reads every record of STREAM over REST and
# checks that each sequence number in the file ACKED is among the payloads.
import json, sys, urllib.request

http, stream, acked_file = sys.argv[1], sys.argv[2], sys.argv[3]
stored, offset = [], 0
while True:
    url = "http://%s/v1/streams/%s/records?from_offset=%d&limit=10000" % (http, stream, offset)
    page = json.load(urllib.request.urlopen(url, timeout=10))
    if not page["records"]:
        break
    stored += [str(r["payload"]) for r in page["records"]]
    offset = page["next_offset"]
acked = [l for l in open(acked_file).read().split() if l]
have = set(stored)
missing = [s for s in acked if s not in have]
print(json.dumps({"acked": len(acked), "stored": len(stored), "unique": len(have), "missing": len(missing)}))
if missing:
    print("acknowledged but not stored: " + " ".join(missing[:20]), file=sys.stderr)
    sys.exit(1)
EOF
say "QoS 1 load, docker stop while it runs"
timeout 120 "$python" "$work/load.py" 127.0.0.1 "${mqtt##*:}" 500000 "$work/acked" >"$work/load.json" &
load_pid=$!
stored_now() { curl -fsS --max-time 2 "http://$http/v1/streams/load" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["records"])'; }
loading() { [ "$(stored_now)" -ge 5000 ]; }
wait_for 60 "5000 records of the load stored" loading
stop_start=$(date +%s%N)
timeout 60 docker stop -t 40 "$container" >/dev/null
stop_ms=$((($(date +%s%N) - stop_start) / 1000000))
wait "$load_pid" || fail "the load generator failed"
load=$(cat "$work/load.json")
case $load in *'"interrupted": true'*) ;; *) fail "the load was not interrupted by docker stop: $load" ;; esac
docker logs "$container" 2>&1 | grep -q 'signal received, shutting down.*signal=terminated' ||
  fail "mqstream (PID 1) did not log SIGTERM"
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$container")
[ "$exit_code" = 0 ] || fail "mqstream exited with $exit_code after docker stop"
say "  load $load; docker stop took ${stop_ms}ms, exit code 0"
timeout 60 docker start "$container" >/dev/null
mqtt=$(host_port 1883)
http=$(host_port 8080)
wait_for 30 "/readyz after docker start" ready "$http"
verified=$(timeout 120 "$python" "$work/verify.py" "$http" load "$work/acked") || fail "acknowledged records lost: $verified"
say "  after docker start: $verified"

# --- 5. compose cluster ------------------------------------------------------------
read -r -a ports <<<"$(free_ports 9)"
export HOST_IP=127.0.0.1
export NODE1_MQTT_PORT=${ports[0]} NODE1_WS_PORT=${ports[1]} NODE1_HTTP_PORT=${ports[2]}
export NODE2_MQTT_PORT=${ports[3]} NODE2_WS_PORT=${ports[4]} NODE2_HTTP_PORT=${ports[5]}
export NODE3_MQTT_PORT=${ports[6]} NODE3_WS_PORT=${ports[7]} NODE3_HTTP_PORT=${ports[8]}
say "compose up (project $project, HTTP on 127.0.0.1:$NODE1_HTTP_PORT, :$NODE2_HTTP_PORT, :$NODE3_HTTP_PORT)"
compose_up=1
up_start=$(date +%s%N)
compose up -d >"$work/compose.log" 2>&1 || {
  cat "$work/compose.log" >&2
  fail "compose up"
}
three_alive() {
  curl -fsS --max-time 2 "http://127.0.0.1:$1/v1/cluster" |
    "$python" -c 'import json,sys; m=json.load(sys.stdin)["members"]; sys.exit(0 if sum(x["status"] == "alive" for x in m) == 3 else 1)'
}
for port in "$NODE1_HTTP_PORT" "$NODE2_HTTP_PORT" "$NODE3_HTTP_PORT"; do
  wait_for 30 "three alive members seen from 127.0.0.1:$port" three_alive "$port"
done
formed_ms=$((($(date +%s%N) - up_start) / 1000000))
say "  formed in ${formed_ms}ms: $(curl -fsS "http://127.0.0.1:$NODE2_HTTP_PORT/v1/cluster" |
  "$python" -c 'import json,sys; print(", ".join(m["id"] + " " + m["status"] for m in json.load(sys.stdin)["members"]))')"
for n in 1 2 3; do
  id=$(compose ps -q "node$n")
  wait_for 60 "node$n's health check" healthy "$id"
done
say "  all three containers healthy"

say "PASS: image $(awk -v b="$size" 'BEGIN {printf "%.1f", b / 1e6}') MB; docker stop under QoS 1 load lost nothing acknowledged; compose cluster formed in ${formed_ms}ms"
