#!/usr/bin/env bash
# Container tests: builds the images, starts the three-node compose cluster, runs the
# fault tests in compose_test.go from the host (client on node1, component on node3,
# docker kill, network disconnect/reconnect, delegation changed in etcd under traffic),
# and tears everything down again, whatever happens.
#
#   deploy/test-compose.sh
#
# Needs a Docker engine and Compose (docker-compose, or the docker compose plugin) and Go.
# Environment:
#   SB_PROJECT    compose project, default switchboard-test
#   SB_NET        as in docker-compose.yml, default 172.28.6 so that the test cluster can
#                 run beside a cluster started by hand
#   SB_PARTITION  how long node3 stays disconnected, default 30s (see compose_test.go)
#   KEEP=1        leave the cluster running after the tests, for a look around (then
#                 docker-compose -f deploy/docker-compose.yml -p switchboard-test down -v)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE="docker-compose"
else
  echo "test-compose: neither 'docker compose' nor docker-compose found" >&2
  exit 1
fi
export SB_COMPOSE=$COMPOSE
export SB_PROJECT=${SB_PROJECT:-switchboard-test}
export SB_NET=${SB_NET:-172.28.6}
export SB_BIN=$PWD/deploy/.build/switchboard
# The test cluster publishes its ports on host ports that Docker picks (127.0.0.1::5222), so
# that no fixed port can be taken already on the machine that runs the tests; the tests look
# them up with `compose port`. The file is docker-compose.yml with only that changed, next to
# it so that its relative paths stay right.
export SB_COMPOSE_FILE=.docker-compose.test.yml
sed -E 's/"127\.0\.0\.1:[^"]*:([0-9]+)"/"127.0.0.1::\1"/' deploy/docker-compose.yml >"deploy/$SB_COMPOSE_FILE"
if grep -Eq '^ *- "127\.0\.0\.1:[^:]' "deploy/$SB_COMPOSE_FILE"; then
  echo "test-compose: a published port in docker-compose.yml was not rewritten" >&2
  exit 1
fi
# shellcheck disable=SC2206 # "docker compose" is two words
compose=($COMPOSE -f "deploy/$SB_COMPOSE_FILE" -p "$SB_PROJECT")

# bounded runs a command with a time limit (timeout(1) from coreutils).
bounded() { timeout --kill-after=10 "$@"; }

cleanup() {
  rc=$?
  if [ "$rc" != 0 ]; then
    echo "--- test-compose failed (exit $rc); the cluster's last logs:"
    bounded 60 "${compose[@]}" ps || true
    bounded 60 "${compose[@]}" logs --no-color --tail=60 || true
  fi
  if [ "${KEEP:-}" = 1 ]; then
    echo "--- KEEP=1: the cluster is still running (project $SB_PROJECT)"
  else
    echo "--- compose down -v"
    bounded 120 "${compose[@]}" down -v --remove-orphans || true
    rm -rf deploy/.secrets
  fi
  echo "--- test-compose finished in $((SECONDS - start))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "--- building the images ($COMPOSE)"
bounded 600 deploy/build-images.sh

echo "--- the cluster's secrets (gossip key, CA, node certificates) in deploy/.secrets"
rm -rf deploy/.secrets
"$SB_BIN" cluster secrets --out deploy/.secrets --nodes node1,node2,node3
# The image runs as uid 10001: it must read them (chown needs root; else make them
# world-readable, acceptable for a throwaway test cluster only).
chown -R 10001:10001 deploy/.secrets 2>/dev/null || chmod -R a+rX deploy/.secrets

echo "--- compose up"
# A leftover cluster of an interrupted run would keep its etcd data: start clean.
bounded 120 "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
bounded 180 "${compose[@]}" up -d

echo "--- waiting for three alive members"
deadline=$((SECONDS + 90))
out=""
until admin=$(bounded 30 "${compose[@]}" port node1 5280 2>&1) &&
  out=$("$SB_BIN" members --admin "$admin" 2>&1) && [ "$(grep -c ' alive ' <<<"$out")" = 3 ]; do
  if [ $SECONDS -ge $deadline ]; then
    echo "the cluster did not come up within 90s:"; echo "$admin"; echo "$out"
    exit 1
  fi
  sleep 1
done
echo "$out"

echo "--- fault tests (go test -tags compose ./deploy)"
# CGO_ENABLED=0 and -trimpath as in build-images.sh: the packages it compiled are reused.
CGO_ENABLED=0 bounded 600 go test -trimpath -tags compose -count=1 -v -timeout 8m -run '^TestCompose$' ./deploy
