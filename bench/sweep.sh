#!/usr/bin/env bash
# Latency against offered load for one Switchboard binary: delegated IQs paced at each of
# RATES (10 connections, window 50, open loop), a fresh standalone node per run, loopback
# only. For each rate: p50/p99/max latency, the node's and the load tool's CPU (% of one
# core) and the node's read/write system calls per IQ (/proc/PID/io). The tool and the
# node share the machine's cores: the tool's CPU is what the node could not have.
# Before each node run, `switchboard bench floor` sends the same traffic through four
# loopback hops inside the tool with no server (floor_p50/p99): the latency this machine
# gives any router at that rate, measured minutes apart, not at the same time.
# Nothing polls while a run measures: the tool reports its own CPU use, the node's is read
# before and after. (An earlier version read the tool's /proc stat five times a second;
# those forks alone put the sequential p99 at 4-5 ms instead of 0.5-1 ms.)
#
#   go build -o /tmp/sb ./cmd/switchboard && bash bench/sweep.sh /tmp/sb
#   RATES="10000 40000" RUNS=3 NODE_ENV="GOGC=400" bash bench/sweep.sh /tmp/sb
#
# RUNS runs per rate (medians are printed when RUNS > 1); DURATION per run (default 8s);
# NODE_ENV / TOOL_ENV: extra environment for the node / the tool (e.g. GOMAXPROCS=1);
# EXTRA: more flags for the load tool (e.g. "--component-conns 2"); FLOOR=0: no floor runs.
set -euo pipefail
BIN=$(realpath "$1")
RATES=${RATES:-"5000 10000 20000 30000 40000 60000"}
RUNS=${RUNS:-1}
DURATION=${DURATION:-8s}
NODE_ENV=${NODE_ENV:-}
TOOL_ENV=${TOOL_ENV:-}
EXTRA=${EXTRA:-}
FLOOR=${FLOOR:-1}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
workdir sweep
need jq openssl
bench_cert "$WORK"
bench_configs
CFG=$WORK/n0.yaml
sysc() { awk '/^syscr|^syscw/ {printf "%s ", $2}' "/proc/$1/io"; }

echo "--- $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%8s %8s %8s %8s %8s %9s %9s %11s %11s %9s %9s\n' rate/s IQs/s p50_ms p99_ms max_ms node_cpu tool_cpu \
  reads/IQ writes/IQ floor_p50 floor_p99
for rate in $RATES; do
  P50="" P99="" NCPU="" TCPU="" FP99=""
  for _ in $(seq "$RUNS"); do
    fp50=- fp99=-
    if [ "$FLOOR" = 1 ]; then
      env $TOOL_ENV "$BIN" bench floor --json --conns 10 --window 50 --rate "$rate" --duration "$DURATION" \
        $EXTRA >"$WORK/floor.json"
      fp50=$(jq .latency_ms.p50 "$WORK/floor.json") fp99=$(jq .latency_ms.p99 "$WORK/floor.json")
      FP99+="$fp99 "
    fi
    rm -rf "$WORK/data0"
    env $NODE_ENV "$BIN" serve --config "$CFG" >>"$WORK/node.log" 2>&1 &
    PID=$!
    PIDS=("$PID")
    wait_port 127.0.0.1 15347 node
    bench_users "$BIN" "$CFG"
    s0=$(cpu "$PID") io0=$(sysc "$PID") b0=$(date +%s%N)
    env $TOOL_ENV "$BIN" bench delegation --server 127.0.0.1:15222 --component 127.0.0.1:15347 \
      --component-secret bench-secret --insecure --domain localhost --users 10 --password bench \
      --timeout 10s --json --conns 10 --window 50 --rate "$rate" --duration "$DURATION" $EXTRA >"$WORK/out.json"
    ms=$((($(date +%s%N) - b0) / 1000000))
    ncpu=$((($(cpu "$PID") - s0) * 1000 / ms))
    read -r r0 w0 r1 w1 <<<"$io0 $(sysc "$PID")"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PIDS=()
    o=$WORK/out.json
    tcpu=$(jq '.tool_cpu_percent | floor' "$o")
    printf '%8s %8.0f %8s %8s %8s %8s%% %8s%% %11.2f %11.2f %9s %9s\n' "$rate" "$(jq .throughput "$o")" \
      "$(jq .latency_ms.p50 "$o")" "$(jq .latency_ms.p99 "$o")" "$(jq .latency_ms.max "$o")" "$ncpu" "$tcpu" \
      "$(jq -n "($r1 - $r0) / $(jq .ops "$o")")" "$(jq -n "($w1 - $w0) / $(jq .ops "$o")")" "$fp50" "$fp99"
    [ "$(jq .errors "$o")" = 0 ] || echo "  errors: $(jq -c .error_kinds "$o")"
    P50+="$(jq .latency_ms.p50 "$o") " P99+="$(jq .latency_ms.p99 "$o") " NCPU+="$ncpu " TCPU+="$tcpu "
  done
  if [ "$RUNS" -gt 1 ]; then
    fm=-
    [ "$FLOOR" = 1 ] && fm=$(median "$FP99")
    printf '%8s %8s %8s %8s %8s %8s%% %8s%% %11s %11s %9s %9s   (medians of %d)\n' "$rate" - "$(median "$P50")" \
      "$(median "$P99")" - "$(median "$NCPU")" "$(median "$TCPU")" - - - "$fm" "$RUNS"
  fi
done
