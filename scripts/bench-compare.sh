#!/usr/bin/env bash
# Side by side: mqstream (fsync on) vs mosquitto, same loader (mqstream
# bench), same machine, same sitting. Each scenario runs N times per broker;
# prints every run and the median, and the broker's CPU time per message
# (user+sys of its process over the run / messages).
#
# Usage: scripts/bench-compare.sh [runs] [scenario...]
#   scenarios: pub8 pub1 e2e share   (default: these four)
#              e2ep fanp             (persistent-session subscriber: at 10k/s, and as fast as possible)
#              conn connp idle       (connect storm, clean and persistent sessions; idle connections'
#                                     memory: CONNS clients, default 10000; fresh brokers for each)
#              fanout0 fanout1       (1 publisher, FANOUT_SUBS subscribers (1000) on one topic, QoS 0 / 1)
#              routes10 routes100k   (10 / 100,000 subscriptions with + and #, publishes on random topics)
# Ports: BENCH_PORT (mosquitto; mqstream's MQTT is BENCH_PORT+1, its HTTP with
# pprof BENCH_PORT+2), default 18830.
# Needs mosquitto: apt-get install -y mosquitto
set -euo pipefail
runs=${1:-3}; shift || true
scenarios=("$@"); [ ${#scenarios[@]} -gt 0 ] || scenarios=(pub8 pub1 e2e share)
conns=${CONNS:-10000}
fanout_subs=${FANOUT_SUBS:-1000}
port=${BENCH_PORT:-18830}
mosq_port=$port mqs_port=$((port + 1)) http_port=$((port + 2))
cd "$(dirname "$0")/.."
go build -o /tmp/mqstream-bench ./cmd/mqstream
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

# Many connections: each takes a file descriptor in the loader and in the
# broker, and one loopback source address has ~28k ports.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((conns + fanout_subs + 1000)) ]; then
  ulimit -n "$(ulimit -Hn)" && echo "raised the open-files limit to $(ulimit -n)" >&2
fi
source_ips=$(( conns / 20000 + 1 ))
[ "$source_ips" -le 1 ] || echo "connections spread over $source_ips source addresses 127.0.0.1-$source_ips" >&2

mosq_pid= mqs_pid=
start_brokers() {
  printf 'listener %d 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0\nmax_connections -1\n' "$mosq_port" > "$work/mosquitto.conf"
  mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
  mosq_pid=$!
  rm -rf "$work/data"
  # Session queues unbounded on both sides (mosquitto: max_queued_messages 0).
  MQSTREAM_MQTT_MAX_QUEUED=100000000 MQSTREAM_MQTT_MAX_QUEUED_BYTES=0 MQSTREAM_HTTP_PPROF=true \
    /tmp/mqstream-bench serve --data-dir "$work/data" --mqtt "127.0.0.1:$mqs_port" --ws "" --http "127.0.0.1:$http_port" --sync always >"$work/mqstream.log" 2>&1 &
  mqs_pid=$!
  sleep 1
}
stop_brokers() {
  kill "$mosq_pid" "$mqs_pid" 2>/dev/null || true
  wait "$mosq_pid" "$mqs_pid" 2>/dev/null || true
}
start_brokers

# run_conns <pid> <bench args...>: prints "conn_per_s rss_kib_per_conn cpu_us_per_conn failed"
run_conns() {
  local pid=$1; shift
  local out
  out=$(/tmp/mqstream-bench bench "$@" --server-pid "$pid" --quiet --json)
  awk -v r="$(field connect_rate <<<"$out")" -v m="$(field server_rss_per_conn <<<"$out")" \
      -v c="$(field server_cpu_us_per_op <<<"$out")" -v f="$(field connect_failed <<<"$out")" \
      'BEGIN { printf "%.0f %.1f %.1f %d\n", r, m / 1024, c, f }'
}

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
    conn)  echo "conn -n $conns -c 64 -d 60s --source-ips $source_ips" ;;
    connp) echo "conn -n $conns -c 64 -d 60s --source-ips $source_ips --persistent" ;;
    idle)  echo "idle -n $conns -c 64 -d 120s --hold 10s --source-ips $source_ips" ;;
    fanout0) echo "fanout -p 1 -s $fanout_subs -w 256 --size 100 -q 0 --sub-qos 0 -n 20000 -d 20s" ;;
    fanout1) echo "fanout -p 1 -s $fanout_subs -w 256 --size 100 -q 1 --sub-qos 1 -n 20000 -d 20s" ;;
    routes10)   echo "routes -p 8 -s 10 --filters 10 -w 256 --size 100 -q 1 --sub-qos 1 -n 1000000 -d 20s" ;;
    routes100k) echo "routes -p 8 -s 10 --filters 100000 -w 256 --size 100 -q 1 --sub-qos 1 -n 1000000 -d 20s" ;;
  esac
}

printf '%-6s %-10s %-70s %s\n' scen broker "runs (pub/s recv/s lost dup p50us p99us cpu-us/msg)" "medians"
printf '%-6s %-10s %-70s %s\n' "" "" "conn, connp, idle: (conn/s rss-KiB/conn cpu-us/conn failed)" ""
for sc in "${scenarios[@]}"; do
  case $sc in
    conn|connp|idle)
      for target in mosquitto mqstream; do
        cs=() ms=() us=() all=()
        for i in $(seq "$runs"); do
          stop_brokers; start_brokers # fresh brokers: memory grows from their idle size
          pid=$mosq_pid bport=$mosq_port
          [ "$target" = mosquitto ] || pid=$mqs_pid bport=$mqs_port
          # shellcheck disable=SC2046
          read -r a b c d < <(run_conns "$pid" $(scenario "$sc") --broker "127.0.0.1:$bport")
          cs+=("$a"); ms+=("$b"); us+=("$c"); all+=("[$a $b $c $d]")
        done
        printf '%-6s %-10s %-70s conn/s %s rss-KiB/conn %s cpu-us/conn %s\n' "$sc" "$target" "${all[*]}" \
          "$(median "${cs[@]}")" "$(median "${ms[@]}")" "$(median "${us[@]}")"
      done
      continue ;;
  esac
  for target in mosquitto:$mosq_port:$mosq_pid mqstream:$mqs_port:$mqs_pid; do
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
