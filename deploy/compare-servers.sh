#!/usr/bin/env bash
# Scores Switchboard against Prosody and ejabberd (Debian's packages) with the same client
# checks (internal/compliance: RFC 6121 basics, XEP-0198, XEP-0280, XEP-0160, XEP-0191,
# XEP-0352). Installs prosody and ejabberd with apt if they are missing, runs each server
# in turn as a throw-away instance (its own config, data, logs and non-default loopback
# ports in a temporary directory, as its own system user), registers alice and bob, runs
# `go test ./internal/compliance/` against it, stops it, and prints the scores side by
# side with every check's line. Everything it started is stopped and removed at exit.
# A comparison tool, not part of CI.
#
#   deploy/compare-servers.sh                        # all three
#   SERVERS="prosody switchboard" deploy/compare-servers.sh
#   KEEP=1 deploy/compare-servers.sh                 # leave the temporary directory (logs)
#   REPEAT=3 deploy/compare-servers.sh               # run the suite 3 times per server (the table: the last)
#
# A server that cannot be installed or started prints "<server>: SKIPPED (<reason>)" and
# is left out of the table.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$SECONDS
# shellcheck source=deploy/lib.sh
source deploy/lib.sh
servers=${SERVERS:-prosody ejabberd switchboard}
domain=localhost

tmp=$(mktemp -d /tmp/compare-servers.XXXXXX)
chmod 755 "$tmp" # the prosody and ejabberd users read their files under it
pids=()          # processes this script started (each stopped with its descendants)
ran=()           # servers that were scored
skipped=()       # "server: reason"

log() { echo "--- $*"; }
skip() { # server reason...
  local s=$1
  shift
  echo "$s: SKIPPED ($*)"
  skipped+=("$s: $*")
}


