#!/usr/bin/env bash
# Builds the container images from locally built static binaries; nothing is pulled
# (both images are FROM scratch), so this works without any image registry.
#
#   deploy/build-images.sh            # switchboard:dev and switchboard-etcd:dev
#
# Environment:
#   SWITCHBOARD_IMAGE  tag of the node image            (default switchboard:dev)
#   ETCD_IMAGE         tag of the etcd image            (default switchboard-etcd:dev)
#   SKIP_ETCD=1        build only the Switchboard image (e.g. ETCD_IMAGE is another image)
#   VERSION            version stamped into the binary  (default: git describe, else dev)
#   BUILD_DIR          where binaries and contexts go   (default deploy/.build)
#
# The host binary deploy/.build/switchboard is the same one the image runs; use it for
# `switchboard user add ... --etcd http://127.0.0.1:12379` against the compose cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

SWITCHBOARD_IMAGE=${SWITCHBOARD_IMAGE:-switchboard:dev}
ETCD_IMAGE=${ETCD_IMAGE:-switchboard-etcd:dev}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
BUILD_DIR=${BUILD_DIR:-deploy/.build}
mkdir -p "$BUILD_DIR"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)

# The binaries must be static: a scratch image has no libc. GOOS/GOARCH follow the
# Docker engine, so that building on another architecture still gives a runnable image.
GOOS=linux
GOARCH=$(docker version --format '{{.Server.Arch}}' 2>/dev/null || go env GOARCH)
export CGO_ENABLED=0 GOOS GOARCH

# stage DIR BINARY USER HOME: a build context with the binary, a passwd/group with the
# unprivileged user 10001, and fs/<basename HOME>, the empty data directory with mode
# 0700 (etcd insists on it; the node keeps its TLS key there). COPY keeps the mode of a
# directory only for directories inside the copied one, hence the fs/ level.
stage() {
  local dir=$1 bin=$2 user=$3 home=$4
  rm -rf "$dir"
  mkdir -p "$dir/fs/$(basename "$home")"
  chmod 0700 "$dir/fs/$(basename "$home")"
  cp "$bin" "$dir/"
  printf 'root:x:0:0:root:/:/sbin/nologin\n%s:x:10001:10001:%s:%s:/sbin/nologin\n' "$user" "$user" "$home" >"$dir/passwd"
  printf 'root:x:0:\n%s:x:10001:\n' "$user" >"$dir/group"
}

t0=$SECONDS
echo "--- building switchboard $VERSION ($GOOS/$GOARCH, static)"
go build -trimpath -ldflags "-s -w -X github.com/switchboard-im/switchboard/node.Version=$VERSION" \
  -o "$BUILD_DIR/switchboard" ./cmd/switchboard
stage "$BUILD_DIR/switchboard-ctx" "$BUILD_DIR/switchboard" switchboard /data
echo "--- docker build $SWITCHBOARD_IMAGE"
docker build -q -f deploy/Dockerfile -t "$SWITCHBOARD_IMAGE" \
  --label org.opencontainers.image.version="$VERSION" "$BUILD_DIR/switchboard-ctx"

if [ "${SKIP_ETCD:-}" != 1 ]; then
  # The etcd server's main package is go.etcd.io/etcd/server/v3 itself. Building it inside
  # this module uses the etcd release pinned in go.mod (the one the client and the
  # embedded etcd come from) and the module cache the tests already filled.
  etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  echo "--- building etcd $etcd_version ($GOOS/$GOARCH, static)"
  go build -trimpath -ldflags "-s -w" -o "$BUILD_DIR/etcd" go.etcd.io/etcd/server/v3
  stage "$BUILD_DIR/etcd-ctx" "$BUILD_DIR/etcd" etcd /var/lib/etcd
  echo "--- docker build $ETCD_IMAGE"
  docker build -q -f deploy/etcd.Dockerfile -t "$ETCD_IMAGE" \
    --label org.opencontainers.image.version="$etcd_version" "$BUILD_DIR/etcd-ctx"
fi

# The binaries stay next to the images for the host-side CLI; the contexts are copies.
rm -rf "$BUILD_DIR/switchboard-ctx" "$BUILD_DIR/etcd-ctx"
echo "--- images built in $((SECONDS - t0))s:"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^(${SWITCHBOARD_IMAGE%%:*}|${ETCD_IMAGE%%:*}):" || true
