package etcdx

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PageSize is how many keys one read of Range asks etcd for.
const PageSize = 500

// Range reads every key under prefix, in key order, in pages of PageSize keys, all at
// the revision of the first page: one consistent snapshot, as a single read would be,
// but no response bigger than a page (a single read of a big prefix could exceed any
// bound on responses, DefaultMaxResponse). It calls fn for each key and returns the
// revision read (watch from it + 1). If etcd compacts that revision between pages, the
// read fails (ErrCompacted) and the caller reads again.
func Range(ctx context.Context, cli *clientv3.Client, prefix string, fn func(*mvccpb.KeyValue)) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(PageSize)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, key, opts...)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			fn(kv)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00" // the next key after the page
	}
}
