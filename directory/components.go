package directory

import (
	"cmp"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-im/switchboard/config"
)

// Conn is one connection of a component, or one available resource of a managing
// account, here or on another node. Key (node/actor id) names it cluster-wide; the IQs
// sent over it fail with it.
type Conn[S Local] struct {
	Handle[S]
	Key  string
	Full string // an account's resource: its full JID (IQs are addressed to it); "" for a component

	passed atomic.Uint32 // connWithdrawn | connRemoved: set on the connection a pick returned
}

const (
	connWithdrawn = 1 << iota
	connRemoved
)

// Passed reports whether the connection was withdrawn or removed since it was entered:
// one picked just before must be picked again (an IQ tracked for it after the IQs
// waiting on it were handed on or failed would wait for nothing).
func (k *Conn[S]) Passed() bool { return k.passed.Load() != 0 }

// Removed reports whether the connection left the directory.
func (k *Conn[S]) Removed() bool { return k.passed.Load()&connRemoved != 0 }

// Components are the connections of every component domain (and managing account), here
// and on other nodes. The map is replaced, never written (a mutex serializes the
// writers), so a lookup per delegated IQ takes no lock: a read lock's shared counter
// bounced between the cores on every IQ.
type Components[S Local] struct {
	seed maphash.Seed
	mu   sync.Mutex
	m    atomic.Pointer[map[string]*connSet[S]]
	// down: other nodes' remoting addresses that the transport found unreachable, and
	// until when their connections are passed over (nil: none; copy-on-write).
	down atomic.Pointer[map[string]time.Time]
	// withdrawn: keys of connections whose node is draining (Withdraw): passed over by
	// picks, still listed until removed (nil: none; copy-on-write).
	withdrawn atomic.Pointer[map[string]bool]
	// stalled: keys of connections that answer nothing while IQs wait on them
	// (SetStalled): passed over like withdrawn ones (nil: none).
	stalled atomic.Pointer[map[string]bool]
}

// SetStalled replaces the set of stalled connections (delegation.Tracker.OnStall): a
// pick passes them over while another connection of their domain answers.
func (c *Components[S]) SetStalled(keys []string) {
	if len(keys) == 0 {
		c.stalled.Store(nil)
		return
	}
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	c.stalled.Store(&m)
}

// Withdraw passes over the connections with these keys from now on: their node is
// draining (on its way out), so they take no new work, while what was already sent over
// them is answered there. They stay listed, so MarkDown and Remove still find them, until
// they are removed.
func (c *Components[S]) Withdraw(keys []string) {
	if len(keys) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[string]bool{}
	if w := c.withdrawn.Load(); w != nil {
		maps.Copy(next, *w)
	}
	for _, k := range keys {
		next[k] = true
	}
	c.withdrawn.Store(&next)
	for _, cs := range c.current() {
		for _, k := range cs.conns {
			if next[k.Key] {
				k.passed.Or(connWithdrawn)
			}
		}
	}
}

// forget drops key from the withdrawn set; c.mu held.
func (c *Components[S]) forget(key string) {
	w := c.withdrawn.Load()
	if w == nil || !(*w)[key] {
		return
	}
	next := maps.Clone(*w)
	delete(next, key)
	if len(next) == 0 {
		c.withdrawn.Store(nil)
		return
	}
	c.withdrawn.Store(&next)
}

// MarkDown passes over every connection at a remoting address until the given time: the
// transport to that node failed (its connection was refused or reset), so a pick goes
// to a connection that can still answer without waiting for the membership's verdict.
// It returns the connections there (their pending IQs are the caller's to fail).
func (c *Components[S]) MarkDown(address string, until time.Time) []*Conn[S] {
	c.mu.Lock()
	next := map[string]time.Time{address: until}
	if d := c.down.Load(); d != nil {
		for a, t := range *d {
			if a != address && time.Now().Before(t) {
				next[a] = t
			}
		}
	}
	c.down.Store(&next)
	c.mu.Unlock()
	var at []*Conn[S]
	for _, cs := range c.current() {
		for _, k := range cs.conns {
			if !k.IsLocal() && k.PID.Address == address {
				at = append(at, k)
			}
		}
	}
	return at
}

