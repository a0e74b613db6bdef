package etcdx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reload timings of WatchPrefix.
const (
	ReloadBackoffMin = 100 * time.Millisecond
	ReloadBackoffMax = 5 * time.Second
	ReloadTimeout    = 10 * time.Second
)

// WatchPrefix keeps a local view of a prefix in step with etcd until ctx is done: apply
// gets every batch of events after rev; when the watch ends (history compacted, leader
// lost, etcd away) reload rebuilds the view from a full read, retried with backoff, and
// returns the revision to watch from. Meanwhile the view keeps its last state.
func WatchPrefix(ctx context.Context, cli *clientv3.Client, prefix string, rev int64, what string, log *slog.Logger,
	apply func([]*clientv3.Event), reload func(context.Context) (int64, error)) {
	for {
		err := watchOnce(ctx, cli, prefix, rev, apply)
		if ctx.Err() != nil {
			return
		}
		log.Warn(what+" watch ended, reloading", "err", err)
		backoff := ReloadBackoffMin
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			lctx, cancel := context.WithTimeout(ctx, ReloadTimeout)
			r, err := reload(lctx)
			cancel()
			if err == nil {
				rev = r
				log.Info(what+" reloaded", "revision", rev)
				break
			}
			if ctx.Err() != nil {
				return
			}
			log.Warn(what+" reload failed, retrying", "err", err, "in", backoff)
			backoff = min(2*backoff, ReloadBackoffMax)
		}
	}
}

// watchOnce applies changes after rev until the watch fails; it returns why.
func watchOnce(ctx context.Context, cli *clientv3.Client, prefix string, rev int64, apply func([]*clientv3.Event)) error {
	// RequireLeader: a member cut off from its cluster ends the watch instead of going
	// silent, and the reload then waits for a usable member.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("history compacted at revision %d", resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.Canceled {
			return errors.New("watch canceled")
		}
		apply(resp.Events)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch channel closed")
}
