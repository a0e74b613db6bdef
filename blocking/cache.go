package blocking

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/internal/etcdx"
)

// Cache is every node's copy of every non-empty blocklist, loaded at start and kept
// current by an etcd watch, so that the routing checks a stanza against its sender's and
// its recipient's lists without asking etcd: Lookup is an atomic load when nobody has a
// list, a hash and a map read otherwise, and allocates nothing.
//
// The watch is the only writer. Applied says up to which etcd revision the copy is
// current, and WaitApplied waits for a revision: a node that wrote a list at revision R
// answers the IQ only once every member's copy has applied R (the router asks each), so
// a block is in force on every node when the user learns it is made.
//
// Lists are spread over shards, each a map replaced whole on a change (copy on write):
// readers take no lock, and a change copies one shard, not every user's entry.
type Cache struct {
	store *Store
	log   *slog.Logger
	seed  maphash.Seed

	users  atomic.Int64 // how many users have a list
	shards [cacheShards]atomic.Pointer[map[string]*List]

	mu      sync.Mutex    // writers (the watch, Set), and applied with its waiters
	applied int64         // the revision the copy is current to
	moved   chan struct{} // closed (and replaced) when applied moves

	loop etcdx.Loop // the watch, between Start and Stop
}

const cacheShards = 64

// NewCache returns a Cache over store (nil: a view that only Set fills, for tests);
// call Start to fill it.
func NewCache(store *Store, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{store: store, log: log.With("component", "blocking"), seed: maphash.MakeSeed(), moved: make(chan struct{})}
	for i := range c.shards {
		c.shards[i].Store(&map[string]*List{})
	}
	return c
}

// Store is the etcd store the cache follows (nil: none, or no cache).
func (c *Cache) Store() *Store {
	if c == nil {
		return nil
	}
	return c.store
}

// Start loads every list (its error is returned) and then follows changes in the
// background until Stop. ctx bounds the initial load only.
func (c *Cache) Start(ctx context.Context) error {
	if c.loop.Running() {
		return errors.New("blocking: cache already started")
	}
	rev, err := c.load(ctx)
	if err != nil {
		return err
	}
	return c.loop.Go(ctx, func(ctx context.Context) {
		etcdx.WatchPrefix(ctx, c.store.cli, c.store.prefix, rev, "blocklist", c.log, c.apply, c.load)
	})
}

// Stop ends the watch and waits for it. The cache keeps answering from what it has.
func (c *Cache) Stop(ctx context.Context) error { return c.loop.Stop(ctx) }

// Lookup returns the user's list (nil: none).
func (c *Cache) Lookup(bare string) *List {
	if c == nil || c.users.Load() == 0 {
		return nil
	}
	return (*c.shards[maphash.String(c.seed, bare)%cacheShards].Load())[bare]
}

// Blocks reports whether the user bare blocks the address local@domain/res.
func (c *Cache) Blocks(bare, local, domain, res string) bool {
	return c.Lookup(bare).Blocks(local, domain, res)
}

// Applied is the etcd revision the cache is current to.
func (c *Cache) Applied() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied
}

// WaitApplied waits until the cache has applied revision rev, or ctx ends.
func (c *Cache) WaitApplied(ctx context.Context, rev int64) error {
	for {
		c.mu.Lock()
		done, moved := c.applied >= rev, c.moved
		c.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("blocking: waiting for revision %d: %w", rev, ctx.Err())
		}
	}
}

// Set replaces bare's list in this cache only (nil or empty: none), as a watch event
// would. For tests: etcd is the truth, and the watch overwrites it.
func (c *Cache) Set(bare string, items []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(bare, items)
}

// setLocked swaps bare's list in its shard (a copy of the shard's map).
func (c *Cache) setLocked(bare string, items []string) {
	sh := &c.shards[maphash.String(c.seed, bare)%cacheShards]
	old := *sh.Load()
	_, had := old[bare]
	var l *List
	if len(items) > 0 {
		if l = NewList(items); l.Len() == 0 {
			l = nil
		}
	}
	if l == nil && !had {
		return
	}
	m := make(map[string]*List, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	switch {
	case l != nil:
		m[bare] = l
		if !had {
			c.users.Add(1)
		}
	default:
		delete(m, bare)
		c.users.Add(-1)
	}
	sh.Store(&m)
}

// advanceLocked records that the cache is current to rev and wakes the waiters.
func (c *Cache) advanceLocked(rev int64) {
	if rev <= c.applied {
		return
	}
	c.applied = rev
	close(c.moved)
	c.moved = make(chan struct{})
}

// load replaces the whole view with a fresh read and returns its revision.
func (c *Cache) load(ctx context.Context) (int64, error) {
	var fresh [cacheShards]map[string]*List
	for i := range fresh {
		fresh[i] = map[string]*List{}
	}
	n := 0
	rev, err := etcdx.Range(ctx, c.store.cli, c.store.prefix, func(kv *mvccpb.KeyValue) {
		bare, ok := c.store.parseKey(kv.Key)
		if !ok {
			return
		}
		items, err := decode(kv.Value)
		if err != nil {
			c.log.Warn("skipping unreadable blocklist", "user", bare, "err", err)
			return
		}
		if l := NewList(items); l.Len() > 0 {
			fresh[maphash.String(c.seed, bare)%cacheShards][bare] = l
			n++
		}
	})
	if err != nil {
		return 0, fmt.Errorf("blocking: load %s: %w", c.store.prefix, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range fresh {
		c.shards[i].Store(&fresh[i])
	}
	c.users.Store(int64(n))
	c.advanceLocked(rev)
	c.log.Debug("blocklists loaded", "users", n, "revision", rev)
	return rev, nil
}

func (c *Cache) apply(events []*clientv3.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rev int64
	for _, ev := range events {
		rev = max(rev, ev.Kv.ModRevision)
		bare, ok := c.store.parseKey(ev.Kv.Key)
		if !ok {
			continue
		}
		var items []string
		if ev.Type == clientv3.EventTypePut {
			var err error
			if items, err = decode(ev.Kv.Value); err != nil {
				c.log.Warn("ignoring unreadable blocklist", "user", bare, "err", err)
			}
		}
		c.setLocked(bare, items)
	}
	c.advanceLocked(rev)
}
