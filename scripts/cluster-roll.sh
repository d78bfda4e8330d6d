#!/usr/bin/env bash
# A rolling restart under load, on the three nodes of examples/cluster
# (its configurations and ports, temp data dirs).
#
# Default (publishers): `mqstream bench pub -p 6 -w 16 -q 1 --rate 3000
# -n 90000 -d 40s` spread over the nodes; from 5 s in, each node in turn is
# stopped with SIGTERM, started again and given 6 s. Prints the bench's
# summary (acknowledged, refused, ack latency, the longest wait for an
# ack, connections lost and publishes resent) and the publishes the nodes
# logged as refused. Exits 1 if a publish was not acknowledged.
#
# MODE=e2e (persistent subscribers): `mqstream bench e2e --persistent -p 3
# -s 2 -q 1 --rate 300 -d 75s`; from 10 s in, node3, node1 and node2 in
# turn are stopped with SIGTERM, started again, waited for (/readyz) and
# given 10 s. Prints what the subscribers lost and got twice (and the
# sequences they missed). Exits 1 if a publish was not acknowledged or a
# message lost.
#
# Usage: [MODE=e2e] scripts/cluster-roll.sh [runs]   (default 1)
#   MQS_BIN=path   use this binary instead of building one
set -euo pipefail
runs=${1:-1}
mode=${MODE:-pub}
cd "$(dirname "$0")/.."
bin=${MQS_BIN:-}
if [ -z "$bin" ]; then
  bin=$(mktemp -d)/mqstream
  go build -o "$bin" ./cmd/mqstream
fi
brokers=tcp://127.0.0.1:18083,tcp://127.0.0.1:18183,tcp://127.0.0.1:18283
declare -A pid
work=""
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$work" ] && rm -rf "$work"
  pid=()
}
trap cleanup EXIT INT TERM

start() {
  "$bin" serve --config "$work/node$1.yaml" >>"$work/node$1.log" 2>&1 &
  pid[$1]=$!
}
ready() { # node index
  local port=$((18080 + ($1 - 1) * 100))
  for _ in $(seq 1 150); do
    curl -fs "127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.2
  done
  echo "node$1 did not get ready" >&2
  tail "$work/node$1.log" >&2
  return 1
}
restart() { # node index
  kill -TERM "${pid[$1]}"
  wait "${pid[$1]}" || true
  start "$1"
}

roll_pub() { # run
  "$bin" bench pub --broker "$brokers" \
    -p 6 -w 16 -q 1 -t 'roll/%d' --rate 3000 -n 90000 -d 40s --json >"$work/bench.json" 2>"$work/bench.err" &
  local bench=$!
  sleep 5
  for i in 1 2 3; do
    restart "$i"
    sleep 6
  done
  wait "$bench" || true
  local refused
  refused=$(cat "$work"/node*.log | grep -c 'publish refused' || true)
  python3 - "$work/bench.json" "$1" "$refused" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
lat = d.get("ack_latency_us", {})
print(f"run {sys.argv[2]}: acked {d['acked']} unacked {d['unacked']} refused {d['refused']} (node logs: {sys.argv[3]}); "
      f"ack p99 {lat.get('p99', 0) / 1000:.1f} ms, p99.9 {lat.get('p999', 0) / 1000:.1f} ms, "
      f"longest wait {d['max_ack_gap_ms']:.0f} ms; connections lost {d['reconnects']}, resent {d['resent']}")
sys.exit(1 if d["unacked"] or d["acked"] != 90000 else 0)
PY
}

roll_e2e() { # run
  "$bin" bench e2e --persistent -p 3 -s 2 -q 1 --rate 300 -d 75s --broker "$brokers" \
    --json >"$work/bench.json" 2>"$work/bench.err" &
  local bench=$!
  for i in 3 1 2; do
    sleep 10
    restart "$i"
    ready "$i"
  done
  wait "$bench" || true
  python3 - "$work/bench.json" "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"run {sys.argv[2]}: published {d['published']} acked {d['acked']}; received {d['received']} of {d['expected']}, "
      f"lost {d['lost']}, duplicated {d['duplicated']}; resent {d['resent']}, connections lost {d['reconnects']}, "
      f"longest wait for an ack {d['max_ack_gap_ms']:.0f} ms")
for m in d.get("missing") or []:
    print("  missing:", m)
sys.exit(1 if d["lost"] or d["acked"] != d["published"] else 0)
PY
}

status=0
for run in $(seq 1 "$runs"); do
  work=$(mktemp -d)
  for i in 1 2 3; do
    sed "s#./data/node$i#$work/node$i#" "examples/cluster/node$i.yaml" >"$work/node$i.yaml"
    start "$i"
  done
  for i in 1 2 3; do
    ready "$i"
  done
  "roll_$mode" "$run" || status=1
  cleanup
done
exit "$status"
