#!/usr/bin/env bash
# CPU of an idle three-node cluster: the settings of examples/cluster
# (12 shards, replication factor 3), ports of its own, temp data dirs.
# Waits until every node is ready and the balancer has handed leaders back
# (settle seconds), then sums user+sys of the three processes over the
# window (/proc/PID/stat fields 14 and 15) and prints it as a share of one
# core, per node and for all three, once per run.
#
# Usage: scripts/cluster-idle.sh [runs [window_s [settle_s]]]
#   MQS_BIN=path   use this binary instead of building one
#   MQS_PPROF=out  also save a 30 s CPU profile of node 1 at the end
#   MQS_TRACE=out  also save a 10 s execution trace of node 1 at the end
set -euo pipefail
runs=${1:-1}
window=${2:-60}
settle=${3:-20}
cd "$(dirname "$0")/.."
bin=${MQS_BIN:-}
if [ -z "$bin" ]; then
  bin=$(mktemp -d)/mqstream
  go build -o "$bin" ./cmd/mqstream
fi
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM

base=${MQS_PORT_BASE:-24000}
pprof=false
[ -n "${MQS_PPROF:-}${MQS_TRACE:-}" ] && pprof=true
# Ports (MQS_PORT_BASE, default 24000, plus): MQTT i83, HTTP i80, gossip
# i06, RPC i07 for node i = 1..3.
for i in 1 2 3; do
  cat >"$work/node$i.yaml" <<YAML
node: {id: node$i, data_dir: $work/node$i}
mqtt: {tcp: "127.0.0.1:$((base + i * 100 + 83))", websocket: ""}
http: {listen: "127.0.0.1:$((base + i * 100 + 80))", pprof: $pprof}
cluster:
  name: idle
  gossip: 127.0.0.1:$((base + i * 100 + 6))
  rpc: 127.0.0.1:$((base + i * 100 + 7))
  seeds: [127.0.0.1:$((base + 106)), 127.0.0.1:$((base + 206)), 127.0.0.1:$((base + 306))]
  bootstrap_expect: 3
  shards: 12
  replication_factor: 3
  dead_node_timeout: 10m
YAML
  "$bin" serve --config "$work/node$i.yaml" >"$work/node$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 1 300); do curl -fs "127.0.0.1:$((base + i * 100 + 80))/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "127.0.0.1:$((base + i * 100 + 80))/readyz" >/dev/null || { echo "node$i not ready" >&2; tail "$work"/*.log >&2; exit 1; }
done
sleep "$settle"

# user+sys ticks of each process, then the context switches (thread
# wake-ups) of all of them
sample() {
  local cs=0
  for p in "$@"; do
    awk '{printf "%d ", $14 + $15}' "/proc/$p/stat"
    cs=$((cs + $(cat /proc/"$p"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}')))
  done
  echo "$cs"
}
hz=$(getconf CLK_TCK)
for r in $(seq 1 "$runs"); do
  read -r -a a < <(sample "${pids[@]}")
  sleep "$window"
  read -r -a b < <(sample "${pids[@]}")
  awk -v a="${a[*]}" -v b="${b[*]}" -v hz="$hz" -v w="$window" -v r="$r" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); t = 0; per = ""
    for (i = 1; i < n; i++) { d = y[i] - x[i]; t += d; per = per sprintf(" node%d %.1f%%", i, 100 * d / hz / w) }
    printf "run %d, %d s: all nodes %.1f%% of one core (%s); %.0f context switches/s\n", r, w, 100 * t / hz / w, substr(per, 2), (y[n] - x[n]) / w }'
done
if [ -n "${MQS_PPROF:-}" ]; then
  curl -fs "127.0.0.1:$((base + 180))/debug/pprof/profile?seconds=30" -o "$MQS_PPROF"
  echo "profile of node1 in $MQS_PPROF"
fi
if [ -n "${MQS_TRACE:-}" ]; then
  curl -fs "127.0.0.1:$((base + 180))/debug/pprof/trace?seconds=10" -o "$MQS_TRACE"
  echo "execution trace of node1 in $MQS_TRACE"
fi
