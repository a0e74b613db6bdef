# Shared by bench/*.sh (sourced).

wait_port() { # host port what
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "${3:-nothing} did not open $1:$2" >&2
  exit 1
}
