#!/usr/bin/env bash
# Soak: mixed load against one node for a bounded time, then checks.
#   - 4 publishers at 8k msg/s total into jobs/* (QoS 1) consumed by a
#     3-member $share group,
#   - 2 publishers at 2k msg/s into sensors/* with 2 ordinary subscribers (e2e),
#   - REST writes and SQL queries every second,
# while sampling the server's RSS and CPU. At the end: lost and duplicated
# deliveries, group lag, errors in the log.
# Usage: scripts/soak.sh [minutes]   (default 10)
set -euo pipefail
minutes=${1:-10}
secs=$((minutes * 60))
cd "$(dirname "$0")/.."
go build -o /tmp/mqstream-soak ./cmd/mqstream
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
B=/tmp/mqstream-soak
$B serve --data-dir "$work/data" --mqtt 127.0.0.1:18851 --ws "" --http 127.0.0.1:18101 >"$work/server.log" 2>&1 &
pid=$!
sleep 1
api=http://127.0.0.1:18101
start=$(date +%s)

$B bench share --broker 127.0.0.1:18851 -p 4 -s 3 --rate 8000 -n $((8000 * secs)) -d "${secs}s" -t 'jobs/%d' --quiet --json >"$work/share.json" &
share=$!
$B bench e2e --broker 127.0.0.1:18851 -p 2 -s 2 --rate 2000 -n $((2000 * secs)) -d "${secs}s" -t 'sensors/%d' --quiet --json >"$work/e2e.json" &
e2e=$!

errors=0
printf '%6s %10s %8s %12s\n' time rss_mib cpu_pct records
prev_ticks=$(awk '{print $14 + $15}' /proc/$pid/stat)
while kill -0 $share 2>/dev/null || kill -0 $e2e 2>/dev/null; do
  sleep 1
  curl -sf -X POST $api/v1/streams/soakrest/records -d '{"records":[{"payload":{"n":1}},{"payload":{"n":2}}]}' >/dev/null || errors=$((errors + 1))
  curl -sf -X POST $api/v1/query -d '{"sql":"SELECT count(*) FROM soakrest"}' >/dev/null || errors=$((errors + 1))
  curl -sf -X POST $api/v1/query -d '{"sql":"SELECT name, records FROM streams"}' >/dev/null || errors=$((errors + 1))
  now=$(date +%s)
  if (( (now - start) % 30 == 0 )); then
    ticks=$(awk '{print $14 + $15}' /proc/$pid/stat)
    rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$pid/status)
    recs=$(curl -s $api/v1/node | sed -n 's/.*"records":\([0-9]*\).*/\1/p')
    printf '%5ss %10s %8.0f %12s\n' $((now - start)) "$rss" "$(echo "($ticks - $prev_ticks) / 30" | bc -l)" "$recs"
    prev_ticks=$ticks
  fi
done
wait $share $e2e || true
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" "$2" | head -1; }
echo "share: published $(field published "$work/share.json"), received $(field received "$work/share.json"), lost $(field lost "$work/share.json"), duplicated $(field duplicated "$work/share.json"), p99 $(field p99 "$work/share.json") us"
echo "e2e:   published $(field published "$work/e2e.json"), received $(field received "$work/e2e.json"), lost $(field lost "$work/e2e.json"), duplicated $(field duplicated "$work/e2e.json"), p99 $(field p99 "$work/e2e.json") us"
echo "REST/SQL request errors: $errors"
echo "server log errors: $(grep -c 'level=ERROR' "$work/server.log" || true)"
echo "final RSS: $(awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$pid/status); data dir $(du -sh "$work/data" | cut -f1)"
