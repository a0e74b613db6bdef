package delegation

import (
	"crypto/rand"
	"encoding/hex"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request is what the server remembers of an IQ it sent on someone's behalf (a delegated
// IQ forwarded to its managing entity, XEP-0355, or an IQ a privileged entity sent as a
// user, XEP-0356) until its answer comes.
type Request struct {
	OuterID   string
	Host      string
	Namespace string
	Entity    string // managing entity the IQ went to
	Via       string // the key of the connection it went to: it fails with that connection
	From      string // the requester's full JID: the inner reply's 'to' must be this
	OrigID    string // the requester's IQ id
	OrigTo    string // the requester's 'to' ("" for none): the inner reply's 'from', if any, must be this
	WrapID    string // XEP-0356: the privileged entity's own IQ id, which the wrapped answer carries
	User      string // XEP-0356: the user the IQ was sent on behalf of
	Started   time.Time

	series *nsSeries // its metrics, when Metrics.Forwarded counted it
}

// Pending is a Request in a Tracker, with the handle R the router answers the requester
// through.
type Pending[R any] struct {
	Request
	Requester R
	// Wrapped is the stanza as it went to the managing entity. A component's suits any
	// of its connections as it is: one that closes cleanly before it read the IQ hands
	// it to another.
	Wrapped []byte

	// The shard's list of pending IQs in the order they were added, which is the order
	// of their deadlines: the sweeper times them out from the front.
	deadline   time.Time
	prev, next *Pending[R]
}

// ReplyFrom is the 'from' the requester sees on the answer: the address it asked.
func (p *Request) ReplyFrom() string { return p.OrigTo }

// Tracker holds pending IQs keyed by outer id. Every pending IQ ends exactly once: by a
// reply (Take), by its timeout, or by its connection going away (FailVia).
//
// Timeouts are not a timer each (creating and stopping one per IQ cost ~5% of a node's
// CPU under load): every IQ gets the same timeout, so each shard's list in the order of
// Add is in deadline order, and one sweeper goroutine, running only while something is
// pending, ends the expired ones from the front every timeout/16 (between 1 ms and
// 250 ms). An IQ therefore times out between timeout and timeout plus that tick.
type Tracker[R any] struct {
	// OnDone, if set, is called once for every pending IQ when it ends, however it
	// ends (answer, timeout, FailVia, FailAll), before its timeout handler: the place to
	// count it out (per-requester in-flight caps). Set it before the first Add.
	OnDone func(*Pending[R])
	// StallAfter: a connection with IQs waiting on it that has answered none for this
	// long is stalled (its node or component hangs); OnStall is told the stalled
	// connections (their Via) whenever the set changes, within a sweep tick, from the
	// sweeper's goroutine. Set both before the first Add; 0: no stall detection.
	StallAfter time.Duration
	OnStall    func(stalled []string)

	timeout   time.Duration
	tick      time.Duration
	onTimeout func(*Pending[R])
	prefix    string
	seed      maphash.Seed
	shards    [32]trackerShard[R]
	perVia    sync.Map // Via (string) → *viaStats
	pending   atomic.Int64
	sweeping  atomic.Bool
	stalled   map[string]bool // the sweeper's last verdict
}

// viaStats is what the tracker knows of one connection.
type viaStats struct {
	n        atomic.Int64 // IQs waiting on it
	progress atomic.Int64 // unix ns: its last answer, or when it last became busy
}

type trackerShard[R any] struct {
	mu         sync.Mutex
	m          map[string]*Pending[R]
	head, tail *Pending[R]
}

func (sh *trackerShard[R]) push(p *Pending[R]) {
	p.prev, p.next = sh.tail, nil
	if sh.tail != nil {
		sh.tail.next = p
	} else {
		sh.head = p
	}
	sh.tail = p
}

func (sh *trackerShard[R]) unlink(p *Pending[R]) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		sh.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		sh.tail = p.prev
	}
	p.prev, p.next = nil, nil
}

// NewTracker makes a tracker whose outer ids start with "sbd:<node>:" so that, in a
// cluster, the node holding the pending entry can be read off the reply's id.
func NewTracker[R any](node string, timeout time.Duration, onTimeout func(*Pending[R])) *Tracker[R] {
	return NewTaggedTracker(TagDelegation, node, timeout, onTimeout)
}

// Tags of the trackers' ids: which kind of pending request an id belongs to.
const (
	TagDelegation = "sbd" // XEP-0355 forwarded IQs
	TagPrivileged = "sbp" // XEP-0356 IQs sent on behalf of a user
)

// NewTaggedTracker is NewTracker with ids "<tag>:<node>:<random>".
func NewTaggedTracker[R any](tag, node string, timeout time.Duration, onTimeout func(*Pending[R])) *Tracker[R] {
	t := &Tracker[R]{timeout: timeout, onTimeout: onTimeout, prefix: tag + ":" + node + ":", seed: maphash.MakeSeed()}
	t.tick = min(max(timeout/16, time.Millisecond), 250*time.Millisecond)
	for i := range t.shards {
		t.shards[i].m = make(map[string]*Pending[R])
	}
	return t
}

