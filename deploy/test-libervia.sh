#!/usr/bin/env bash
# Integration test with libervia-pubsub (Debian package) as the PEP service behind
# Switchboard, with the files of deploy/libervia/: installs libervia-pubsub and
# PostgreSQL with apt if needed, starts a throw-away PostgreSQL, a Switchboard node and
# libervia-pubsub on free loopback ports in a temporary directory, and runs the Go tests
# of internal/liberviatest against them (PEP publish, notification to a contact, MAM on
# the node, owner configure and delete). Everything it started is stopped and removed
# at exit, whatever happens.
#
#   deploy/test-libervia.sh          # KEEP=1: leave the temporary directory (logs) behind
#
# Where apt cannot install the packages it prints
# "libervia integration test: SKIPPED (<reason>)" and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$SECONDS
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

skip() {
  echo "libervia integration test: SKIPPED ($*)"
  exit 0
}

# --- packages
packages=(libervia-pubsub postgresql)
installed() {
  installed_pkgs "${packages[@]}" && command -v twistd3 >/dev/null && [ -d /usr/share/libervia/sat_pubsub ]
}
if ! installed; then
  apt_install "${packages[@]}" || skip "$install_reason, and libervia-pubsub or postgresql is not installed"
  installed || skip "apt-get installed ${packages[*]}, but twistd3 or /usr/share/libervia/sat_pubsub is missing"
