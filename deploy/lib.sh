# shellcheck shell=bash
# Shared by the deploy/ test scripts (sourced): installing Debian packages and stopping a
# process with everything under it.

# installed_pkgs PACKAGE...: every package is installed (dpkg's view).
installed_pkgs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
}

# apt_install PACKAGE...: apt-get install as root, apt-get update first if that fails.
# On failure it returns 1 with the reason in install_reason.
# shellcheck disable=SC2034 # read by the scripts that source this file
install_reason=''
apt_install() {
  local aptlog
  if ! command -v apt-get >/dev/null; then install_reason="no apt-get"; return 1; fi
  if [ "$(id -u)" != 0 ]; then install_reason="not root"; return 1; fi
  echo "--- apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  aptlog=$(mktemp)
  if ! timeout 900 apt-get install -y -q "$@" >"$aptlog" 2>&1; then
    timeout 300 apt-get update -q >>"$aptlog" 2>&1 || true
    if ! timeout 900 apt-get install -y -q "$@" >>"$aptlog" 2>&1; then
      # shellcheck disable=SC2034
      install_reason="apt-get cannot install $*: $(grep -E '^E:' "$aptlog" | tail -1 || echo 'no E: line in the apt-get output')"
      rm -f "$aptlog"
      return 1
    fi
  fi
  rm -f "$aptlog"
}

# descendants PID: the process ids under PID (a server started through runuser or su,
# which may start a new session: a process group kill would miss it).
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$c"
    descendants "$c"
  done
}

# stop_tree PID: TERM to it and everything under it, KILL after 15 s.
stop_tree() {
  local pid=$1 all p alive
  all="$(descendants "$pid" | tr '\n' ' ') $pid"
  for p in $all; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 150); do
    alive=
    for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}
