#!/usr/bin/env bash
# Server-to-server message throughput, side by side: the same `switchboard bench s2s`
# against two federated Switchboard nodes and against two federated Prosody instances
# (Debian's 0.12), on loopback only, rounds alternating which pair goes first.
#
#   bash bench/s2s.sh                       # RUNS=3 rounds at RATE messages/s each way
#   RATE=1000 RUNS=5 bash bench/s2s.sh
#   MAX=1 bash bench/s2s.sh                 # also unpaced rounds (as fast as WINDOW allows)
#   PAIRS=switchboard MAX=1 RATE=0 bash bench/s2s.sh   # one pair, maximum only
#
# Each pair: server A serves its domain on its own loopback address, server B another
# domain on another; they find each other by static route (Switchboard's
# s2s.static_routes; Prosody through a lua-unbound hosts file, as in
# deploy/test-federation-prosody.sh) and authenticate with certificates of a private CA
# made here (openssl, ECDSA P-256): STARTTLS, then SASL EXTERNAL, no dialback, both ways.
# CONNS clients log in on A and CONNS on B (accounts bench0.. on each domain, password
# "bench", SCRAM-SHA-1 with 4096 iterations on both: Prosody 0.12 stores SHA-1 only);
# client i of A sends chat messages to client i of B (and, with REVERSE=1, the default, B's
# to A's at the same time), paced at RATE per direction in all, for DURATION.
#
# Reported per run: messages delivered per second (both directions), one-way latency
# p50/p99/max, errors (a message missing --timeout after the last arrival is a timeout:
# lost), arrivals out of order, and the CPU time both servers of the pair used per
# delivered message (utime+stime of /proc/PID/stat, read SKIP s into the run and MEASURE s
# later; messages in that window: the run's delivered/s times the window). Then the
# medians.
#
# Switchboard's nodes run with lib.sh's c2s limits lifted and, with S2S_LIMITS=off (the
# default), s2s.bytes_per_second and s2s.stanzas_per_second at 0 (no shaping of what a
# peer sends; Prosody's config loads no limits module either); S2S_LIMITS=default keeps
# them (4 MiB/s and 20000 stanzas/s per incoming stream).
#
# Knobs: RUNS (3), RATE (2000 per direction; 0: unpaced), MAX (0; 1: unpaced rounds too),
# CONNS (10), WINDOW (200 per pair and direction), DURATION (10s), SKIP (2), MEASURE (6),
# REVERSE (1), PAIRS ("switchboard prosody"), S2S_LIMITS (off), OUT (keep results and logs
# there; default: a temporary directory, removed).
#
# Addresses: Switchboard 127.0.0.61 (sba.test) and 127.0.0.62 (sbb.test): c2s 15222,
# admin 15280, s2s 5269, embedded etcd 16379/16380, cluster 17946/18946 on each; Prosody
# 127.0.0.63 (pra.test) and 127.0.0.64 (prb.test): c2s 25222, s2s 5269 (Prosody looks
# for its peer on 5269: no SRV records in the hosts file).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
RATE=${RATE:-2000}
MAX=${MAX:-0}
CONNS=${CONNS:-10}
WINDOW=${WINDOW:-200}
DURATION=${DURATION:-10s}
SKIP=${SKIP:-2}
MEASURE=${MEASURE:-6}
REVERSE=${REVERSE:-1}
PAIRS=${PAIRS:-"switchboard prosody"}
S2S_LIMITS=${S2S_LIMITS:-off}
PASSWORD=bench
started=$SECONDS
if [ "${DURATION%s}" -lt $((SKIP + MEASURE + 1)) ]; then
  echo "DURATION ($DURATION) must be whole seconds, longer than SKIP + MEASURE ($SKIP + $MEASURE)" >&2
  exit 2
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh # (the script runs from the repository root)
[ "$S2S_LIMITS" = off ] && export SWITCHBOARD_S2S_BYTES_PER_SECOND=0 SWITCHBOARD_S2S_STANZAS_PER_SECOND=0
need jq openssl python3

if [ -n "${OUT:-}" ]; then
  WORK=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
else
  WORK=$(mktemp -d /tmp/sb-s2s.XXXXXX)