fi
pgbin=$( (ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true) | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || skip "no initdb under /usr/lib/postgresql/*/bin"
schema=/usr/share/libervia/sat_pubsub/db/pubsub.sql

# --- temporary directory and cleanup
tmp=$(mktemp -d /tmp/test-libervia.XXXXXX)
chmod 755 "$tmp" # the postgres user goes through it
sb_pid= lib_pid= pg_started=

# as_pg runs a command as the owner of the PostgreSQL cluster: postgres when root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() { # pid: TERM, then KILL after 15 s
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  rc=$?
  set +e
  if [ "$rc" != 0 ]; then
    echo "--- libervia integration test failed (exit $rc)"
    for f in "$tmp/switchboard.log" "$tmp/libervia/twistd.log" "$tmp/pg/postgres.log"; do
      [ -f "$f" ] && { echo "--- tail $f"; tail -n 60 "$f" | cut -c1-2000; }
    done
  fi
  [ -n "$lib_pid" ] && stop "$lib_pid"
  [ -n "$sb_pid" ] && stop "$sb_pid"
  [ -n "$pg_started" ] && as_pg "$pgbin/pg_ctl" -D "$tmp/pg/data" -m immediate -w stop >/dev/null 2>&1
  if [ "${KEEP:-}" = 1 ]; then echo "--- KEEP=1: $tmp left behind"; else rm -rf "$tmp"; fi
  echo "--- test-libervia: $((SECONDS - start)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "test-libervia: $what: not within ${limit}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# Free loopback ports from 15222 up (none of Switchboard's or PostgreSQL's defaults).
next_port=15222
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick() { # VAR
  while ! port_free "$next_port"; do next_port=$((next_port + 1)); done
  printf -v "$1" '%s' "$next_port"
  next_port=$((next_port + 1))
}
pick c2s; pick c2s_tls; pick component; pick admin; pick etcd_client; pick etcd_peer; pick pg_port

# --- PostgreSQL: its own cluster in $tmp, TCP on loopback, passwords required there
echo "--- PostgreSQL ($pgbin) on 127.0.0.1:$pg_port"
conf=$repo/deploy/libervia/libervia.conf
db_user=$(sed -n 's/^db_user *= *//p' "$conf")
db_pass=$(sed -n 's/^db_pass *= *//p' "$conf")
db_name=$(sed -n 's/^db_name *= *//p' "$conf")
mkdir -p "$tmp/pg"
[ "$(id -u)" = 0 ] && chown postgres "$tmp/pg"
as_pg "$pgbin/initdb" -D "$tmp/pg/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >"$tmp/initdb.log" 2>&1 ||
  { cat "$tmp/initdb.log"; exit 1; }
as_pg "$pgbin/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/postgres.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $pg_port -k $tmp/pg -c fsync=off" start >/dev/null
pg_started=1
# As the README says: a role and a database for libervia-pubsub, then its schema.
as_pg "$pgbin/psql" -h "$tmp/pg" -p "$pg_port" -U postgres -q -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE \"$db_user\" LOGIN PASSWORD '$db_pass'" -c "CREATE DATABASE \"$db_name\" OWNER \"$db_user\""
PGPASSWORD=$db_pass "$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U "$db_user" -d "$db_name" -q -v ON_ERROR_STOP=1 \
  -f "$schema" >"$tmp/schema.log" 2>&1 || { cat "$tmp/schema.log"; exit 1; }

# --- Switchboard: deploy/libervia/switchboard.yaml, with ports and data_dir from the
# environment (SWITCHBOARD_* variables win over the file)
echo "--- switchboard: c2s 127.0.0.1:$c2s, components 127.0.0.1:$component"
go build -o "$tmp/switchboard" ./cmd/switchboard
for v in $(compgen -e | grep '^SWITCHBOARD_' || true); do unset "$v"; done
export SWITCHBOARD_NODE_ID=libervia-test SWITCHBOARD_NODE_DATA_DIR=$tmp/data SWITCHBOARD_NODE_DRAIN_TIMEOUT=0s \
  SWITCHBOARD_LISTEN_C2S=127.0.0.1:$c2s SWITCHBOARD_LISTEN_C2S_TLS=127.0.0.1:$c2s_tls \
  SWITCHBOARD_LISTEN_COMPONENT=127.0.0.1:$component SWITCHBOARD_LISTEN_ADMIN=127.0.0.1:$admin \
  SWITCHBOARD_ETCD_ENDPOINTS= SWITCHBOARD_ETCD_EMBEDDED_CLIENT=127.0.0.1:$etcd_client \
  SWITCHBOARD_ETCD_EMBEDDED_PEER=127.0.0.1:$etcd_peer SWITCHBOARD_CLUSTER_BIND= SWITCHBOARD_LOG_LEVEL=debug
sbconf=$repo/deploy/libervia/switchboard.yaml
"$tmp/switchboard" serve --config "$sbconf" >"$tmp/switchboard.log" 2>&1 &
sb_pid=$!
wait_for 60 "switchboard ready" "$tmp/switchboard" health --ready --admin "127.0.0.1:$admin" >/dev/null 2>&1
alice_pw=alice-$RANDOM$RANDOM bob_pw=bob-$RANDOM$RANDOM
echo "$alice_pw" | "$tmp/switchboard" user add alice@localhost --password-stdin --config "$sbconf"
echo "$bob_pw" | "$tmp/switchboard" user add bob@localhost --password-stdin --config "$sbconf"

# --- libervia-pubsub: deploy/libervia/libervia.conf in its working directory, the ports
# from the environment (LIBERVIA_PUBSUB_* win over the file; PG* would win over those)
echo "--- libervia-pubsub"
mkdir -p "$tmp/libervia"
cp "$conf" "$tmp/libervia/libervia.conf"
(
  cd "$tmp/libervia"
  unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE
  export HOME=$tmp/libervia PYTHONPATH=/usr/share/libervia \
    LIBERVIA_PUBSUB_RPORT=$component LIBERVIA_PUBSUB_DB_PORT=$pg_port
  exec twistd3 --nodaemon --pidfile= --logfile="$tmp/libervia/twistd.log" libervia-pubsub --verbose
) >"$tmp/libervia/stdout.log" 2>&1 &
lib_pid=$!
connected() {
  kill -0 "$lib_pid" 2>/dev/null || { echo "test-libervia: libervia-pubsub exited:" >&2; cat "$tmp/libervia/stdout.log" >&2; exit 1; }
  grep -q 'msg="component connected".*component=pubsub.localhost' "$tmp/switchboard.log" &&
    grep -q 'delegations updated' "$tmp/libervia/twistd.log" 2>/dev/null &&
    grep -q 'Privileges updated' "$tmp/libervia/twistd.log"
}
wait_for 60 "libervia-pubsub connected to switchboard" connected
echo "--- libervia-pubsub connected ($((SECONDS - start)) s)"

# --- the tests
SWITCHBOARD_LIBERVIA_C2S=127.0.0.1:$c2s SWITCHBOARD_LIBERVIA_PUBSUB=pubsub.localhost \
  SWITCHBOARD_LIBERVIA_USER1=alice:$alice_pw SWITCHBOARD_LIBERVIA_USER2=bob:$bob_pw \
  go test -count=1 -v -timeout 5m ./internal/liberviatest/
