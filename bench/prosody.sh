#!/usr/bin/env bash
# Side by side: the same `switchboard bench` scenarios against Prosody (Debian's 0.12 with
# mod_delegation from prosody-modules) and against a standalone Switchboard node, on
# loopback only, alternating, RUNS times each; prints every run, the medians and the
# ratio Switchboard/Prosody. Not part of .ci/run (it takes minutes).
#
#   bash bench/prosody.sh                 # everything, 5 runs each
#   RUNS=3 SCENARIOS="delegation latency" bash bench/prosody.sh
#
# Knobs (environment): RUNS (5), COUNT (50000: delegation and message ops per run),
# LAT_COUNT (5000: sequential delegated IQs), LOGIN_COUNT (300), IDLE_SESSIONS (2000),
# CONNS (10), WINDOW (50), FLOOD_SECONDS (5), FLOOD_KINDS ("roster presence message"), SERVER_BIN (a Switchboard binary to run as the
# server instead of the one built from this tree, e.g. an older commit's; the tool is this tree's),
# SCENARIOS ("idle delegation latency halfload login message"; "flood" on request),
# OUT (a directory to keep the JSON results and logs in; default: a temporary one, removed).
#
# Everything listens on 127.0.0.1 on ports that clash with neither server's defaults:
# Prosody c2s 25222 / direct TLS 25223 / component 25347; Switchboard c2s 15222 /
# 15223 / component 15347 / admin 15280, embedded etcd 12379/12380, no cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
COUNT=${COUNT:-50000}
LAT_COUNT=${LAT_COUNT:-5000}
LOGIN_COUNT=${LOGIN_COUNT:-300}
IDLE_SESSIONS=${IDLE_SESSIONS:-2000}
CONNS=${CONNS:-10}
WINDOW=${WINDOW:-50}
SCENARIOS=${SCENARIOS:-"idle delegation latency halfload login message"}
USERS=10
PASSWORD=bench
SECRET=bench-secret
NS=urn:example:bench

# --- Prosody and mod_delegation from Debian ------------------------------------------
MOD=/usr/lib/prosody/modules/mod_delegation/mod_delegation.lua
if ! command -v prosody >/dev/null || [ ! -f "$MOD" ]; then
  echo "--- installing prosody and prosody-modules (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prosody prosody-modules >/dev/null
fi
if [ ! -f "$MOD" ]; then
  echo "mod_delegation is not where Debian's prosody-modules puts it ($MOD)" >&2
  exit 1
fi
for tool in jq openssl python3; do
  command -v $tool >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $tool >/dev/null
done

if [ -n "${OUT:-}" ]; then
  WORK=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
else
  WORK=$(mktemp -d /tmp/sb-vs-prosody.XXXXXX)
fi
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  [ -n "${OUT:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source bench/lib.sh # (the script runs from the repository root)

# One certificate for both servers (ECDSA P-256, like Switchboard's self-signed one), so
# that TLS costs the same on both sides.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout "$WORK/localhost.key" -out "$WORK/localhost.crt" -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,DNS:bench.localhost 2>/dev/null

# --- Prosody -----------------------------------------------------------------------------
mkdir -p "$WORK/prosody/data"
PCFG="$WORK/prosody/prosody.cfg.lua"
cat >"$PCFG" <<EOF
-- Written by bench/prosody.sh: loopback only, nothing but what the benchmark needs.
pidfile = "$WORK/prosody/prosody.pid"
data_path = "$WORK/prosody/data"
certificates = "$WORK"
run_as_root = $( [ "$(id -u)" = 0 ] && echo true || echo false )
log = { warn = "$WORK/prosody/prosody.log" }
plugin_paths = { "/usr/lib/prosody/modules" }
network_backend = "epoll"
-- Nagle off: with it, Prosody's small writes wait for delayed ACKs (40 ms per login step).
network_settings = { nagle = false }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "delegation"; }
modules_disabled = { "s2s"; }
c2s_ports = { 25222 }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { 25223 }
c2s_direct_tls_interfaces = { "127.0.0.1" }
component_ports = { 25347 }
component_interfaces = { "127.0.0.1" }
s2s_ports = { }
http_ports = { }
https_ports = { }
authentication = "internal_hashed"
default_iteration_count = 4096 -- as Switchboard's accounts.scram_iterations
allow_registration = false
c2s_require_encryption = true
storage = "internal"
ssl = { certificate = "$WORK/localhost.crt"; key = "$WORK/localhost.key"; }

