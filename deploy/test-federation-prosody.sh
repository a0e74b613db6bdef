#!/usr/bin/env bash
# Federation (RFC 6120 server-to-server) between Switchboard and Prosody (Debian's
# package, 0.12) as a reference peer, with certificates of a private CA and SASL EXTERNAL
# (XEP-0178) both ways, no dialback. Installs prosody and openssl with apt if they are
# missing; makes a CA and a certificate for each domain; runs a throw-away Prosody
# serving pr.test (127.0.0.42) and a throw-away Switchboard node serving sb.test
# (127.0.0.41, s2s on 5269), each with its own config, data, logs and ports in a
# temporary directory; registers alice@sb.test and bob@pr.test; runs the Go tests of
# internal/federationtest against them. Everything it started is stopped and removed at
# exit, whatever happens.
#
#   deploy/test-federation-prosody.sh
#   KEEP=1 deploy/test-federation-prosody.sh                  # leave the temporary directory (logs)
#
# How each server finds the other, without touching /etc/hosts or DNS:
# - Switchboard: s2s.static_routes {pr.test: 127.0.0.42:<s2s port>}.
# - Prosody 0.12 has no static route option (mod_s2s resolves SRV _xmpp-server._tcp, then
#   A/AAAA on 5269, through lua-unbound). Its `unbound = { hoststxt = FILE }` option makes
#   lua-unbound read a hosts file of our own (a path; `true` would be /etc/hosts) with the
#   line "127.0.0.41 sb.test _xmpp-server._tcp.sb.test _xmpps-server._tcp.sb.test": the A
#   record of sb.test, and names for the two SRV queries, which unbound then answers itself
#   with no SRV records (NOERROR, no data) instead of asking the system's resolver (Prosody
#   gives up on a domain whose SRV query fails, and does not fall back to A). So Prosody
#   connects to 127.0.0.41:5269, where Switchboard listens for s2s.
#
# Where prosody or openssl cannot be installed, or 127.0.0.41:5269 is taken, it prints
# "federation test with Prosody: SKIPPED (<reason>)" and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$SECONDS
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

sb_domain=sb.test sb_ip=127.0.0.41
pr_domain=pr.test pr_ip=127.0.0.42

skip() {
  echo "federation test with Prosody: SKIPPED ($*)"
  exit 0
}

# --- packages
packages=(prosody lua-unbound openssl) # lua-unbound: the resolver the hosts file below is for
installed() {
  installed_pkgs "${packages[@]}" && command -v prosody >/dev/null && command -v prosodyctl >/dev/null && command -v openssl >/dev/null
}
if ! installed; then
  apt_install "${packages[@]}" || skip "$install_reason, and prosody or openssl is not installed"
  installed || skip "apt-get installed ${packages[*]}, but prosody, prosodyctl or openssl is missing"
fi
# The Debian package starts its own service; this script leaves it alone (its own config,
# addresses and pid file are elsewhere) but cannot share 5269 with a wildcard listener.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
port_open "$sb_ip" 5269 && skip "$sb_ip:5269 is taken (a server listening on 5269 on all addresses?)"
prosody_version=$(dpkg-query -W -f='${Version}' prosody)

# --- temporary directory and cleanup
tmp=$(mktemp -d /tmp/test-federation-prosody.XXXXXX)
chmod 755 "$tmp" # the prosody user reads its files under it
sb_pid= pr_pid=

# as_prosody runs a command as the prosody user when root (prosodyctl refuses root).
as_prosody() {
  if [ "$(id -u)" = 0 ]; then runuser -u prosody -- "$@"; else "$@"; fi
}