// MarkUp ends MarkDown for an address (the membership says the node is there again).
func (c *Components[S]) MarkUp(address string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.down.Load()
	if d == nil {
		return
	}
	if _, ok := (*d)[address]; !ok {
		return
	}
	next := maps.Clone(*d)
	delete(next, address)
	if len(next) == 0 {
		c.down.Store(nil)
		return
	}
	c.down.Store(&next)
}

// AddressDown reports whether an address is marked down (MarkDown): anything there (a
// client session too) is taken for gone until the mark ends.
func (c *Components[S]) AddressDown(address string) bool {
	d := c.down.Load()
	if d == nil {
		return false
	}
	t, ok := (*d)[address]
	return ok && time.Now().Before(t)
}

// IsDown reports whether conn is at an address marked down (MarkDown): one picked just
// before the mark must not be used after it.
func (c *Components[S]) IsDown(conn *Conn[S]) bool {
	d := c.down.Load()
	if d == nil || conn.IsLocal() {
		return false
	}
	t, ok := (*d)[conn.PID.Address]
	return ok && time.Now().Before(t)
}

// usable returns cs's connections that are neither at an address marked down nor
// withdrawn nor stalled (cs's own slice when none is).
func (c *Components[S]) usable(cs *connSet[S]) []*Conn[S] {
	d, w, st := c.down.Load(), c.withdrawn.Load(), c.stalled.Load()
	if d == nil && w == nil && st == nil {
		return cs.conns
	}
	now := time.Now()
	isDown := func(k *Conn[S]) bool {
		if d == nil || k.IsLocal() {
			return false
		}
		t, ok := (*d)[k.PID.Address]
		return ok && now.Before(t)
	}
	up := keep(cs.conns, func(k *Conn[S]) bool {
		return !isDown(k) && (w == nil || !(*w)[k.Key]) && (st == nil || !(*st)[k.Key])
	})
	if len(up) == 0 && (w != nil || st != nil) {
		// Only withdrawn or stalled ones are left: they may still answer (until their
		// node stops, or when it wakes up), which is better than refusing now.
		up = keep(cs.conns, func(k *Conn[S]) bool { return !isDown(k) })
	}
	return up
}

// keep returns the connections ok keeps: conns itself when it keeps them all.
func keep[S Local](conns []*Conn[S], ok func(*Conn[S]) bool) []*Conn[S] {
	var out []*Conn[S]
	for i, k := range conns {
		if !ok(k) {
			if out == nil {
				out = append(make([]*Conn[S], 0, len(conns)), conns[:i]...)
			}
			continue
		}
		if out != nil {
			out = append(out, k)
		}
	}
	if out == nil {
		return conns
	}
	return out
}

// connSet is every connection of one domain; copy-on-write.
type connSet[S Local] struct {
	conns []*Conn[S]
	next  atomic.Uint64
}

// NewComponents makes an empty directory of components.
func NewComponents[S Local]() *Components[S] { return &Components[S]{seed: maphash.MakeSeed()} }

func (c *Components[S]) current() map[string]*connSet[S] {
	if m := c.m.Load(); m != nil {
		return *m
	}
	return nil
}

// set replaces domain's set (nil: removes it); c.mu held.
func (c *Components[S]) set(domain string, cs *connSet[S]) {
	next := maps.Clone(c.current())
	if next == nil {
		next = make(map[string]*connSet[S])
	}
	if cs == nil {
		delete(next, domain)
	} else {
		next[domain] = cs
	}
	c.m.Store(&next)
}

// Add enters a connection of domain.
func (c *Components[S]) Add(domain string, conn *Conn[S]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.current()[domain]
	cs := &connSet[S]{}
	if old != nil {
		cs.conns = append(cs.conns, old.conns...)
		cs.next.Store(old.next.Load())
	}
	cs.conns = append(cs.conns, conn)
	c.set(domain, cs)
}

