#!/usr/bin/env bash
# Kills under load: a three-node cluster (12 shards, replication factor 3,
# storage.sync: always; ports 26xxx, MQS_PORT_BASE moves them; temp data
# dirs) takes a $share load spread over its nodes (`mqstream bench share
# -p 4 -s 3 --rate RATE --broker <the three>`: publishers and group members
# reconnect to the next node when theirs dies, and resend what was not
# acknowledged) while the script SIGKILLs one node every 12 s, in turn, and
# restarts it 6 s later. At the end the bench reports what was
# acknowledged, lost (acknowledged, never delivered to the group within
# the drain) and delivered twice (at-least-once redelivery). Exits 1 if
# anything acknowledged was lost.
#
# Usage: scripts/cluster-chaos.sh [seconds [rate]]   (default 120, 2000)
#   MQS_BIN=path   use this binary instead of building one
set -euo pipefail
dur=${1:-120}
rate=${2:-2000}
cd "$(dirname "$0")/.."
bin=${MQS_BIN:-}
if [ -z "$bin" ]; then
  bin=$(mktemp -d)/mqstream
  go build -o "$bin" ./cmd/mqstream
fi
work=$(mktemp -d)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

base=${MQS_PORT_BASE:-26000}
start() {
  "$bin" serve --config "$work/node$1.yaml" >>"$work/node$1.log" 2>&1 &
  pid[$1]=$!
}
brokers=()
for i in 1 2 3; do
  cat >"$work/node$i.yaml" <<YAML
node: {id: node$i, data_dir: $work/node$i}
mqtt: {tcp: "127.0.0.1:$((base + i * 100 + 83))", websocket: ""}
http: {listen: "127.0.0.1:$((base + i * 100 + 80))"}
storage: {sync: always}
cluster:
  name: chaos
  gossip: 127.0.0.1:$((base + i * 100 + 6))
  rpc: 127.0.0.1:$((base + i * 100 + 7))
  seeds: [127.0.0.1:$((base + 106)), 127.0.0.1:$((base + 206)), 127.0.0.1:$((base + 306))]
  bootstrap_expect: 3
  shards: 12
  replication_factor: 3
YAML
  brokers+=("127.0.0.1:$((base + i * 100 + 83))")
  start "$i"
done
for i in 1 2 3; do
  for _ in $(seq 1 300); do curl -fs "127.0.0.1:$((base + i * 100 + 80))/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "127.0.0.1:$((base + i * 100 + 80))/readyz" >/dev/null || { echo "node$i not ready" >&2; tail "$work"/*.log >&2; exit 1; }
done

"$bin" bench share -p 4 -s 3 --rate "$rate" -n $((rate * dur)) -d "${dur}s" -t 'chaos/%d' --drain 40s \
  --broker "$(IFS=,; echo "${brokers[*]}")" --quiet --json >"$work/share.json" &
bench=$!
end=$(($(date +%s) + dur - 15))
k=0
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 12
  i=$((k % 3 + 1))
  k=$((k + 1))
  kill -9 "${pid[$i]}"
  wait "${pid[$i]}" 2>/dev/null || true
  echo "$(date +%T) SIGKILL node$i"
  sleep 6
  start "$i"
  echo "$(date +%T) restarted node$i"
done
wait "$bench"
python3 - "$work/share.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
keys = ["published", "acked", "unacked", "received", "lost", "duplicated", "reconnects", "resent", "max_ack_gap_ms"]
print(" ".join(f"{k}={round(d[k]) if isinstance(d[k], float) else d[k]}" for k in keys),
      f"max_ack_gap_end={d.get('max_ack_gap_end', '')}")
sys.exit(1 if d["lost"] else 0)
PY