fi
chmod 755 "$WORK"
PIDS=()
stop() { # pid: TERM, KILL after 10 s
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do stop "$p"; done
  [ -n "${OUT:-}" ] || rm -rf "$WORK"
  echo "--- bench/s2s.sh: $((SECONDS - started)) s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# --- which pairs can run --------------------------------------------------------------
declare -A SKIPPED
want() { [[ " $PAIRS " == *" $1 "* ]] && [ -z "${SKIPPED[$1]:-}" ]; }
if want prosody; then
  installed() {
    local p
    for p in prosody lua-unbound; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
    done
    command -v prosody >/dev/null && command -v prosodyctl >/dev/null
  }
  if ! installed; then
    echo "--- installing prosody and lua-unbound (apt)"
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
      SKIPPED[prosody]="not root or no apt-get, and prosody or lua-unbound is missing"
    else
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prosody lua-unbound; } \
        >"$WORK/apt.log" 2>&1 || true
      installed || SKIPPED[prosody]="apt-get could not install prosody lua-unbound: $(grep -E '^E:' "$WORK/apt.log" | tail -1)"
    fi
  fi
fi
for ip in 127.0.0.61 127.0.0.62 127.0.0.63 127.0.0.64; do
  if port_open $ip 5269; then
    echo "$ip:5269 is taken (a server listening on 5269 on all addresses?)" >&2
    exit 1
  fi
done

# --- a private CA and a certificate per domain (serverAuth + clientAuth: each server is
# the TLS client of the stream it opens and shows the same certificate)
pki=$WORK/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=Switchboard s2s bench CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>"$pki/openssl.log"
for d in sba.test sbb.test pra.test prb.test; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$d" \
    -keyout "$pki/$d.key" -out "$pki/$d.csr" 2>>"$pki/openssl.log"
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:$d" >"$pki/$d.ext"
  openssl x509 -req -in "$pki/$d.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
    -extfile "$pki/$d.ext" -out "$pki/$d.pem" 2>>"$pki/openssl.log"
