#!/usr/bin/env bash
# Side by side: two Switchboard binaries (say, the commit before a change and after it),
# alternated RUNS times in one run, fresh node(s) for every run, on loopback only. The
# machine is shared and noisy: quote the ratios of the medians, not absolute figures.
#
#   go build -o /tmp/sb-old ./cmd/switchboard   # at the old commit
#   go build -o /tmp/sb-new ./cmd/switchboard   # at the new one
#   bash bench/ab.sh /tmp/sb-old /tmp/sb-new
#   SCENARIOS="cross" RUNS=5 bash bench/ab.sh /tmp/sb-old /tmp/sb-new
#
# Scenarios (SCENARIOS, default "max half cross idle"):
#   max    delegated IQs, 10 conns x window 50, as fast as they go (COUNT, 60000)
#   half   the same paced at RATE/s (default: half of the new binary's median max), with
#          the node's CPU use; before each pair, `bench floor` at the same rate (the same
#          traffic through four loopback hops in the tool, no server): this machine's floor
#   cross  two nodes (127.0.0.21 with the embedded etcd, 127.0.0.22 joined), clients on
#          node 1, the echo component on node 1 ("same") or node 2 ("cross")
#   idle   RSS per idle TLS session (2000 sessions), read after IDLE_HOLD (default 3s) idle
# The load tool is always the NEW binary's `switchboard bench`, so only the server differs.
set -euo pipefail
OLD=$(realpath "$1")
NEW=$(realpath "$2")
RUNS=${RUNS:-3}
COUNT=${COUNT:-60000}
SCENARIOS=${SCENARIOS:-"max half cross idle"}
IDLE_HOLD=${IDLE_HOLD:-3s}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
workdir ab
need jq openssl
bench_cert "$WORK"

bench_configs

start() { # BIN N IP: start node N and wait for it; its pid is in STARTED
  rm -rf "$WORK/data$2"
  "$1" serve --config "$WORK/n$2.yaml" >>"$WORK/n$2.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
  wait_port "$3" 15347
}
stop() {
  kill "$@" 2>/dev/null || true
  for p in "$@"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
}
users() { bench_users "$1" "$WORK/n$2.yaml"; } # BIN N
COMMON=(--insecure --domain localhost --users 10 --password bench --timeout 10s --json)
summary='"\(.throughput|floor)/s p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) ms errors \(.errors)"'
declare -A SUM

one() { # SCENARIO SIDE BIN: one run, prints a line, adds the figure to SUM
  local sc=$1 side=$2 bin=$3 out p p2
  case $sc in
  max | half)
    start "$bin" 0 127.0.0.1
    p=$STARTED
    users "$bin" 0
    local args=(--count "$COUNT" --conns 10 --window 50)
    [ "$sc" = half ] && args=(--rate "$RATE" --count $((RATE * 7)) --conns 10 --window 50)
    local b0 s0
    s0=$(cpu "$p")
    b0=$(date +%s%N)
    out=$("$NEW" bench delegation --server 127.0.0.1:15222 --component 127.0.0.1:15347 \
      --component-secret bench-secret "${COMMON[@]}" "${args[@]}")
    local ms=$((($(date +%s%N) - b0) / 1000000))
    local cpupct=$((($(cpu "$p") - s0) * 1000 / (ms > 0 ? ms : 1)))
    stop "$p"
    echo "  $sc $side: $(jq -r "$summary" <<<"$out")  node CPU ${cpupct}% (of one core, whole run)"
    SUM[$sc/$side]+="$(jq -r '.throughput' <<<"$out") "
    SUM[$sc-p99/$side]+="$(jq -r '.latency_ms.p99' <<<"$out") "
    ;;
  cross)
    for where in 1 2; do
      start "$bin" 1 127.0.0.21
      p=$STARTED
      start "$bin" 2 127.0.0.22
      p2=$STARTED
      users "$bin" 1
      sleep 2 # membership
      out=$("$NEW" bench delegation --server 127.0.0.21:15222 --component "127.0.0.2$where:15347" \
        --component-secret bench-secret "${COMMON[@]}" --count "$COUNT" --conns 10 --window 50)
      stop "$p2" "$p"
      local label=same
      [ $where = 2 ] && label=cross
      echo "  $label $side: $(jq -r "$summary" <<<"$out")"
      SUM[$label/$side]+="$(jq -r '.throughput' <<<"$out") "
    done
    ;;
  idle)
    start "$bin" 0 127.0.0.1
    p=$STARTED
    users "$bin" 0
    out=$("$NEW" bench idle --server 127.0.0.1:15222 "${COMMON[@]}" --sessions 2000 --conns 20 --server-pid "$p" \
      --hold "$IDLE_HOLD")
    stop "$p"
    echo "  idle $side: $(jq -r '.rss_per_session_kib' <<<"$out") KiB/session, errors $(jq -r .errors <<<"$out")"
    SUM[idle/$side]+="$(jq -r '.rss_per_session_kib' <<<"$out") "
    ;;
  esac
}

echo "--- $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for sc in $SCENARIOS; do
  if [ "$sc" = half ] && [ -z "${RATE:-}" ]; then
    if [ -n "${SUM[max/new]:-}" ]; then
      RATE=$(median "${SUM[max/new]}" | awk '{printf "%d", $1/2}')
    else
      echo "half needs RATE or the max scenario first" >&2
      exit 1
    fi
  fi
  if [ "$sc" = half ]; then echo "--- half ($RATE/s)"; else echo "--- $sc"; fi
  for r in $(seq "$RUNS"); do
    if ((r % 2)); then order="old new"; else order="new old"; fi
    if [ "$sc" = half ]; then
      out=$("$NEW" bench floor --json --conns 10 --window 50 --rate "$RATE" --count $((RATE * 7)))
      echo "  half floor: $(jq -r "$summary" <<<"$out")  (no server: four loopback hops in the tool)"
      SUM[half-p99-floor]+="$(jq -r '.latency_ms.p99' <<<"$out") "
    fi
    for side in $order; do
      if [ $side = old ]; then one "$sc" old "$OLD"; else one "$sc" new "$NEW"; fi
    done
  done
done
echo "--- medians (new/old)"
for k in "${!SUM[@]}"; do
  [[ $k == */old ]] || continue
  base=${k%/old}
  o=$(median "${SUM[$k]}")
  n=$(median "${SUM[$base/new]}")
  echo "  $base: old $(printf %.6g "$o")  new $(printf %.6g "$n")  ratio $(awk -v o="$o" -v n="$n" 'BEGIN {printf "%.2f", (o > 0 ? n / o : 0)}')"
done | sort
if [ -n "${SUM[half-p99-floor]:-}" ]; then
  echo "  half-p99 floor (no server, same traffic): $(median "${SUM[half-p99-floor]}")"
fi
if [ -n "${SUM[same/new]:-}" ]; then
  for side in old new; do
    echo "  cross/same $side: $(awk -v c="$(median "${SUM[cross/$side]}")" -v s="$(median "${SUM[same/$side]}")" 'BEGIN {printf "%.2f", c / s}')"
  done
fi
