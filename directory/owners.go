package directory

import (
	"hash/maphash"
	"strings"
	"sync"
)

// Owners are the owner tables of the users this node owns (rendezvous hashing over the
// live members picks one owner per bare JID): where each of the user's resources is, on
// any node, with its availability, priority and last presence. A stanza for a user that
// is not on the sender's node goes through its owner: at most two hops.
type Owners[S Local] struct {
	seed   maphash.Seed
	shards [shards]ownerShard[S]
}

type ownerShard[S Local] struct {
	mu    sync.Mutex
	users map[string]Resources[S]
}

// Resources are one user's entries in its owner table, by resource.
type Resources[S Local] map[string]*Entry[S]

// Entry is one resource of a user in its owner's table.
type Entry[S Local] struct {
	Handle[S]        // Local is set when the session is on this node; PID always
	Node      string // the node the session is on
	Available bool
	Priority  int32
	Presence  []byte // last broadcast presence, from = the resource's full JID
	// Interested: the session asked for its roster, so roster pushes go to it
	// (RFC 6121 §2.1.6).
	Interested bool
	// Carbons: the session enabled message carbons (XEP-0280).
	Carbons bool
	// BlocklistInterested: the session asked for its blocklist, so blocklist pushes go
	// to it (XEP-0191 §3.2).
	BlocklistInterested bool
}

// Named is an entry with its resource.
type Named[S Local] struct {
	Res string
	*Entry[S]
}

// Full is the resource's full JID.
func (n Named[S]) Full(bare string) string { return bare + "/" + n.Res }

// NewOwners makes empty owner tables.
func NewOwners[S Local]() *Owners[S] {
	o := &Owners[S]{seed: maphash.MakeSeed()}
	for i := range o.shards {
		o.shards[i].users = make(map[string]Resources[S])
	}
	return o
}

// Do runs fn on bare's resources (nil when the user has none here) under its shard's
// lock; what fn returns is kept (nil or empty: the user is dropped). Entries must not be
// read or changed outside Do or Range, except their Handle, which never changes.
func (o *Owners[S]) Do(bare string, fn func(Resources[S]) Resources[S]) {
	sh := &o.shards[shardOf(o.seed, bare)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if res := fn(sh.users[bare]); len(res) > 0 {
		sh.users[bare] = res
	} else {
		delete(sh.users, bare)
	}
}

// Range runs fn on every user, one shard locked at a time; fn may change or delete
// entries, and a user left with none is dropped. keep false drops the user.
func (o *Owners[S]) Range(fn func(bare string, res Resources[S]) (keep bool)) {
	for i := range o.shards {
		sh := &o.shards[i]
		sh.mu.Lock()
		for bare, res := range sh.users {
			if !fn(bare, res) || len(res) == 0 {
				delete(sh.users, bare)
			}
		}
		sh.mu.Unlock()
	}
}

// RangeHost is Range over the users of one host (bare JIDs ending in "@host").
func (o *Owners[S]) RangeHost(host string, fn func(bare string, res Resources[S])) {
	suffix := "@" + host
	o.Range(func(bare string, res Resources[S]) bool {
		if len(bare) > len(suffix) && strings.HasSuffix(bare, suffix) {
			fn(bare, res)
		}
		return true
	})
}

// Available returns the available resources but except.
func (res Resources[S]) Available(except string) []Named[S] {
	var out []Named[S]
	for name, e := range res {
		if name != except && e.Available {
			out = append(out, Named[S]{name, e})
		}
	}
	return out
}
