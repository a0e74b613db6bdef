# Shared by bench/*.sh (sourced).

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
