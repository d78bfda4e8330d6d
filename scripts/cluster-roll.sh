#!/usr/bin/env bash
# A rolling restart under load: the three nodes of examples/cluster (its
# configurations and ports, temp data dirs) take `mqstream bench pub -p 6
# -w 16 -q 1 --rate 3000 -n 90000 -d 40s` spread over them; from 5 s in,
# each node in turn is stopped with SIGTERM, started again and given 6 s.
# Prints the bench's summary (acknowledged, refused, ack latency, the
# longest wait for an ack, connections lost and publishes resent) and the
# publishes the nodes logged as refused. Exits 1 if a publish was not
# acknowledged.
#
# Usage: scripts/cluster-roll.sh [runs]   (default 1)
#   MQS_BIN=path   use this binary instead of building one
set -euo pipefail
runs=${1:-1}
cd "$(dirname "$0")/.."
bin=${MQS_BIN:-}
if [ -z "$bin" ]; then
  bin=$(mktemp -d)/mqstream
  go build -o "$bin" ./cmd/mqstream
fi
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
status=0
for run in $(seq 1 "$runs"); do
  work=$(mktemp -d)
  for i in 1 2 3; do
    sed "s#./data/node$i#$work/node$i#" "examples/cluster/node$i.yaml" >"$work/node$i.yaml"
    start "$i"
  done
  for _ in $(seq 1 150); do
    ready=0
    for port in 18080 18180 18280; do
      curl -fs "127.0.0.1:$port/readyz" >/dev/null && ready=$((ready + 1))
    done
    [ "$ready" = 3 ] && break
    sleep 0.2
  done
  [ "$ready" = 3 ] || { echo "the nodes did not get ready" >&2; tail "$work"/*.log >&2; exit 1; }
  "$bin" bench pub --broker tcp://127.0.0.1:18083,tcp://127.0.0.1:18183,tcp://127.0.0.1:18283 \
    -p 6 -w 16 -q 1 -t 'roll/%d' --rate 3000 -n 90000 -d 40s --json >"$work/bench.json" 2>"$work/bench.err" &
  bench=$!
  sleep 5
  for i in 1 2 3; do
    kill -TERM "${pid[$i]}"
    wait "${pid[$i]}" || true
    start "$i"
    sleep 6
  done
  wait "$bench" || true
  refused=$(cat "$work"/node*.log | grep -c 'publish refused' || true)
  python3 - "$work/bench.json" "$run" "$refused" <<'PY' || status=1
import json, sys
d = json.load(open(sys.argv[1]))
lat = d.get("ack_latency_us", {})
print(f"run {sys.argv[2]}: acked {d['acked']} unacked {d['unacked']} refused {d['refused']} (node logs: {sys.argv[3]}); "
      f"ack p99 {lat.get('p99', 0) / 1000:.1f} ms, p99.9 {lat.get('p999', 0) / 1000:.1f} ms, "
      f"longest wait {d['max_ack_gap_ms']:.0f} ms; connections lost {d['reconnects']}, resent {d['resent']}")
sys.exit(1 if d["unacked"] or d["acked"] != 90000 else 0)
PY
  cleanup
done
exit "$status"