cleanup() {
  rc=$?
  set +e
  [ -n "${ejabberd_stop:-}" ] && eval "$ejabberd_stop" >/dev/null 2>&1
  for p in "${pids[@]}"; do stop_tree "$p"; done
  if [ "${KEEP:-}" = 1 ]; then echo "--- KEEP=1: $tmp left behind"; else rm -rf "$tmp"; fi
  echo "--- compare-servers: $((SECONDS - start)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "compare-servers: $what: not within ${limit}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# Free loopback ports from 25222 up (none of the servers' defaults).
next_port=25222
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick() { # VAR
  while ! port_free "$next_port"; do next_port=$((next_port + 1)); done
  printf -v "$1" '%s' "$next_port"
  next_port=$((next_port + 1))
}

# install PACKAGE: installed already, or apt-get installs it; 1 if impossible (install_reason).
install() {
  installed_pkgs "$1" && return 0
  apt_install "$1" || return 1
  installed_pkgs "$1" || { install_reason="$1 not installed after apt-get"; return 1; }
}

# One self-signed certificate for localhost, for Prosody and ejabberd.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$domain" \
  -addext "subjectAltName=DNS:$domain" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1
chmod 644 "$tmp/key.pem" "$tmp/cert.pem" # throw-away key, read by the servers' users
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/combined.pem"
chmod 644 "$tmp/combined.pem"

alice_pw=alice-$RANDOM$RANDOM bob_pw=bob-$RANDOM$RANDOM

# run_checks NAME PORT: the suite against 127.0.0.1:PORT; its output in $tmp/NAME.out.
run_checks() {
  local name=$1 port=$2 t0=$SECONDS i
  for i in $(seq 2 "${REPEAT:-1}"); do # earlier runs: their scores only (reruns against the same accounts)
    log "$name: run $((i - 1)) of ${REPEAT}"
    COMPLIANCE_C2S=127.0.0.1:$port COMPLIANCE_DOMAIN=$domain COMPLIANCE_NAME=$name \
      COMPLIANCE_USERS=alice:$alice_pw,bob:$bob_pw \
      go test -count=1 -v -timeout 10m ./internal/compliance/ >"$tmp/$name.out" 2>&1 || true
    grep -E "^SCORE $name |^CHECK $name .* FAIL" "$tmp/$name.out" || tail -n 20 "$tmp/$name.out"
  done
  log "$name: checks against 127.0.0.1:$port"
  COMPLIANCE_C2S=127.0.0.1:$port COMPLIANCE_DOMAIN=$domain COMPLIANCE_NAME=$name \
    COMPLIANCE_USERS=alice:$alice_pw,bob:$bob_pw \
    go test -count=1 -v -timeout 10m ./internal/compliance/ >"$tmp/$name.out" 2>&1 || true
  if ! grep -q "^SCORE $name " "$tmp/$name.out"; then
    echo "$name: the suite printed no score:"
    tail -n 40 "$tmp/$name.out"
    skipped+=("$name: the suite printed no score")
    return
  fi
  grep -E "^(CHECK|SCORE) $name " "$tmp/$name.out"
  echo "($name: $((SECONDS - t0)) s)"
  ran+=("$name")
}

# ---------------------------------------------------------------- Prosody
prosody_run() {
  install prosody || { skip prosody "$install_reason"; return; }
  local d=$tmp/prosody c2s mods m
  pick c2s
  mkdir -p "$d/data" "$d/certs"
  cp "$tmp/cert.pem" "$d/certs/$domain.crt"
  cp "$tmp/key.pem" "$d/certs/$domain.key"
  # Debian's prosody 0.12: smacks, csi_simple, blocklist and carbons are core modules.
  mods=()
  for m in roster saslauth tls disco carbons smacks offline blocklist csi_simple ping; do
    if [ -f "/usr/lib/prosody/modules/mod_$m.lua" ]; then mods+=("\"$m\";"); else log "prosody: no mod_$m"; fi
  done
  cat >"$d/prosody.cfg.lua" <<EOF
-- throw-away Prosody for deploy/compare-servers.sh
pidfile = "$d/prosody.pid"
data_path = "$d/data"
log = { { levels = { min = "info" }, to = "file", filename = "$d/prosody.log" } }
modules_enabled = { ${mods[*]} }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
interfaces = { "127.0.0.1" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { $c2s }
c2s_direct_tls_ports = { }
s2s_ports = { }
certificates = "$d/certs"
ssl = { certificate = "$d/certs/$domain.crt"; key = "$d/certs/$domain.key" }
VirtualHost "$domain"
EOF
  chown -R prosody: "$d"
  as_prosody() { if [ "$(id -u)" = 0 ]; then runuser -u prosody -- "$@"; else "$@"; fi; }
  as_prosody prosodyctl --config "$d/prosody.cfg.lua" register alice "$domain" "$alice_pw" >"$d/register.log" 2>&1 &&
    as_prosody prosodyctl --config "$d/prosody.cfg.lua" register bob "$domain" "$bob_pw" >>"$d/register.log" 2>&1 ||
    { cat "$d/register.log"; skip prosody "prosodyctl register failed"; return; }
  log "prosody $(dpkg-query -W -f='${Version}' prosody): c2s 127.0.0.1:$c2s, modules ${mods[*]}"
  as_prosody prosody -F --config "$d/prosody.cfg.lua" >"$d/stdout.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  if ! wait_for 30 "prosody listening" port_open "$c2s"; then
    tail -n 30 "$d/stdout.log" "$d/prosody.log" 2>/dev/null
    skip prosody "did not start"
    return
  fi
  run_checks prosody "$c2s"
  stop_tree "$pid"
}

# ---------------------------------------------------------------- ejabberd
ejabberd_run() {
  install ejabberd || { skip ejabberd "$install_reason"; return; }
  local d=$tmp/ejabberd c2s dist node ctl
  pick c2s
  pick dist
  node=compare$RANDOM@localhost
  mkdir -p "$d/spool" "$d/logs"
  # Erlang distribution (for ejabberdctl) on a fixed loopback port, no epmd.
  cat >"$d/ejabberdctl.cfg" <<EOF
ERL_DIST_PORT=$dist
INET_DIST_INTERFACE=127.0.0.1
ERL_OPTIONS="-setcookie compare$RANDOM$RANDOM"
EJABBERD_BYPASS_WARNINGS=true
EOF
  cat >"$d/ejabberd.yml" <<EOF
# throw-away ejabberd for deploy/compare-servers.sh
loglevel: info
log_rotate_count: 0
hosts: [$domain]
certfiles: ["$tmp/combined.pem"]
listen:
  - port: $c2s
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    access: c2s
    starttls_required: true
auth_method: internal
auth_password_format: scram
acl:
  local: {user_regexp: ""}
access_rules:
  local: {allow: local}
  c2s: {allow: all}
api_permissions:
  "console commands":
    from: [ejabberd_ctl]
    who: all
    what: "*"
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 100
modules:
  mod_roster: {versioning: true}
  mod_disco: {}
  mod_ping: {}
  mod_caps: {}
  mod_carboncopy: {}
  mod_stream_mgmt: {resend_on_timeout: if_offline}
  mod_offline: {access_max_user_messages: max_user_offline_messages}
  mod_privacy: {}
  mod_blocking: {}
  mod_client_state: {}
  mod_last: {}
EOF
  chown -R ejabberd: "$d"
  ctl="ejabberdctl --config-dir $d --config $d/ejabberd.yml --ctl-config $d/ejabberdctl.cfg --spool $d/spool --logs $d/logs --node $node"
  log "ejabberd $(dpkg-query -W -f='${Version}' ejabberd): c2s 127.0.0.1:$c2s, node $node (distribution 127.0.0.1:$dist)"
  $ctl foreground >"$d/stdout.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  ejabberd_stop="timeout 30 $ctl stop"
  if ! wait_for 60 "ejabberd listening" port_open "$c2s" || ! timeout 60 $ctl started >/dev/null 2>&1; then
    tail -n 30 "$d/stdout.log" "$d/logs/ejabberd.log" 2>/dev/null
    skip ejabberd "did not start"
    return
  fi
  $ctl register alice "$domain" "$alice_pw" >"$d/register.log" 2>&1 &&
    $ctl register bob "$domain" "$bob_pw" >>"$d/register.log" 2>&1 ||
    { cat "$d/register.log"; skip ejabberd "ejabberdctl register failed"; return; }
  run_checks ejabberd "$c2s"
  timeout 30 $ctl stop >/dev/null 2>&1 || true
  ejabberd_stop=
  stop_tree "$pid"
}

# ---------------------------------------------------------------- Switchboard
switchboard_run() {
  local d=$tmp/switchboard c2s c2s_tls admin etcd_client etcd_peer remote
  pick c2s; pick c2s_tls; pick admin; pick etcd_client; pick etcd_peer; pick remote
  mkdir -p "$d/data"
  go build -o "$d/switchboard" ./cmd/switchboard || { skip switchboard "go build failed"; return; }
  cat >"$d/switchboard.yaml" <<EOF
# throw-away single node for deploy/compare-servers.sh
node: {id: compare, data_dir: $d/data, drain_timeout: 0s}
listen: {c2s: 127.0.0.1:$c2s, c2s_tls: 127.0.0.1:$c2s_tls, component: "", admin: 127.0.0.1:$admin}
etcd: {endpoints: [], embedded: {client: 127.0.0.1:$etcd_client, peer: 127.0.0.1:$etcd_peer}}
cluster: {bind: "", remote: 127.0.0.1:$remote}
hosts:
  - domain: $domain
log: {level: info}
EOF
  log "switchboard ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet 2>/dev/null || echo '+changes')): c2s 127.0.0.1:$c2s"
  (
    for v in $(compgen -e | grep '^SWITCHBOARD_' || true); do unset "$v"; done
    exec "$d/switchboard" serve --config "$d/switchboard.yaml"
  ) >"$d/switchboard.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  if ! wait_for 60 "switchboard ready" "$d/switchboard" health --ready --admin "127.0.0.1:$admin" >/dev/null 2>&1; then
    tail -n 30 "$d/switchboard.log"
    skip switchboard "did not start"
    return
  fi
  echo "$alice_pw" | "$d/switchboard" user add "alice@$domain" --password-stdin --config "$d/switchboard.yaml" >"$d/register.log" 2>&1 &&
    echo "$bob_pw" | "$d/switchboard" user add "bob@$domain" --password-stdin --config "$d/switchboard.yaml" >>"$d/register.log" 2>&1 ||
    { cat "$d/register.log"; skip switchboard "user add failed"; return; }
  run_checks switchboard "$c2s"
  stop_tree "$pid"
}

for s in $servers; do
  case $s in
    prosody) prosody_run ;;
    ejabberd) ejabberd_run ;;
    switchboard) switchboard_run ;;
    *) skip "$s" "unknown server (prosody, ejabberd, switchboard)" ;;
  esac
