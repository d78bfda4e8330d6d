#!/usr/bin/env bash
# Side by side: mqstream (fsync on) vs mosquitto, same loader (mqstream
# bench), same machine, same sitting. Each scenario runs N times per broker;
# prints every run and the median, and the broker's CPU time per message
# (user+sys of its process over the run / messages).
#
# Usage: scripts/bench-compare.sh [runs] [scenario...]
#   scenarios: pub8 pub1 e2e share   (default: these four)
#              e2ep fanp             (persistent-session subscriber: at 10k/s, and as fast as possible)
# Needs mosquitto: apt-get install -y mosquitto
set -euo pipefail
runs=${1:-3}; shift || true
scenarios=("$@"); [ ${#scenarios[@]} -gt 0 ] || scenarios=(pub8 pub1 e2e share)
cd "$(dirname "$0")/.."
go build -o /tmp/mqstream-bench ./cmd/mqstream
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

printf 'listener 18830 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0\n' > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
mosq_pid=$!
# Session queues unbounded on both sides (mosquitto: max_queued_messages 0).
MQSTREAM_MQTT_MAX_QUEUED=100000000 MQSTREAM_MQTT_MAX_QUEUED_BYTES=0 \
  /tmp/mqstream-bench serve --data-dir "$work/data" --mqtt 127.0.0.1:18831 --ws "" --http 127.0.0.1:18081 --sync always >"$work/mqstream.log" 2>&1 &
mqs_pid=$!
sleep 1

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" | head -1; }
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

# run <pid> <bench args...>: prints "rate recv_rate lost dup p50 p99 cpu_us_per_msg"
run() {
  local pid=$1; shift
  local before after out
  before=$(ticks "$pid")
  out=$(/tmp/mqstream-bench bench "$@" --quiet --json)
  after=$(ticks "$pid")
  local rate recv lost dup p50 p99 acked received
  rate=$(field publish_rate <<<"$out"); recv=$(field receive_rate <<<"$out")
  lost=$(field lost <<<"$out"); dup=$(field duplicated <<<"$out")
  p50=$(field p50 <<<"$out"); p99=$(field p99 <<<"$out")
  acked=$(field acked <<<"$out"); received=$(field received <<<"$out")
  local msgs=$(( ${received:-0} > ${acked:-0} ? ${received:-0} : ${acked:-0} ))
  awk -v r="${rate:-0}" -v rr="${recv:-0}" -v l="${lost:-0}" -v d="${dup:-0}" -v a="${p50:-0}" -v b="${p99:-0}" \
      -v t=$((after - before)) -v hz="$hz" -v n="$msgs" \
      'BEGIN { printf "%.0f %.0f %d %d %.0f %.0f %.2f\n", r, rr, l, d, a, b, (n > 0 ? t / hz * 1e6 / n : 0) }'
}

scenario() {
  case $1 in
    pub8)  echo "pub -p 8 -w 256 --size 100 -q 1 -n 2000000 -d 20s" ;;
    pub1)  echo "pub -p 1 -w 256 --size 100 -q 1 -n 1000000 -d 20s" ;;
    e2e)   echo "e2e -p 8 -s 1 -w 256 --size 100 -q 1 --sub-qos 1 --rate 10000 -n 150000 -d 20s" ;;
    share) echo "share -p 8 -s 4 -w 256 --size 100 -q 1 --sub-qos 1 -n 1000000 -d 20s" ;;
    e2ep)  echo "e2e -p 8 -s 1 -w 256 --size 100 -q 1 --sub-qos 1 --rate 10000 -n 150000 -d 20s --persistent" ;;
    fanp)  echo "e2e -p 8 -s 1 -w 256 --size 100 -q 1 --sub-qos 1 -n 600000 -d 20s --persistent" ;;
  esac
}

printf '%-6s %-10s %-70s %s\n' scen broker "runs (pub/s recv/s lost dup p50us p99us cpu-us/msg)" "medians"
for sc in "${scenarios[@]}"; do
  for target in mosquitto:18830:$mosq_pid mqstream:18831:$mqs_pid; do
    IFS=: read -r name port pid <<<"$target"
    rs=() rr=() ls=() ds=() p5=() p9=() cpu=() all=()
    for i in $(seq "$runs"); do
      # shellcheck disable=SC2046
      read -r a b c d e f g < <(run "$pid" $(scenario "$sc") --broker "127.0.0.1:$port")
      rs+=("$a"); rr+=("$b"); ls+=("$c"); ds+=("$d"); p5+=("$e"); p9+=("$f"); cpu+=("$g")
      all+=("[$a $b $c $d $e $f $g]")
    done
    printf '%-6s %-10s %-70s pub %s recv %s lost %s dup %s p50 %s p99 %s cpu %s\n' "$sc" "$name" "${all[*]}" \
      "$(median "${rs[@]}")" "$(median "${rr[@]}")" "$(median "${ls[@]}")" "$(median "${ds[@]}")" \
      "$(median "${p5[@]}")" "$(median "${p9[@]}")" "$(median "${cpu[@]}")"
  done
done
