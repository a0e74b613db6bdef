#!/usr/bin/env bash
# Idle memory of one Switchboard binary, in steady state: SESSIONS idle TLS sessions held
# HOLD, the node's goroutine stacks, live heap and RSS read right after the logins, then
# again after two forced GCs (the admin listener's /debug/pprof/heap?gc=1) and a few
# seconds, as the runtime's own periodic GC (every two minutes at the latest) leaves them. bench/ab.sh's idle scenario reads the RSS 3 s after the
# logins only, with the logins' garbage still in the heap. Loopback only, standalone node.
#
#   go build -o /tmp/sb ./cmd/switchboard && bash bench/idle.sh /tmp/sb
#   SESSIONS=8000 PARK_AFTER=0s bash bench/idle.sh /tmp/sb     # parking off, to compare
set -euo pipefail
BIN=$(realpath "$1")
SESSIONS=${SESSIONS:-4000}
HOLD=${HOLD:-25s} # at least 15s
PARK_AFTER=${PARK_AFTER:-5s}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
workdir idle
need jq openssl curl
bench_cert "$WORK"
cat >"$WORK/sb.yaml" <<YAML
node: {id: idle, data_dir: $WORK/data}
listen: {c2s: 127.0.0.1:15222, c2s_tls: "", component: 127.0.0.1:15347, admin: 127.0.0.1:15280}
tls: {cert: $WORK/cert.pem, key: $WORK/key.pem}
etcd: {embedded: {client: 127.0.0.1:16379, peer: 127.0.0.1:16380}}
cluster: {bind: ""}
hosts: [{domain: localhost}]
limits: {park_after: $PARK_AFTER}
log: {level: warn}
YAML
# /debug/pprof (for the forced GCs) is served only when asked for; the variable, not a
# config key, so that binaries from before admin.pprof run this script too.
SWITCHBOARD_ADMIN_PPROF=true "$BIN" serve --config "$WORK/sb.yaml" >"$WORK/node.log" 2>&1 &
PID=$!
PIDS=("$PID")
wait_port 127.0.0.1 15347 switchboard
bench_users "$BIN" "$WORK/sb.yaml"
state() { # what the node holds now
  curl -s http://127.0.0.1:15280/metrics | awk -v rss="$(awk '/VmRSS/{print $2}' /proc/$PID/status)" '
    /^go_memstats_stack_inuse_bytes/ {s=$2} /^go_memstats_heap_alloc_bytes/ {h=$2}
    /^switchboard_c2s_parked / {p=$2}
    END {printf "stacks %.1f MB  heap %.1f MB  RSS %.1f MB  parked %d", s/1e6, h/1e6, rss/1024, p}'
}
echo "--- $("$BIN" version 2>/dev/null | head -1), $SESSIONS sessions, park_after $PARK_AFTER, hold $HOLD"
echo "before:         $(state)"
rss0=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
"$BIN" bench idle --server 127.0.0.1:15222 --insecure --domain localhost --users 10 --password bench \
  --timeout 10s --json --sessions "$SESSIONS" --conns 20 --hold "$HOLD" --server-pid "$PID" >"$WORK/idle.json" &
BENCH=$!
sleep $((${HOLD%s} - 10))
echo "idle:           $(state)"
curl -s -o /dev/null "http://127.0.0.1:15280/debug/pprof/heap?gc=1"
curl -s -o /dev/null "http://127.0.0.1:15280/debug/pprof/heap?gc=1"
sleep 6 # the runtime gives freed memory back to the OS over a few seconds
echo "after two GCs:  $(state)"
rss1=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
wait $BENCH
awk -v a="$rss0" -v b="$rss1" -v n="$SESSIONS" 'BEGIN {printf "RSS per session after the GCs: %.1f KiB\n", (b - a) / n}'
echo "bench: $(jq -c '{sessions, errors, rss_per_session_kib}' "$WORK/idle.json")"