VirtualHost "localhost"
    delegations = { ["$NS"] = { jid = "bench.localhost" } }

Component "bench.localhost"
    component_secret = "$SECRET"
    modules_enabled = { "delegation" }
EOF
echo "--- prosody $(cat /usr/lib/prosody/prosody.version 2>/dev/null): users, start"
for i in $(seq 0 $((USERS - 1))); do
  prosodyctl --config "$PCFG" register "bench$i" localhost "$PASSWORD" >/dev/null 2>&1
done
# The flood scenario runs both servers as a Debian user gets them: Prosody with the rate
# limit of Debian's example config (mod_limits, c2s 10kb/s), Switchboard with its
# default limits (the scripts lift them for the throughput scenarios).
PCFG_FLOOD="$WORK/prosody/prosody-flood.cfg.lua" # (Prosody wants the .cfg.lua ending)
sed -e 's/"ping"; "delegation";/"ping"; "delegation"; "limits";/' \
  -e 's/^modules_disabled = .*/&\nlimits = { c2s = { rate = "10kb\/s"; burst = "2s" } }/' "$PCFG" >"$PCFG_FLOOD"
PROSODY_CFG=$PCFG
start_prosody() {
  prosody --config "$PROSODY_CFG" -F >>"$WORK/prosody/stdout.log" 2>&1 &
  PROSODY_PID=$!
  PIDS+=("$PROSODY_PID")
  wait_port 127.0.0.1 25222 prosody
  wait_port 127.0.0.1 25347 prosody
}
start_prosody

# --- Switchboard ---------------------------------------------------------------------------
echo "--- switchboard: build, start, users"
go build -o "$WORK/switchboard" ./cmd/switchboard
SB="$WORK/switchboard"
SCFG="$WORK/switchboard.yaml"
cat >"$SCFG" <<EOF
node: {id: bench, data_dir: $WORK/sbdata}
listen: {c2s: 127.0.0.1:15222, c2s_tls: 127.0.0.1:15223, component: 127.0.0.1:15347, admin: 127.0.0.1:15280}
tls: {cert: $WORK/localhost.crt, key: $WORK/localhost.key}
etcd: {embedded: {client: 127.0.0.1:12379, peer: 127.0.0.1:12380}}
cluster: {bind: ""}
hosts:
  - domain: localhost
    delegations:
      "$NS": {jid: bench.localhost}
components:
  - {jid: bench.localhost, secret: $SECRET}
log: {level: warn}
EOF
SB_ENV=()
start_switchboard() {
  env "${SB_ENV[@]}" "${SERVER_BIN:-$SB}" serve --config "$SCFG" >>"$WORK/switchboard.log" 2>&1 &
  SB_PID=$!
  PIDS+=("$SB_PID")
  wait_port 127.0.0.1 15222 switchboard
  wait_port 127.0.0.1 15347 switchboard
}
start_switchboard
for i in $(seq 0 $((USERS - 1))); do
  echo "$PASSWORD" | "$SB" user add "bench$i@localhost" --password-stdin --config "$SCFG" >/dev/null
done

