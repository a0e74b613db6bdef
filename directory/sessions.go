package directory

import (
	"hash/maphash"
	"sync"
)

// Sessions are the client sessions of this node's own sockets, by bare JID and resource:
// what a stanza for a full JID that is here goes to directly. Sharded by bare JID, so that
// no lock is shared by all sessions.
type Sessions[S Local] struct {
	seed   maphash.Seed
	shards [shards]sessionShard[S]
}

type sessionShard[S Local] struct {
	mu    sync.RWMutex
	users map[string]map[string]S // bare → resource → session
}

// NewSessions makes an empty table.
func NewSessions[S Local]() *Sessions[S] {
	t := &Sessions[S]{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].users = make(map[string]map[string]S)
	}
	return t
}

func (t *Sessions[S]) shard(bare string) *sessionShard[S] { return &t.shards[shardOf(t.seed, bare)] }

// Bind enters s as bare/res (a session already there is replaced in this table; the
// owner decides who wins, see Owners.Register).
func (t *Sessions[S]) Bind(bare, res string, s S) {
	sh := t.shard(bare)
	sh.mu.Lock()
	m := sh.users[bare]
	if m == nil {
		m = make(map[string]S)
		sh.users[bare] = m
	}
	m[res] = s
	sh.mu.Unlock()
}

// Unbind removes bare/res if it is still s.
func (t *Sessions[S]) Unbind(bare, res string, s S) {
	sh := t.shard(bare)
	sh.mu.Lock()
	if m := sh.users[bare]; m != nil && m[res] == s {
		delete(m, res)
		if len(m) == 0 {
			delete(sh.users, bare)
		}
	}
	sh.mu.Unlock()
}

// Lookup returns the session bound to bare/res here.
func (t *Sessions[S]) Lookup(bare, res string) (S, bool) {
	sh := t.shard(bare)
	sh.mu.RLock()
	s, ok := sh.users[bare][res]
	sh.mu.RUnlock()
	return s, ok
}

// Of returns bare's sessions here.
func (t *Sessions[S]) Of(bare string) []S {
	sh := t.shard(bare)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	out := make([]S, 0, len(sh.users[bare]))
	for _, s := range sh.users[bare] {
		out = append(out, s)
	}
	return out
}

// All returns every session here.
func (t *Sessions[S]) All() []S {
	var out []S
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for _, m := range sh.users {
			for _, s := range m {
				out = append(out, s)
			}
		}
		sh.mu.RUnlock()
	}
	return out
}