// Remove drops domain's connection with this key; false if it was not there.
func (c *Components[S]) Remove(domain, key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forget(key)
	old := c.current()[domain]
	if old == nil {
		return false
	}
	cs := &connSet[S]{}
	cs.next.Store(old.next.Load())
	found := false
	for _, o := range old.conns {
		if o.Key == key {
			found = true
			o.passed.Or(connRemoved)
			continue
		}
		cs.conns = append(cs.conns, o)
	}
	if len(cs.conns) == 0 {
		cs = nil
	}
	c.set(domain, cs)
	return found
}

// Pick chooses one connection of domain, on any node, by a balancing policy named in
// config: round-robin (also for an unknown policy), least-pending (pending tells how many
// IQs wait on a connection, by key), or sender (by the sender's bare JID).
func (c *Components[S]) Pick(domain, policy, sender string, pending func(key string) int64) (*Conn[S], bool) {
	cs := c.current()[domain]
	if cs == nil || len(cs.conns) == 0 {
		return nil, false
	}
	conns := c.usable(cs)
	n := uint64(len(conns))
	switch {
	case n == 0:
		return nil, false
	case n == 1:
		return conns[0], true
	}
	switch policy {
	case config.BalanceLeastPending:
		best := conns[cs.next.Add(1)%n] // rotate the tie-break
		bestN := pending(best.Key)
		for _, k := range conns {
			if p := pending(k.Key); p < bestN {
				best, bestN = k, p
			}
		}
		return best, true
	case config.BalanceSender:
		return conns[maphash.String(c.seed, sender)%n], true
	default:
		return conns[cs.next.Add(1)%n], true
	}
}

// Locals returns domain's connections on this node.
func (c *Components[S]) Locals(domain string) []S {
	var out []S
	if cs := c.current()[domain]; cs != nil {
		for _, k := range cs.conns {
			if k.IsLocal() {
				out = append(out, k.Local)
			}
		}
	}
	return out
}

// AllLocals returns every connection on this node, of every domain.
func (c *Components[S]) AllLocals() []S {
	var out []S
	for _, cs := range c.current() {
		for _, k := range cs.conns {
			if k.IsLocal() {
				out = append(out, k.Local)
			}
		}
	}
	return out
}

// ConnInfo is one connection as the directory lists it (Snapshot).
type ConnInfo struct {
	Domain    string `json:"domain"`
	Key       string `json:"key"`
	Full      string `json:"full,omitempty"`
	Local     bool   `json:"local"`
	Address   string `json:"address,omitempty"` // a remote one's node remoting address
	Withdrawn bool   `json:"withdrawn,omitempty"`
	Stalled   bool   `json:"stalled,omitempty"`
	Down      bool   `json:"down,omitempty"`
}

// Snapshot lists every connection, sorted by domain and key (the admin API's view).
func (c *Components[S]) Snapshot() []ConnInfo {
	d, w, st := c.down.Load(), c.withdrawn.Load(), c.stalled.Load()
	now := time.Now()
	var out []ConnInfo
	for domain, cs := range c.current() {
		for _, k := range cs.conns {
			i := ConnInfo{Domain: domain, Key: k.Key, Full: k.Full, Local: k.IsLocal()}
			if !i.Local && k.PID != nil {
				i.Address = k.PID.Address
				if d != nil {
					t, ok := (*d)[i.Address]
					i.Down = ok && now.Before(t)
				}
			}
			i.Withdrawn = w != nil && (*w)[k.Key]
			i.Stalled = st != nil && (*st)[k.Key]
			out = append(out, i)
		}
	}
	slices.SortFunc(out, func(a, b ConnInfo) int {
		return cmp.Or(strings.Compare(a.Domain, b.Domain), strings.Compare(a.Key, b.Key))
	})
	return out
}
