# shellcheck shell=bash
# Shared by bench/*.sh (sourced).

# Load tests put hundreds of sessions on one account, log many in at once from one
# address and send tens of thousands of stanzas a second per connection: lift the
# per-account, per-address and per-client rate limits for the nodes they start (variables,
# not config keys, so that binaries from before those keys run the scripts too).
export SWITCHBOARD_LIMITS_MAX_SESSIONS_PER_USER=1000000
export SWITCHBOARD_LIMITS_MAX_UNAUTHENTICATED_PER_IP=1000000
export SWITCHBOARD_LIMITS_CLIENT_BYTES_PER_SECOND=0
export SWITCHBOARD_LIMITS_CLIENT_STANZAS_PER_SECOND=0

wait_port() { # host port what
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "${3:-nothing} did not open $1:$2" >&2
  exit 1
}

need() { # tool...: installs what is missing from Debian (jq, openssl, curl)
  for tool in "$@"; do
    command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  done
}

bench_cert() { # DIR: a self-signed P-256 pair for localhost and bench.localhost, DIR/cert.pem and DIR/key.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout "$1/key.pem" -out "$1/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,DNS:bench.localhost 2>/dev/null
}

workdir() { # NAME: a fresh $WORK, removed at exit with every process whose pid is in PIDS
  WORK=$(mktemp -d "/tmp/sb-$1.XXXXXX")
  PIDS=()
  trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
}

bench_config() { # N IP ETCD CLUSTER: $WORK/nN.yaml, a node delegating urn:example:bench to bench.localhost
  cat >"$WORK/n$1.yaml" <<EOF
node: {id: n$1, data_dir: $WORK/data$1}
listen: {c2s: $2:15222, c2s_tls: $2:15223, component: $2:15347, admin: $2:15280}
tls: {cert: $WORK/cert.pem, key: $WORK/key.pem}
$3
cluster: $4
hosts:
  - domain: localhost
    delegations:
      "urn:example:bench": {jid: bench.localhost}
components:
  - {jid: bench.localhost, secret: bench-secret}
log: {level: warn}
EOF
}

bench_configs() { # n0.yaml: a standalone node on 127.0.0.1; n1.yaml, n2.yaml: a two-node
  # cluster, 127.0.0.21 with the embedded etcd and 127.0.0.22 joined to it
  bench_config 0 127.0.0.1 "etcd: {embedded: {client: 127.0.0.1:16379, peer: 127.0.0.1:16380}}" '{bind: ""}'
  bench_config 1 127.0.0.21 "etcd: {embedded: {client: 127.0.0.21:16379, peer: 127.0.0.21:16380}}" \
    '{bind: "127.0.0.21:17946", remote: "127.0.0.21:18946"}'
  bench_config 2 127.0.0.22 'etcd: {endpoints: ["http://127.0.0.21:16379"]}' \
    '{bind: "127.0.0.22:17946", remote: "127.0.0.22:18946", join: ["127.0.0.21:17946"]}'
}

bench_users() { # BIN CONFIG: accounts bench0..bench9@localhost, password "bench"
  local i
  for i in $(seq 0 9); do
    echo bench | "$1" user add "bench$i@localhost" --password-stdin --config "$2" >/dev/null
  done
}

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; } # PID: CPU ticks used so far

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