done
chmod 644 "$pki"/*

echo "--- build ($(git describe --always --dirty 2>/dev/null || echo 'not a git tree'))"
go build -o "$WORK/switchboard" ./cmd/switchboard
SB=$WORK/switchboard

# --- pair 1: two Switchboard nodes, each standalone with its own embedded etcd --------
declare -A IP DOMAIN C2S PID
IP[sba]=127.0.0.61 IP[sbb]=127.0.0.62 IP[pra]=127.0.0.63 IP[prb]=127.0.0.64
for s in sba sbb pra prb; do DOMAIN[$s]=$s.test; done
C2S[sba]=127.0.0.61:15222 C2S[sbb]=127.0.0.62:15222 C2S[pra]=127.0.0.63:25222 C2S[prb]=127.0.0.64:25222
peer() { case $1 in sba) echo sbb ;; sbb) echo sba ;; pra) echo prb ;; prb) echo pra ;; esac; }

start_switchboard() { # sba|sbb
  local s=$1 ip=${IP[$1]} o
  o=$(peer "$1")
  mkdir -p "$WORK/$s"
  cat >"$WORK/$s/sb.yaml" <<EOF
# written by bench/s2s.sh
node: {id: $s, data_dir: $WORK/$s/data}
hosts: [{domain: ${DOMAIN[$s]}}]
listen: {c2s: "$ip:15222", c2s_tls: "", component: "", admin: "$ip:15280", s2s: "$ip:5269"}
tls: {cert: $pki/${DOMAIN[$s]}.pem, key: $pki/${DOMAIN[$s]}.key}
s2s: {ca_file: $pki/ca.pem, static_routes: {${DOMAIN[$o]}: "${IP[$o]}:5269"}}
etcd: {embedded: {client: "$ip:16379", peer: "$ip:16380"}}
cluster: {bind: "$ip:17946", remote: "$ip:18946"}
log: {level: info} # info: s2s streams opened and closed (counted at the end)
EOF
  "$SB" serve --config "$WORK/$s/sb.yaml" >>"$WORK/$s/sb.log" 2>&1 &
  PID[$s]=$!
  PIDS+=("${PID[$s]}")
}
if want switchboard; then
  echo "--- switchboard: sba.test on 127.0.0.61, sbb.test on 127.0.0.62"
  start_switchboard sba
  start_switchboard sbb
  for s in sba sbb; do
    wait_port "${IP[$s]}" 15222 "switchboard $s"
    wait_port "${IP[$s]}" 5269 "switchboard $s"
    for i in $(seq 0 $((CONNS - 1))); do
      echo "$PASSWORD" | "$SB" user add "bench$i@${DOMAIN[$s]}" --password-stdin --config "$WORK/$s/sb.yaml" >/dev/null
    done
  done
fi

# --- pair 2: two Prosody instances ------------------------------------------------------
start_prosody() { # pra|prb
  local s=$1 d=$WORK/$1 o
  o=$(peer "$1")
  mkdir -p "$d/data" "$d/certs"
  cp "$pki/${DOMAIN[$s]}.pem" "$d/certs/${DOMAIN[$s]}.crt"
  cp "$pki/${DOMAIN[$s]}.key" "$d/certs/${DOMAIN[$s]}.key"
  echo "${IP[$o]} ${DOMAIN[$o]} _xmpp-server._tcp.${DOMAIN[$o]} _xmpps-server._tcp.${DOMAIN[$o]}" >"$d/hosts"
  cat >"$d/prosody.cfg.lua" <<EOF
-- written by bench/s2s.sh: loopback only, nothing but what the benchmark needs
pidfile = "$d/prosody.pid"
data_path = "$d/data"
run_as_root = true
log = { warn = "$d/prosody.log" }
network_backend = "epoll"
-- Nagle off: with it, Prosody's small writes wait for delayed ACKs (see bench/prosody.sh).
network_settings = { nagle = false }
-- mod_s2s and mod_s2s_auth_certs are loaded by default; without dialback, servers
-- authenticate with certificates only (SASL EXTERNAL), as Switchboard's do.
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping" }
modules_disabled = { "dialback"; "s2s_bidi" }
interfaces = { "${IP[$s]}" }
c2s_ports = { 25222 }
c2s_direct_tls_ports = { }
s2s_ports = { 5269 }
s2s_direct_tls_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
authentication = "internal_hashed"
default_iteration_count = 4096 -- as Switchboard's accounts.scram_iterations
allow_registration = false
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = true
-- lua-unbound reads this hosts file (the peer's address) instead of asking DNS
unbound = { hoststxt = "$d/hosts" }
certificates = "$d/certs"
ssl = { cafile = "$pki/ca.pem" }
VirtualHost "${DOMAIN[$s]}"
  ssl = { certificate = "$d/certs/${DOMAIN[$s]}.crt"; key = "$d/certs/${DOMAIN[$s]}.key"; cafile = "$pki/ca.pem" }
EOF
  for i in $(seq 0 $((CONNS - 1))); do
    prosodyctl --config "$d/prosody.cfg.lua" register "bench$i" "${DOMAIN[$s]}" "$PASSWORD" >/dev/null 2>&1
  done
  prosody --config "$d/prosody.cfg.lua" -F >>"$d/stdout.log" 2>&1 &
  PID[$s]=$!
  PIDS+=("${PID[$s]}")
}
if want prosody; then
  echo "--- prosody $(dpkg-query -W -f='${Version}' prosody): pra.test on 127.0.0.63, prb.test on 127.0.0.64"
  start_prosody pra
  start_prosody prb
  for s in pra prb; do
    wait_port "${IP[$s]}" 25222 "prosody $s"
    wait_port "${IP[$s]}" 5269 "prosody $s"
  done
fi
for p in $PAIRS; do
  if [ -n "${SKIPPED[$p]:-}" ]; then echo "--- $p pair: SKIPPED (${SKIPPED[$p]})"; fi
done

# --- runs ---------------------------------------------------------------------------------
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
servers() { case $1 in switchboard) echo "sba sbb" ;; prosody) echo "pra prb" ;; esac; }
COMMON=(--insecure --users "$CONNS" --password "$PASSWORD" --mech SCRAM-SHA-1 --conns "$CONNS"
  --window "$WINDOW" --duration "$DURATION" --timeout 10s --max-time 5m --json --allow-errors)
[ "$REVERSE" = 1 ] && COMMON+=(--reverse)
dirs=$((REVERSE == 1 ? 2 : 1))
ticks() { cpu "$1" 2>/dev/null || echo 0; } # a server that died reads 0 (its run fails anyway)
run() { # pair mode round rate
  local pair=$1 mode=$2 r=$3 rate=$4 a b t ca0 cb0 ca1 cb1 t0 t1
  read -r a b <<<"$(servers "$pair")"
  "$SB" bench s2s --server "${C2S[$a]}" --domain "${DOMAIN[$a]}" --target "${C2S[$b]}" \
    --target-domain "${DOMAIN[$b]}" --rate "$rate" "${COMMON[@]}" >"$WORK/out.json" 2>"$WORK/bench.err" &
  t=$!
  sleep "$SKIP"
  ca0=$(ticks "${PID[$a]}") cb0=$(ticks "${PID[$b]}") t0=$(date +%s%N)
  sleep "$MEASURE"
  ca1=$(ticks "${PID[$a]}") cb1=$(ticks "${PID[$b]}") t1=$(date +%s%N)
  if ! wait $t || ! jq -e .ops "$WORK/out.json" >/dev/null 2>&1; then
    echo "  $pair $mode round $r: FAILED: $(tail -c 600 "$WORK/bench.err")" >&2
    echo '{}' >"$WORK/out.json"
  fi
  # CPU ticks are 1/100 s; messages in the window: the run's delivered/s times its length
  jq -c --arg pair "$pair" --arg mode "$mode" --argjson r "$r" --argjson rate "$rate" --argjson dirs $dirs \
    --argjson ta $((ca1 - ca0)) --argjson tb $((cb1 - cb0)) --argjson dt "$(((t1 - t0) / 1000000))" '
    . + {pair: $pair, mode: $mode, round: $r, offered: ($rate * $dirs), ticks_a: $ta, ticks_b: $tb, window_ms: $dt}
    | .window_msgs = (.throughput // 0) * $dt / 1000
    | .cpu_a_pct = $ta * 1000 / $dt | .cpu_b_pct = $tb * 1000 / $dt
    | .cpu_us_per_msg = (if .window_msgs > 0 then ($ta + $tb) * 1e4 / .window_msgs else null end)' \
    "$WORK/out.json" >>"$RESULTS"
  tail -1 "$RESULTS" | jq -r '"  \(.mode) round \(.round) \(.pair|.+"            "|.[0:12]) delivered \(.throughput // 0 | floor)/s" +
    (if .offered > 0 then " (offered \(.offered))" else "" end) +
    "  p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) max \(.latency_ms.max) ms  errors \(.errors)" +
    (if (.errors // 0) > 0 then " \(.error_kinds)" else "" end) + "  out of order \(.out_of_order // 0)" +
    "  CPU A \(.cpu_a_pct|floor)% B \(.cpu_b_pct|floor)%  \(.cpu_us_per_msg // 0 | . * 10 | floor / 10) us/msg  tool \(.tool_cpu_percent // 0)%"'
}

echo "--- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "--- $CONNS pairs of clients, window $WINDOW, $DURATION per run, $([ "$REVERSE" = 1 ] && echo both directions || echo one direction), s2s limits $S2S_LIMITS; CPU over ${MEASURE}s from ${SKIP}s in"
modes=()
[ "$RATE" != 0 ] && modes+=(paced)
[ "$MAX" = 1 ] || [ "$RATE" = 0 ] && modes+=(max)
for mode in "${modes[@]}"; do
  rate=$RATE
  [ "$mode" = max ] && rate=0
  echo "--- $mode: $([ "$rate" = 0 ] && echo "unpaced, window $WINDOW" || echo "$rate messages/s each way")"
  for r in $(seq "$RUNS"); do
    order=()
    for p in $PAIRS; do want "$p" && order+=("$p"); done
    if ((r % 2 == 0)) && [ ${#order[@]} = 2 ]; then order=("${order[1]}" "${order[0]}"); fi
    for p in "${order[@]}"; do run "$p" "$mode" "$r" "$rate"; done
  done
done

echo "--- medians"
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None
def f(v, d=1):
    return "-" if v is None else f"{v:.{d}f}"
print(f"{'mode':<6} {'pair':<12} {'rounds':>6} {'delivered/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU us/msg':>10} {'errors':>6} {'ooo':>4}")
for mode in ("paced", "max"):
    for pair in ("switchboard", "prosody"):
        rs = [r for r in rows if r["mode"] == mode and r["pair"] == pair]
        if not rs:
            continue
        print(f"{mode:<6} {pair:<12} {len(rs):>6} {f(med([r.get('throughput') for r in rs]), 0):>11} "
              f"{f(med([r.get('latency_ms', {}).get('p50') for r in rs]), 2):>8} {f(med([r.get('latency_ms', {}).get('p99') for r in rs]), 2):>8} "
              f"{f(med([r.get('latency_ms', {}).get('max') for r in rs]), 1):>8} {f(med([r.get('cpu_us_per_msg') for r in rs])):>10} "
              f"{sum(r.get('errors', 0) for r in rs):>6} {sum(r.get('out_of_order', 0) for r in rs):>4}")
EOF
for s in sba sbb; do
  f=$WORK/$s/sb.log
  [ -f "$f" ] || continue
  echo "--- $s log: outgoing s2s streams up $(grep -c 's2s: stream up' "$f"), closed $(grep -c 's2s: stream closed' "$f"); incoming $(grep -c 's2s: incoming stream' "$f"); WARN/ERROR lines $(grep -cE 'level=(WARN|ERROR)' "$f")"
  grep -E 'level=(WARN|ERROR)' "$f" | grep -v 'msg="member gone"' | tail -n 3 | cut -c1-300 || true
done
for s in pra prb; do
  f=$WORK/$s/prosody.log
  if [ -s "$f" ]; then
    echo "--- $s: $(wc -l <"$f") log lines at warn and above, the last:"
    tail -n 3 "$f" | cut -c1-300
  fi
done
echo "results: $RESULTS$([ -n "${OUT:-}" ] || echo ' (removed on exit; set OUT=dir to keep)')"
