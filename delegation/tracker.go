package delegation

import (
	"crypto/rand"
	"encoding/hex"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Pending is one forwarded IQ awaiting its managing entity's reply.
type Pending struct {
	OuterID   string
	Host      string
	Namespace string
	Entity    string // managing entity the IQ went to
	Via       any    // the managing entity's connection it went to (fails with it)
	Requester any    // the router's handle to answer the requester
	From      string // the requester's full JID: the inner reply's 'to' must be this
	OrigID    string // the requester's IQ id
	OrigTo    string // the requester's 'to' ("" for none): the inner reply's 'from', if any, must be this
	WrapID    string // XEP-0356: the privileged entity's own IQ id, which the wrapped answer carries
	User      string // XEP-0356: the user the IQ was sent on behalf of
	Started   time.Time

	timer *time.Timer
}

// ReplyFrom is the 'from' the requester sees on the answer: the address it asked.
func (p *Pending) ReplyFrom() string { return p.OrigTo }

// Tracker holds pending IQs keyed by outer id. Every pending IQ ends exactly once: by a
// reply (Take), by its timeout, or by its connection going away (FailVia).
type Tracker struct {
	timeout   time.Duration
	onTimeout func(*Pending)
	prefix    string
	seed      maphash.Seed
	shards    [32]trackerShard
	perVia    sync.Map // via → *atomic.Int64
}

type trackerShard struct {
	mu sync.Mutex
	m  map[string]*Pending
}

// NewTracker makes a tracker whose outer ids start with "sbd:<node>:" so that, in a
// cluster, the node holding the pending entry can be read off the reply's id.
func NewTracker(node string, timeout time.Duration, onTimeout func(*Pending)) *Tracker {
	return NewTaggedTracker(TagDelegation, node, timeout, onTimeout)
}

// Tags of the trackers' ids: which kind of pending request an id belongs to.
const (
	TagDelegation = "sbd" // XEP-0355 forwarded IQs
	TagPrivileged = "sbp" // XEP-0356 IQs sent on behalf of a user
)

// NewTaggedTracker is NewTracker with ids "<tag>:<node>:<random>".
func NewTaggedTracker(tag, node string, timeout time.Duration, onTimeout func(*Pending)) *Tracker {
	t := &Tracker{timeout: timeout, onTimeout: onTimeout, prefix: tag + ":" + node + ":", seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*Pending)
	}
	return t
}

// NewID returns an unguessable outer id for this node.
func (t *Tracker) NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return t.prefix + hex.EncodeToString(b[:])
}

// NodeOf returns the node encoded in an outer id ("" if it is not one of ours).
func NodeOf(id string) string { return NodeOfTagged(TagDelegation, id) }

// NodeOfTagged returns the node encoded in an id of a tracker with this tag.
func NodeOfTagged(tag, id string) string {
	rest, ok := strings.CutPrefix(id, tag+":")
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return ""
	}
	return rest[:i]
}

// Owns reports whether id was made by this tracker.
func (t *Tracker) Owns(id string) bool { return strings.HasPrefix(id, t.prefix) }

func (t *Tracker) shard(id string) *trackerShard {
	return &t.shards[maphash.String(t.seed, id)%uint64(len(t.shards))]
}

func (t *Tracker) viaCount(via any) *atomic.Int64 {
	if c, ok := t.perVia.Load(via); ok {
		return c.(*atomic.Int64)
	}
	c, _ := t.perVia.LoadOrStore(via, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// Add registers p and starts its timeout.
func (t *Tracker) Add(p *Pending) {
	if p.Started.IsZero() {
		p.Started = time.Now()
	}
	t.viaCount(p.Via).Add(1)
	id := p.OuterID
	sh := t.shard(id)
	sh.mu.Lock()
	sh.m[id] = p
	// Set under the lock: whoever takes p out of the map (reply, timeout, FailVia) does
	// so under the same lock and then reads p.timer.
	p.timer = time.AfterFunc(t.timeout, func() {
		if q, ok := t.take(id, false); ok && t.onTimeout != nil {
			t.onTimeout(q)
		}
	})
	sh.mu.Unlock()
}

// Take removes and returns the pending IQ with this outer id.
func (t *Tracker) Take(id string) (*Pending, bool) { return t.take(id, true) }

// TakeIf is Take for an entry that ok accepts; one it refuses stays pending.
func (t *Tracker) TakeIf(id string, ok func(*Pending) bool) (*Pending, bool) {
	return t.takeIf(id, true, ok)
}

func (t *Tracker) take(id string, stop bool) (*Pending, bool) { return t.takeIf(id, stop, nil) }

func (t *Tracker) takeIf(id string, stop bool, accept func(*Pending) bool) (*Pending, bool) {
	sh := t.shard(id)
	sh.mu.Lock()
	p, ok := sh.m[id]
	if ok && accept != nil && !accept(p) {
		ok = false
	}
	if ok {
		delete(sh.m, id)
	}
	sh.mu.Unlock()
	if !ok {
		return nil, false
	}
	if stop && p.timer != nil {
		p.timer.Stop()
	}
	t.viaCount(p.Via).Add(-1)
	return p, true
}

// FailVia removes and returns every pending IQ sent over a connection that went away.
func (t *Tracker) FailVia(via any) []*Pending {
	var out []*Pending
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for id, p := range sh.m {
			if p.Via == via {
				delete(sh.m, id)
				out = append(out, p)
			}
		}
		sh.mu.Unlock()
	}
	for _, p := range out {
		if p.timer != nil {
			p.timer.Stop()
		}
	}
	t.perVia.Delete(via)
	return out
}

// FailAll removes and returns every pending IQ (shutdown).
func (t *Tracker) FailAll() []*Pending {
	var out []*Pending
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for id, p := range sh.m {
			delete(sh.m, id)
			out = append(out, p)
		}
		sh.mu.Unlock()
	}
	for _, p := range out {
		if p.timer != nil {
			p.timer.Stop()
		}
		t.viaCount(p.Via).Add(-1)
	}
	return out
}

// Outstanding is how many IQs wait on a connection (for least-pending balancing).
func (t *Tracker) Outstanding(via any) int64 {
	if c, ok := t.perVia.Load(via); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// Len is the number of pending IQs.
func (t *Tracker) Len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