done

# ---------------------------------------------------------------- the table
echo
echo "=== compliance, side by side (internal/compliance)"
if [ "${#ran[@]}" -gt 0 ]; then
  for s in "${ran[@]}"; do cat "$tmp/$s.out"; done | awk -v servers="${ran[*]}" '
    BEGIN { n = split(servers, sv, " ") }
    $1 == "CHECK" {
      if (!($3 in seen)) { seen[$3] = 1; ids[++m] = $3 }
      v[$2, $3] = $4
      reason = ""; for (i = 5; i <= NF; i++) reason = reason (i > 5 ? " " : "") $i
      if ($4 == "FAIL") fails[++f] = sprintf("  %-12s %-32s %s", $2, $3, reason)
    }
    $1 == "SCORE" { score[$2] = $3 }
    END {
      printf "%-34s", "check"; for (j = 1; j <= n; j++) printf " %-12s", sv[j]; printf "\n"
      for (i = 1; i <= m; i++) {
        printf "%-34s", ids[i]
        for (j = 1; j <= n; j++) printf " %-12s", ((sv[j], ids[i]) in v) ? v[sv[j], ids[i]] : "-"
        printf "\n"
      }
      printf "%-34s", "SCORE"; for (j = 1; j <= n; j++) printf " %-12s", score[sv[j]]; printf "\n"
      if (f) { print ""; print "failures:"; for (i = 1; i <= f; i++) print fails[i] }
    }'
fi
for s in "${skipped[@]}"; do echo "SKIPPED $s"; done