// NewID returns an unguessable outer id for this node.
func (t *Tracker[R]) NewID() string {
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
func (t *Tracker[R]) Owns(id string) bool { return strings.HasPrefix(id, t.prefix) }

func (t *Tracker[R]) shard(id string) *trackerShard[R] {
	return &t.shards[maphash.String(t.seed, id)%uint64(len(t.shards))]
}

func (t *Tracker[R]) via(via string) *viaStats {
	if c, ok := t.perVia.Load(via); ok {
		return c.(*viaStats)
	}
	c, _ := t.perVia.LoadOrStore(via, new(viaStats))
	return c.(*viaStats)
}

// Add registers p and starts its timeout.
func (t *Tracker[R]) Add(p *Pending[R]) {
	v := t.via(p.Via)
	sh := t.shard(p.OuterID)
	sh.mu.Lock()
	now := time.Now() // under the lock: the shard's list stays in deadline order
	if v.n.Add(1) == 1 {
		v.progress.Store(now.UnixNano()) // busy from now: a stall is counted from here
	}
	if p.Started.IsZero() {
		p.Started = now
	}
	p.deadline = now.Add(t.timeout)
	sh.m[p.OuterID] = p
	sh.push(p)
	sh.mu.Unlock()
	t.pending.Add(1)
	if t.sweeping.CompareAndSwap(false, true) {
		go t.sweep()
	}
}

// sweep times out expired IQs while any IQ is pending.
func (t *Tracker[R]) sweep() {
	var expired []*Pending[R]
	for {
		time.Sleep(t.tick)
		now := time.Now()
		for i := range t.shards {
			sh := &t.shards[i]
			sh.mu.Lock()
			for p := sh.head; p != nil && !p.deadline.After(now); p = sh.head {
				sh.unlink(p)
				delete(sh.m, p.OuterID)
				expired = append(expired, p)
			}
			sh.mu.Unlock()
		}
		for i, p := range expired {
			t.done(p)
			if t.onTimeout != nil {
				t.onTimeout(p)
			}
			expired[i] = nil
		}
		expired = expired[:0]
		t.checkStalls(now)
		if t.pending.Load() > 0 {
			continue
		}
		t.checkStalls(time.Now()) // nothing waits: no connection is stalled any more
		t.sweeping.Store(false)
		// An Add between the check and the store saw a sweeper running and started none.
		if t.pending.Load() == 0 || !t.sweeping.CompareAndSwap(false, true) {
			return
		}
	}
}

// checkStalls finds the stalled connections (StallAfter) and tells OnStall if they
// changed; the sweeper's goroutine only.
func (t *Tracker[R]) checkStalls(now time.Time) {
	if t.StallAfter <= 0 || t.OnStall == nil {
		return
	}
	var stalled map[string]bool
	before := now.Add(-t.StallAfter).UnixNano()
	t.perVia.Range(func(k, v any) bool {
		s := v.(*viaStats)
		if s.n.Load() > 0 && s.progress.Load() < before {
			if stalled == nil {
				stalled = make(map[string]bool)
			}
			stalled[k.(string)] = true
		}
		return true
	})
	if maps.Equal(stalled, t.stalled) {
		return
	}
	t.stalled = stalled
	out := slices.Sorted(maps.Keys(stalled))
	t.OnStall(out)
}

// done does the accounting of a pending IQ that left its shard. A reply or timeout that
// races FailVia may come after FailVia dropped the connection's count: it must not bring
// the count back (at -1, for a connection that is gone).
func (t *Tracker[R]) done(p *Pending[R]) {
	if c, ok := t.perVia.Load(p.Via); ok {
		c.(*viaStats).n.Add(-1)
	}
	t.pending.Add(-1)
	if t.OnDone != nil {
		t.OnDone(p)
	}
}

// Take removes and returns the pending IQ with this outer id.
func (t *Tracker[R]) Take(id string) (*Pending[R], bool) { return t.TakeIf(id, nil) }

// TakeIf is Take for an entry that ok accepts (nil: any); one it refuses stays pending.
func (t *Tracker[R]) TakeIf(id string, ok func(*Pending[R]) bool) (*Pending[R], bool) {
	sh := t.shard(id)
	sh.mu.Lock()
	p, found := sh.m[id]
	if found && ok != nil && !ok(p) {
		found = false
	}
	if found {
		delete(sh.m, id)
		sh.unlink(p)
	}
	sh.mu.Unlock()
	if !found {
		return nil, false
	}
	if c, ok := t.perVia.Load(p.Via); ok {
		c.(*viaStats).progress.Store(time.Now().UnixNano()) // it answers
	}
	t.done(p)
	return p, true
}

// FailVia removes and returns every pending IQ sent over a connection that went away.
func (t *Tracker[R]) FailVia(via string) []*Pending[R] {
	out := t.removeAll(func(p *Pending[R]) bool { return p.Via == via })
	t.perVia.Delete(via)
	return out
}

// FailAll removes and returns every pending IQ (shutdown).
func (t *Tracker[R]) FailAll() []*Pending[R] { return t.removeAll(nil) }

func (t *Tracker[R]) removeAll(match func(*Pending[R]) bool) []*Pending[R] {
	var out []*Pending[R]
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for id, p := range sh.m {
			if match == nil || match(p) {
				delete(sh.m, id)
				sh.unlink(p)
				out = append(out, p)
			}
		}
		sh.mu.Unlock()
	}
	for _, p := range out {
		t.done(p)
	}
	return out
}

// Outstanding is how many IQs wait on a connection (for least-pending balancing).
func (t *Tracker[R]) Outstanding(via string) int64 {
	if c, ok := t.perVia.Load(via); ok {
		return c.(*viaStats).n.Load()
	}
	return 0
}

// Len is the number of pending IQs.
func (t *Tracker[R]) Len() int { return int(t.pending.Load()) }
