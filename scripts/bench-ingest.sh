#!/usr/bin/env bash
# Side-by-side durable ingest: mqstream (fsync on) vs mosquitto, same loader,
# same machine, same sitting. Prints each run's acknowledged publish rate, the
# median, and the broker's CPU time per message (user+sys of its process).
# Usage: scripts/bench-ingest.sh [runs]   (needs mosquitto: apt-get install -y mosquitto)
set -euo pipefail
runs=${1:-3}
cd "$(dirname "$0")/.."
go build -o /tmp/mqstream-bench ./cmd/mqstream
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

printf 'listener 18830 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0\n' > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
mosq_pid=$!
/tmp/mqstream-bench serve --data-dir "$work/data" --mqtt 127.0.0.1:18831 --ws "" --http 127.0.0.1:18081 --sync always >"$work/mqstream.log" 2>&1 &
mqs_pid=$!
sleep 1

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
run() { # addr publishers count pid -> "rate cpu_us_per_msg"
  local before after out rate acked
  before=$(ticks "$4")
  out=$(/tmp/mqstream-bench bench pub --broker "$1" -p "$2" -w 256 --size 100 -q 1 -n "$3" -d 20s --quiet --json)
  after=$(ticks "$4")
  rate=$(sed -n 's/.*"publish_rate": \([0-9.]*\).*/\1/p' <<<"$out")
  acked=$(sed -n 's/.*"acked": \([0-9]*\).*/\1/p' <<<"$out")
  awk -v r="$rate" -v t=$((after - before)) -v hz="$hz" -v n="$acked" 'BEGIN { printf "%.0f %.2f\n", r, t / hz * 1e6 / n }'
}
for p in 8 1; do
  n=$((p == 8 ? 2000000 : 1000000))
  for target in mosquitto:127.0.0.1:18830:$mosq_pid mqstream:127.0.0.1:18831:$mqs_pid; do
    IFS=: read -r name host port pid <<<"$target"
    rates=() cpus=()
    for i in $(seq "$runs"); do
      read -r rate cpu < <(run "$host:$port" "$p" "$n" "$pid")
      rates+=("$rate"); cpus+=("$cpu")
    done
    median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
    printf '%-10s publishers=%d  rates: %s  median %s msg/s  broker CPU us/msg median %s\n' \
      "$name" "$p" "${rates[*]}" "$(median "${rates[@]}")" "$(median "${cpus[@]}")"
  done
done
