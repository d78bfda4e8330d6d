#!/usr/bin/env bash
# Growth: does mqstream stay fast and bounded with a 10M-record backlog and
# with 10k idle clients? Prints rates and the server's RSS at each step.
# Usage: scripts/bench-growth.sh [backlog] [idle]   (defaults 10000000 10000)
set -euo pipefail
backlog=${1:-10000000}
idle=${2:-10000}
cd "$(dirname "$0")/.."
go build -o /tmp/mqstream-bench ./cmd/mqstream
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
B=/tmp/mqstream-bench
$B serve --data-dir "$work/data" --mqtt 127.0.0.1:18841 --ws "" --http 127.0.0.1:18091 --sync always >"$work/mqstream.log" 2>&1 &
pid=$!
sleep 1
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$pid/status"; }
rate() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" | head -1 | awk '{printf "%.0f", $1}'; }
echo "start: RSS $(rss)"

# A group declared before the backlog is written, from the earliest record.
curl -sf -X POST 127.0.0.1:18091/v1/groups -d '{"name":"backlog","filter":"bench/+","start":"earliest"}' >/dev/null

r=$($B bench pub --broker 127.0.0.1:18841 -p 8 -w 256 --size 100 -n 2000000 -d 60s --quiet --json | rate publish_rate)
echo "ingest, first 2M records: $r msg/s; RSS $(rss)"
r=$($B bench pub --broker 127.0.0.1:18841 -p 8 -w 256 --size 100 -n $((backlog - 4000000)) -d 300s --quiet --json | rate publish_rate)
echo "ingest up to $((backlog - 2000000)) records: $r msg/s; RSS $(rss)"
r=$($B bench pub --broker 127.0.0.1:18841 -p 8 -w 256 --size 100 -n 2000000 -d 60s --quiet --json | rate publish_rate)
echo "ingest, last 2M records (backlog of $((backlog - 2000000)) before): $r msg/s; RSS $(rss)"
curl -s 127.0.0.1:18091/v1/groups/backlog | sed -n 's/.*"lag":\([0-9]*\).*/group lag before consuming: \1/p'

r=$($B bench sub --broker 127.0.0.1:18841 -s 4 --group backlog -t 'bench/%d' -n 2000000 -d 120s --quiet --json | rate receive_rate)
echo "group delivery from a $backlog-record backlog (2M records, 4 members): $r msg/s; RSS $(rss)"
curl -s 127.0.0.1:18091/v1/groups/backlog | sed -n 's/.*"lag":\([0-9]*\).*/group lag after: \1/p'

r=$($B bench pub --broker 127.0.0.1:18841 -p 8 -w 256 --size 100 -n 2000000 -d 120s --idle "$idle" --quiet --json | rate publish_rate)
echo "ingest with $idle idle clients connected: $r msg/s; RSS during (after): $(rss)"
echo "data dir: $(du -sh "$work/data" | cut -f1)"
