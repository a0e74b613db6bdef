package node

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// monitorEtcd checks etcd every 2 s and logs when it becomes unreachable and when it is
// back. While it is away the node keeps serving from its last rules and accounts; the
// watches catch up by themselves when it returns.
func (n *Node) monitorEtcd(ctx context.Context) {
	defer close(n.monitorDone)
	n.etcdUp.Store(true)
	var since time.Time
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		_, err := n.etcd.Get(cctx, n.cfg.Etcd.Prefix+"/health", clientv3.WithCountOnly())
		cancel()
		switch {
		case err != nil && n.etcdUp.Swap(false):
			since = time.Now()
			n.log.Warn("etcd unreachable: serving with the last known rules and accounts", "err", err)
		case err == nil && !n.etcdUp.Swap(true):
			n.log.Info("etcd reachable again", "after", time.Since(since).Round(time.Millisecond))
		}
	}
}
