#!/usr/bin/env bash
# A continuous query's failover, measured: three nodes from
# examples/cluster (ports 18xxx, data in a temporary directory), a query
# mirroring stream temps (one row per record: {"o": its offset}), N
# records published at 1,000/s through a node that survives, and SIGKILL
# of the query's node 10 s in. It prints how long after the kill the
# query's output grew again (on a survivor), then checks the output:
# every offset once, in place (rows = distinct = N, out_of_place = 0).
#
#   N=30000 scripts/cq-failover.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
bin=$work/mqstream
(cd "$root" && go build -o "$bin" ./cmd/mqstream) || exit 1
cd "$work"
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
for i in 1 2 3; do
  "$bin" serve --config "$root/examples/cluster/node$i.yaml" >"node$i.log" 2>&1 &
  pids+=($!)
done
ports=(18080 18180 18280); mqtt=(18083 18183 18283)
for p in "${ports[@]}"; do
  for _ in $(seq 1 150); do curl -fs "127.0.0.1:$p/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
done
sql() { curl -s "127.0.0.1:$1/v1/query" -d "{\"sql\":\"$2\"}"; echo; }
"$bin" bench pub --broker 127.0.0.1:18083 -n 10 -p 1 -q 1 -t temps/x --quiet 2>&1 | tail -2; sleep 2
sql 18180 "CREATE STREAM mirror AS SELECT _offset AS o FROM temps"
leader=$(curl -s 127.0.0.1:18080/v1/streams/mirror | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
echo "mirror's leader: $leader"
idx=$(( ${leader#node} - 1 ))
alive=$(( (idx + 1) % 3 ))
N=${N:-30000}
"$bin" bench pub --broker 127.0.0.1:${mqtt[$alive]} -n $((N-10)) -p 1 -w 64 -q 1 --rate 1000 -t temps/x --quiet > pub.txt 2>&1 &
bpid=$!
sleep 10
kill -9 "${pids[$idx]}"; t0=$(date +%s.%N)
echo "killed $leader at $t0"
# Poll the survivor's copy of mirror: when does it grow again?
last=$(curl -s 127.0.0.1:${ports[$alive]}/v1/streams/mirror | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_offset"])')
while :; do
  n=$(curl -s 127.0.0.1:${ports[$alive]}/v1/streams/mirror | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_offset"])' 2>/dev/null || echo "$last")
  if [ "$n" -gt "$last" ] 2>/dev/null; then
    t1=$(date +%s.%N); break
  fi
  sleep 0.05
done
echo "output grew again after $(python3 -c "print(round($t1-$t0,2))") s (from $last to $n)"
wait $bpid; cat pub.txt | tail -3
sleep 3
sql ${ports[$alive]} "SELECT count(*) AS n_rows, count(DISTINCT o) AS distinct_o, min(o) AS lo, max(o) AS hi FROM mirror"
sql ${ports[$alive]} "SELECT count(*) FROM temps"
sql ${ports[$alive]} "SELECT count(*) AS out_of_place FROM mirror WHERE _offset <> o"
sql ${ports[$alive]} "SELECT id, node, status, \`lag\` FROM queries"