# --- runs --------------------------------------------------------------------------------
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
# Same tool, same flags; SCRAM-SHA-1 on both (Prosody 0.12 stores SHA-1 credentials only).
COMMON=(--insecure --domain localhost --users $USERS --password "$PASSWORD" --mech SCRAM-SHA-1 --timeout 10s --max-time 5m --json)
addr() { # side kind
  case "$1/$2" in
    prosody/c2s) echo 127.0.0.1:25222 ;; prosody/comp) echo 127.0.0.1:25347 ;; prosody/pid) echo "$PROSODY_PID" ;;
    switchboard/c2s) echo 127.0.0.1:15222 ;; switchboard/comp) echo 127.0.0.1:15347 ;; switchboard/pid) echo "$SB_PID" ;;
  esac
}
bench() { # side label run scenario args...
  local side=$1 label=$2 run=$3 scenario=$4
  shift 4
  local out
  if ! out=$("$SB" bench "$scenario" --server "$(addr "$side" c2s)" "${COMMON[@]}" "$@" 2>"$WORK/bench.err"); then
    echo "  $side $label run $run: FAILED: $(tail -c 400 "$WORK/bench.err") $out" >&2
    out=${out:-'{}'}
  fi
  echo "$out" | jq -c --arg side "$side" --arg lb "$label" --argjson run "$run" '. + {side: $side, "label": $lb, run: $run}' >>"$RESULTS"
  echo "$out" | jq -r --arg side "$side" --arg lb "$label" --argjson run "$run" \
    '"  \($lb) run \($run) \($side|.+"           "|.[0:11]) \(.throughput // 0 | floor) ops/s  p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) max \(.latency_ms.max) ms  errors \(.errors)" + (if .rss_per_session_kib then "  RSS/session \(.rss_per_session_kib) KiB" else "" end) + (if .flood then "  RSS \(.rss_before_kib)/\(.rss_max_kib)/\(.rss_after_kib) KiB before/max/after  pings \(.pings)  answered \(.flood_answered // 0)  delivered \(.flood_delivered // 0)" + (if .flood_cut then "  CUT" else "" end) else "" end)'
}
delegation_args() { echo --component "$(addr "$1" comp)" --component-secret "$SECRET"; }
sides() { # alternate which server goes first
  if (( $1 % 2 )); then echo "prosody switchboard"; else echo "switchboard prosody"; fi
}

stop() { # pid
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
# Both servers start fresh for every scenario: neither carries the previous scenario's
# history (Prosody, for one, runs ~3x slower after a few thousand sessions came and went).
restart() {
  stop "$PROSODY_PID"
  stop "$SB_PID"
  start_prosody
  start_switchboard
}

echo "--- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), load average $(cut -d' ' -f1-3 /proc/loadavg)"
first=1
for scen in $SCENARIOS; do
  [ $first = 1 ] || restart
  first=0
  echo "--- $scen (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  case $scen in
    idle)
      # Fresh servers (before any load), one run each: RSS growth per idle TLS session.
      for side in prosody switchboard; do
        bench "$side" idle 1 idle --sessions "$IDLE_SESSIONS" --conns 4 --hold 3s --server-pid "$(addr "$side" pid)"
      done
      ;;
    delegation)
      for r in $(seq "$RUNS"); do
        for side in $(sides "$r"); do
          # shellcheck disable=SC2046
          bench "$side" delegation "$r" delegation $(delegation_args "$side") --conns "$CONNS" --window "$WINDOW" --count "$COUNT"
        done
      done
      ;;
    latency)
      for r in $(seq "$RUNS"); do
        for side in $(sides "$r"); do
          # shellcheck disable=SC2046
          bench "$side" latency "$r" delegation $(delegation_args "$side") --conns 1 --window 1 --count "$LAT_COUNT"
        done
      done
      ;;
    halfload)
      # Switchboard at half of its median maximum (window 50) throughput, paced: the p99 target.
      max=$(jq -s '[.[] | select(.side=="switchboard" and .label=="delegation") | .throughput] | sort | if length == 0 then 0 else .[length/2|floor] end' "$RESULTS")
      if [ "${max%.*}" -le 0 ]; then
        echo "  (no delegation runs to take the maximum from: run the delegation scenario first)"
        continue
      fi
      rate=$(jq -n --argjson m "$max" '$m/2 | floor')
      echo "  paced at $rate/s (half of Switchboard's median maximum)"
      for r in $(seq "$RUNS"); do
        # shellcheck disable=SC2046
        bench switchboard halfload "$r" delegation $(delegation_args switchboard) --conns "$CONNS" --window "$WINDOW" --rate "$rate" --count $((rate * 5))
      done
      ;;
    login)
      for r in $(seq "$RUNS"); do
        for side in $(sides "$r"); do
          bench "$side" login "$r" login --conns 4 --count "$LOGIN_COUNT"
        done
      done
      ;;
    message)
      for r in $(seq "$RUNS"); do
        for side in $(sides "$r"); do
          bench "$side" message "$r" message --conns "$CONNS" --window "$WINDOW" --count "$COUNT"
        done
      done
      ;;
    flood)
      # One client floods for FLOOD_SECONDS while another pings every 100 ms; each run on
      # fresh servers with their default limits (above), RSS sampled every 50 ms.
      PROSODY_CFG=$PCFG_FLOOD
      SB_ENV=(-u SWITCHBOARD_LIMITS_MAX_SESSIONS_PER_USER -u SWITCHBOARD_LIMITS_MAX_UNAUTHENTICATED_PER_IP
        -u SWITCHBOARD_LIMITS_CLIENT_BYTES_PER_SECOND -u SWITCHBOARD_LIMITS_CLIENT_STANZAS_PER_SECOND)
      for kind in ${FLOOD_KINDS:-roster presence message}; do
        for r in $(seq "$RUNS"); do
          for side in $(sides "$r"); do
            restart
            bench "$side" "flood-$kind" "$r" flood --flood "$kind" --duration "${FLOOD_SECONDS:-5}s" --server-pid "$(addr "$side" pid)" --allow-errors
          done
        done
      done
      PROSODY_CFG=$PCFG
      SB_ENV=()
      ;;
    *) echo "unknown scenario $scen" >&2; exit 2 ;;
  esac