cleanup() {
  rc=$?
  set +e
  if [ "$rc" != 0 ]; then
    echo "--- federation test with Prosody failed (exit $rc)"
    for f in "$tmp/switchboard.log" "$tmp/prosody/prosody.log" "$tmp/prosody/stdout.log"; do
      [ -f "$f" ] && { echo "--- tail $f"; tail -n 60 "$f" | cut -c1-2000; }
    done
  fi
  [ -n "$pr_pid" ] && stop_tree "$pr_pid"
  [ -n "$sb_pid" ] && stop_tree "$sb_pid"
  if [ "${KEEP:-}" = 1 ]; then echo "--- KEEP=1: $tmp left behind"; else rm -rf "$tmp"; fi
  echo "--- test-federation-prosody: $((SECONDS - start)) s"
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
      echo "test-federation-prosody: $what: not within ${limit}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# Free ports from 16222 up on an address (none of the servers' defaults).
next_port=16222
pick() { # VAR IP
  while port_open "$2" "$next_port"; do next_port=$((next_port + 1)); done
  printf -v "$1" '%s' "$next_port"
  next_port=$((next_port + 1))
}
pick sb_c2s $sb_ip; pick sb_admin $sb_ip; pick etcd_client 127.0.0.1; pick etcd_peer 127.0.0.1
pick pr_c2s $pr_ip; pick pr_s2s $pr_ip

# --- a private CA and a certificate per domain: SAN DNS name, serverAuth + clientAuth
# (each server is the TLS client of the stream it opens and shows the same certificate).
echo "--- private CA, certificates for $sb_domain and $pr_domain"
pki=$tmp/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=Switchboard federation test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" >"$pki/openssl.log" 2>&1 || { cat "$pki/openssl.log"; exit 1; }
for d in $sb_domain $pr_domain; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$d" \
    -keyout "$pki/$d.key" -out "$pki/$d.csr" >>"$pki/openssl.log" 2>&1
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:$d" >"$pki/$d.ext"
  openssl x509 -req -in "$pki/$d.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
    -extfile "$pki/$d.ext" -out "$pki/$d.pem" >>"$pki/openssl.log" 2>&1 || { cat "$pki/openssl.log"; exit 1; }
done
chmod 644 "$pki"/*.pem "$pki"/*.key # throw-away keys, read by the prosody user

# --- Prosody: pr.test on 127.0.0.42
pd=$tmp/prosody
mkdir -p "$pd/data" "$pd/certs"
cp "$pki/$pr_domain.pem" "$pd/certs/$pr_domain.crt"
cp "$pki/$pr_domain.key" "$pd/certs/$pr_domain.key"
echo "$sb_ip $sb_domain _xmpp-server._tcp.$sb_domain _xmpps-server._tcp.$sb_domain" >"$pd/hosts"
cat >"$pd/prosody.cfg.lua" <<EOF
-- throw-away Prosody for deploy/test-federation-prosody.sh
pidfile = "$pd/prosody.pid"
data_path = "$pd/data"
log = { { levels = { min = "${PROSODY_LOG_LEVEL:-debug}" }, to = "file", filename = "$pd/prosody.log" } }
-- mod_s2s and mod_s2s_auth_certs are loaded by default; mod_dialback is left out, so
-- servers authenticate with certificates only (SASL EXTERNAL), as Switchboard does.
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "message"; "iq" }
modules_disabled = { "dialback"; "s2s_bidi" }
authentication = "internal_hashed"
storage = "internal"
interfaces = { "$pr_ip" }
c2s_ports = { $pr_c2s }
c2s_direct_tls_ports = { }
s2s_ports = { $pr_s2s }
s2s_direct_tls_ports = { }
c2s_require_encryption = true
s2s_require_encryption = true
-- a peer's certificate must be valid (chain to a trusted CA, name its domain)
s2s_secure_auth = true
-- lua-unbound reads this hosts file (sb.test -> $sb_ip) instead of /etc/hosts
unbound = { hoststxt = "$pd/hosts" }
certificates = "$pd/certs"
-- the private CA, besides the system's (capath /etc/ssl/certs)
ssl = { cafile = "$pki/ca.pem" }
VirtualHost "$pr_domain"
  ssl = { certificate = "$pd/certs/$pr_domain.crt"; key = "$pd/certs/$pr_domain.key"; cafile = "$pki/ca.pem" }
EOF
chown -R prosody: "$pd" 2>/dev/null || true
alice_pw=alice-$RANDOM$RANDOM bob_pw=bob-$RANDOM$RANDOM
as_prosody prosodyctl --config "$pd/prosody.cfg.lua" register bob "$pr_domain" "$bob_pw" >"$pd/register.log" 2>&1 ||
  { cat "$pd/register.log"; exit 1; }
echo "--- prosody $prosody_version: $pr_domain, c2s $pr_ip:$pr_c2s, s2s $pr_ip:$pr_s2s"
as_prosody prosody -F --config "$pd/prosody.cfg.lua" >"$pd/stdout.log" 2>&1 &
pr_pid=$!
prosody_up() {
  kill -0 "$pr_pid" 2>/dev/null || { echo "test-federation-prosody: prosody exited:" >&2; cat "$pd/stdout.log" >&2; exit 1; }
  port_open "$pr_ip" "$pr_c2s" && port_open "$pr_ip" "$pr_s2s"
}
wait_for 30 "prosody listening" prosody_up

# --- Switchboard: sb.test on 127.0.0.41, s2s on 5269 there
echo "--- switchboard: $sb_domain, c2s $sb_ip:$sb_c2s, s2s $sb_ip:5269"
go build -o "$tmp/switchboard" ./cmd/switchboard
mkdir -p "$tmp/data"
cat >"$tmp/switchboard.yaml" <<EOF
# throw-away node for deploy/test-federation-prosody.sh
node: {id: fed-test, data_dir: $tmp/data, drain_timeout: 0s}
listen: {c2s: "$sb_ip:$sb_c2s", c2s_tls: "", component: "", admin: "$sb_ip:$sb_admin", s2s: "$sb_ip:5269"}
tls: {cert: $pki/$sb_domain.pem, key: $pki/$sb_domain.key}
etcd: {endpoints: [], embedded: {client: "127.0.0.1:$etcd_client", peer: "127.0.0.1:$etcd_peer"}}
cluster: {bind: ""}
hosts:
  - domain: $sb_domain
s2s:
  ca_file: $pki/ca.pem
  require_encryption: true
  static_routes: {$pr_domain: "$pr_ip:$pr_s2s"}
log: {level: ${SWITCHBOARD_LOG_LEVEL:-debug}}
EOF
(
  for v in $(compgen -e | grep '^SWITCHBOARD_' || true); do unset "$v"; done
  exec "$tmp/switchboard" serve --config "$tmp/switchboard.yaml"
) >"$tmp/switchboard.log" 2>&1 &
sb_pid=$!
sb_ready() {
  kill -0 "$sb_pid" 2>/dev/null || { echo "test-federation-prosody: switchboard exited" >&2; exit 1; }
  "$tmp/switchboard" health --ready --admin "$sb_ip:$sb_admin" >/dev/null 2>&1
}
wait_for 60 "switchboard ready" sb_ready
(
  for v in $(compgen -e | grep '^SWITCHBOARD_' || true); do unset "$v"; done
  echo "$alice_pw" | "$tmp/switchboard" user add "alice@$sb_domain" --password-stdin --config "$tmp/switchboard.yaml"
)
echo "--- both up ($((SECONDS - start)) s)"

# --- the tests
t0=$SECONDS
status=0
SWITCHBOARD_FED_SB_C2S=$sb_ip:$sb_c2s SWITCHBOARD_FED_SB_DOMAIN=$sb_domain SWITCHBOARD_FED_SB_USER=alice:$alice_pw \
  SWITCHBOARD_FED_PEER_C2S=$pr_ip:$pr_c2s SWITCHBOARD_FED_PEER_DOMAIN=$pr_domain SWITCHBOARD_FED_PEER_USER=bob:$bob_pw \
  SWITCHBOARD_FED_PEER_NAME=prosody \
  go test -count=1 -v -timeout 5m ./internal/federationtest/ >"$tmp/go-test.out" 2>&1 || status=$?
cat "$tmp/go-test.out"
echo
echo "=== federation with Prosody $prosody_version ($((SECONDS - t0)) s of tests)"
grep -E -- '^ *--- (PASS|FAIL|SKIP): TestFederation/' "$tmp/go-test.out" | sed -E 's/^ *--- //' || true
exit "$status"
