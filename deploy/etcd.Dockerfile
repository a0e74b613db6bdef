# etcd image for the compose file (and for tests), FROM scratch with a static etcd built
# from the Go module go.etcd.io/etcd/server/v3 (its main package is the etcd server) at
# the version pinned in go.mod. Built by deploy/build-images.sh; the context holds
#   etcd               the static binary
#   passwd, group      the etcd user (uid/gid 10001)
#   fs/etcd/           an empty directory (0700), becomes /var/lib/etcd owned by 10001
# Any other etcd image works too: set ETCD_IMAGE for docker compose.
FROM scratch

COPY passwd group /etc/
# WORKDIR creates /var/lib owned by root; the COPY then adds only etcd/ (0700, 10001).
WORKDIR /var/lib
COPY --chown=10001:10001 fs/ /var/lib/
COPY etcd /etcd

USER 10001:10001
# No VOLUME: mount one at /var/lib/etcd (compose and the Kubernetes manifests do).
ENV ETCD_DATA_DIR=/var/lib/etcd

# client, peer
EXPOSE 2379 2380

ENTRYPOINT ["/etcd"]