done

echo "--- medians (Switchboard/Prosody: throughput ratio > 1 and latency ratio < 1 favour Switchboard)"
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
labels = []
for r in rows:
    if r["label"] not in labels:
        labels.append(r["label"])
def med(label, side, key):
    vals = []
    for r in rows:
        if r["label"] == label and r["side"] == side:
            v = r
            for k in key.split("."):
                v = v.get(k, {}) if isinstance(v, dict) else {}
            if isinstance(v, (int, float)):
                vals.append(v)
    return statistics.median(vals) if vals else None
print(f"{'scenario':<11} {'figure':<22} {'prosody':>10} {'switchboard':>12} {'ratio':>7}  runs  errors")
for label in labels:
    keys = [("throughput", "ops/s")] if label not in ("idle",) else [("rss_per_session_kib", "RSS KiB/session")]
    keys += [("latency_ms.p50", "p50 ms"), ("latency_ms.p99", "p99 ms")]
    if label.startswith("flood-"):
        # written: what the flooder's socket took (kernel buffers hold much of it when the
        # server reads slowly); answered/delivered: what the server actually processed.
        keys = [("throughput", "written/s"), ("flood_answered", "answered (roster)"), ("flood_delivered", "delivered (message)"),
                ("rss_max_kib", "RSS max KiB"), ("rss_after_kib", "RSS after KiB"),
                ("latency_ms.max", "bystander ping max ms"), ("latency_ms.p99", "bystander ping p99 ms")]
    for key, name in keys:
        p, s = med(label, "prosody", key), med(label, "switchboard", key)
        ratio = f"{s / p:.2f}" if p and s is not None else "-"
        fmt = lambda v: "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.3f}")
        runs = sum(1 for r in rows if r["label"] == label)
        errs = sum(r.get("errors", 0) for r in rows if r["label"] == label)
        print(f"{label:<11} {name:<22} {fmt(p):>10} {fmt(s):>12} {ratio:>7}  {runs:>4}  {errs}")
EOF
echo "results: $RESULTS$( [ -n "${OUT:-}" ] || echo ' (removed on exit; set OUT=dir to keep)')"
