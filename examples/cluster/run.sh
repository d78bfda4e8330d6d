#!/usr/bin/env bash
# Starts a local three-node mqstream cluster from node1.yaml..node3.yaml
# (data in ./data/node1..3 under the current directory), waits until all
# three are ready, lists the members, and stops the nodes on Ctrl-C.
#
#   examples/cluster/run.sh            # from the repository root
#
# MQTT on 127.0.0.1:18083, :18183, :18283; HTTP on :18080, :18180, :18280.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
bin=$tmp/mqstream
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT INT TERM
(cd "$root" && go build -o "$bin" ./cmd/mqstream)
for i in 1 2 3; do
  "$bin" serve --config "$here/node$i.yaml" >"node$i.log" 2>&1 &
  pids+=($!)
done
for port in 18080 18180 18280; do
  for _ in $(seq 1 100); do
    if curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  curl -fs "127.0.0.1:$port/readyz" >/dev/null || { echo "node on :$port not ready; see node*.log" >&2; exit 1; }
done
"$bin" node ls --server http://127.0.0.1:18080
echo "cluster up (logs in node1.log..node3.log); Ctrl-C stops it"
wait
