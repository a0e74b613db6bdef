#!/usr/bin/env bash
# Node CPU per delegated IQ, for one or more Switchboard binaries, at a paced rate: two
# nodes (127.0.0.21 with the embedded etcd, 127.0.0.22 joined), clients on node 1, the
# echo component on node 1 ("same") or on node 2 ("cross"). Binaries alternate, a fresh
# pair of nodes for every run, loopback only.
#
# Throughput at full speed swings by half between identical runs on a shared 2-core
# machine (the load tool competes with the nodes for the same cores); CPU time per IQ at
# a rate both cases sustain moves by a few percent. Use it to tell whether a change made
# a path cheaper; use ab.sh for what a user sees.
#
#   bash bench/cost.sh /tmp/sb-old /tmp/sb-new
#   RATE=60000 RUNS=5 bash bench/cost.sh /tmp/sb
#
# The load tool's CPU per IQ is shown too: it shares the cores, and it is not constant
# (a slower round trip lets it batch more: at 20k/s it spent 34 us per IQ with the
# component on node 1 and 19 with it on node 2).
#
# RATE (default 40000 IQs/s, 10 connections, window 50), RUNS rounds (default 3),
# measured over the middle MEASURE seconds (default 6) of each 10 s run. The load tool
# is the first binary's `switchboard bench`.
set -euo pipefail
RATE=${RATE:-40000}
RUNS=${RUNS:-3}
MEASURE=${MEASURE:-6}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
workdir cost
need jq openssl
bench_cert "$WORK"
bench_configs
BINS=()
for b in "$@"; do BINS+=("$(realpath "$b")"); done
TOOL=${BINS[0]}
declare -A SUM

echo "--- $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load average $(cut -d' ' -f1-3 /proc/loadavg), $RATE IQs/s"
for _ in $(seq "$RUNS"); do
  for i in "${!BINS[@]}"; do
    bin=${BINS[$i]}
    for where in 1 2; do
      label=same
      [ $where = 2 ] && label=cross
      rm -rf "$WORK/data1" "$WORK/data2"
      "$bin" serve --config "$WORK/n1.yaml" >>"$WORK/n1.log" 2>&1 &
      p1=$!
      PIDS+=("$p1")
      wait_port 127.0.0.21 15347 "node 1"
      "$bin" serve --config "$WORK/n2.yaml" >>"$WORK/n2.log" 2>&1 &
      p2=$!
      PIDS+=("$p2")
      wait_port 127.0.0.22 15347 "node 2"
      bench_users "$bin" "$WORK/n1.yaml"
      sleep 2 # membership
      "$TOOL" bench delegation --server 127.0.0.21:15222 --component "127.0.0.2$where:15347" \
        --component-secret bench-secret --insecure --domain localhost --users 10 --password bench \
        --timeout 10s --json --conns 10 --window 50 --rate "$RATE" --duration 10s >"$WORK/out.json" &
      t=$!
      sleep 2
      a1=$(cpu $p1) a2=$(cpu $p2) at=$(cpu $t) t0=$(date +%s%N)
      sleep "$MEASURE"
      b1=$(cpu $p1) b2=$(cpu $p2) bt=$(cpu $t) t1=$(date +%s%N)
      wait $t
      kill $p1 $p2
      wait $p1 $p2 2>/dev/null || true
      # CPU ticks are 1/100 s: µs per IQ = ticks * 1e4 / IQs in the window
      n=$(jq -n "$RATE * ($t1 - $t0) / 1e9")
      us=$(jq -n "($b1 - $a1 + $b2 - $a2) * 1e4 / $n")
      tus=$(jq -n "($bt - $at) * 1e4 / $n")
      printf '  %-5s %-18s node 1 %5.1f  node 2 %5.1f  both %5.1f  tool %5.1f us/IQ  (p99 %s ms, errors %s)\n' \
        "$label" "b$((i + 1)) $(basename "$bin")" "$(jq -n "($b1 - $a1) * 1e4 / $n")" \
        "$(jq -n "($b2 - $a2) * 1e4 / $n")" "$us" "$tus" "$(jq .latency_ms.p99 "$WORK/out.json")" \
        "$(jq .errors "$WORK/out.json")"
      SUM[$i/$label]+="$us "
      SUM[$i/tool-$label]+="$tus "
    done
  done
done
echo "--- medians (us of CPU per IQ)"
for i in "${!BINS[@]}"; do
  printf '  b%d %s: nodes same %.1f cross %.1f (cross/same %.2f); tool same %.1f cross %.1f\n' $((i + 1)) \
    "$(basename "${BINS[$i]}")" "$(median "${SUM[$i/same]}")" "$(median "${SUM[$i/cross]}")" \
    "$(jq -n "$(median "${SUM[$i/cross]}") / $(median "${SUM[$i/same]}")")" \
    "$(median "${SUM[$i/tool-same]}")" "$(median "${SUM[$i/tool-cross]}")"
done
