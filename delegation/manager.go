package delegation

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/switchboard-im/switchboard/internal/etcdx"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Change is a change of one host's effective rules.
type Change struct {
	Host string
	// Old is the table before the change (nil if the host was not served), New the
	// one after (nil if the host is no longer served).
	Old, New *Table
	// Affected are the managing entities whose delegations differ (Affected(Old, New)):
	// they need a fresh advertisement.
	Affected []string
}

// Manager keeps the effective rule table of every served host: the config layer
// overlaid, per namespace, by the rules in etcd, which it watches. Table is a lock-free
// read for the hot path. While etcd is unreachable the last tables keep serving; once
// it is back, everything is reloaded and the differences are applied and announced.
type Manager struct {
	store *Store
	log   *slog.Logger

	// tables is replaced as a whole (copy on write): host → table, served hosts only.
	tables atomic.Pointer[map[string]*Table]

	// mu serializes changes to the layers and the notifications that follow, so that
	// subscribers see changes one at a time and in order.
	mu     sync.Mutex
	static map[string]map[string]Rule // served host → ns → rule
	etcd   map[string]map[string]Rule // every host in etcd → ns → rule

	subsMu sync.Mutex
	subs   []func(Change)

	loop etcdx.Loop // the watch, between Start and Stop
}

// NewManager returns a Manager over store. static holds the config's rules, host →
// namespace → rule; its keys are the served hosts (a host may map to no rules). Until
// Start, the tables hold the static rules only.
func NewManager(store *Store, static map[string]map[string]Rule, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{store: store, log: log.With("component", "delegation"), etcd: map[string]map[string]Rule{}}
	m.static = m.normalizeStatic(static)
	tables := make(map[string]*Table, len(m.static))
	for host := range m.static {
		tables[host] = m.build(host)
	}
	m.tables.Store(&tables)
	return m
}

// normalizeStatic copies the config layer, marking its rules as config ones and
// dropping (with a warning) rules Validate refuses.
func (m *Manager) normalizeStatic(static map[string]map[string]Rule) map[string]map[string]Rule {
	out := make(map[string]map[string]Rule, len(static))
	for host, rules := range static {
		host = strings.ToLower(host)
		layer := make(map[string]Rule, len(rules))
		for ns, r := range rules {
			r.JID = strings.ToLower(strings.TrimSpace(r.JID))
			if err := Validate(ns, r); err != nil {
				m.log.Warn("ignoring delegation rule from the config", "host", host, "namespace", ns, "err", err)
				continue
			}
			r.Namespace, r.Source = ns, SourceConfig
			r.Filtering = slices.Clone(r.Filtering)
			layer[ns] = r
		}
		out[host] = layer
	}
	return out
}

// build makes host's table from the current layers; etcd wins per namespace.
func (m *Manager) build(host string) *Table {
	return NewTable(host, m.static[host], m.etcd[host])
}

// Start loads the rules from etcd (an error if etcd cannot be read: the node must not
// start on a partial view) and then follows changes until Stop. ctx bounds the initial
// load only. The initial load does not notify subscribers.
func (m *Manager) Start(ctx context.Context) error {
	if m.loop.Running() {
		return errors.New("delegation: manager already started")
	}
	snap, err := m.store.Load(ctx)
	if err != nil {
		return err
	}
	m.apply(snap, false)
	return m.loop.Go(ctx, func(ctx context.Context) { m.run(ctx, snap.Revision) })
}

// Stop ends the watch and waits for it. The tables keep serving what they have.
func (m *Manager) Stop(ctx context.Context) error { return m.loop.Stop(ctx) }

// Table returns host's effective rules: non-nil for a served host, nil otherwise. It
// takes no lock. The Table is immutable; a change swaps in a new one.
func (m *Manager) Table(host string) *Table {
	tables := *m.tables.Load()
	if t, ok := tables[host]; ok {
		return t
	}
	if l := strings.ToLower(host); l != host {
		return tables[l]
	}
	return nil
}

// Hosts returns the served hosts, sorted.
func (m *Manager) Hosts() []string {
	return slices.Sorted(maps.Keys(*m.tables.Load()))
}

// Subscribe registers f to be called with every change of a host's effective rules
// that affects some managing entity. Calls are sequential and in order: on the watch
// goroutine for etcd changes, on SetStatic's caller for config changes, never two at
// once. f must not call SetStatic. Subscribe before Start to miss nothing.
func (m *Manager) Subscribe(f func(Change)) {
	m.subsMu.Lock()
	m.subs = append(m.subs, f)
	m.subsMu.Unlock()
}

// SetStatic replaces the config layer (e.g. after the config file was reloaded); the
// served hosts become static's keys. Tables are recomputed and subscribers notified as
// for an etcd change.
func (m *Manager) SetStatic(static map[string]map[string]Rule) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.static
	m.static = m.normalizeStatic(static)
	hosts := map[string]bool{}
	for h := range old {
		hosts[h] = true
	}
	for h := range m.static {
		hosts[h] = true
	}
	m.recompute(hosts, true)
}

// apply replaces the etcd layer with a full snapshot and recomputes every host.
func (m *Manager) apply(snap *Snapshot, notify bool) {
	for _, err := range snap.Invalid {
		m.log.Warn("ignoring delegation rule in etcd", "err", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for host := range snap.Rules {
		if _, ok := m.static[host]; !ok {
			m.log.Debug("ignoring delegation rules of a host not served here", "host", host)
		}
	}
	m.etcd = snap.Rules
	hosts := map[string]bool{}
	for h := range m.static {
		hosts[h] = true
	}
	m.recompute(hosts, notify)
}

// recompute rebuilds the tables of hosts (m.mu held), swaps them in, and notifies the
// subscribers of every host whose effective rules changed.
func (m *Manager) recompute(hosts map[string]bool, notify bool) {
	cur := *m.tables.Load()
	next := maps.Clone(cur)
	var changes []Change
	for _, host := range slices.Sorted(maps.Keys(hosts)) {
		old := cur[host]
		var nt *Table
		if _, served := m.static[host]; served {
			nt = m.build(host)
			if old != nil && identical(old, nt) {
				continue // keep the pointer: nothing at all changed
			}
			next[host] = nt
		} else {
			if old == nil {
				continue
			}
			delete(next, host)
		}
		// A rule that differs only in its source (an etcd rule equal to the config
		// one) changes nothing for anyone: swap the table in silently.
		if a := Affected(old, nt); len(a) > 0 {
			changes = append(changes, Change{Host: host, Old: old, New: nt, Affected: a})
		}
	}
	m.tables.Store(&next)
	if !notify || len(changes) == 0 {
		return
	}
	m.subsMu.Lock()
	subs := slices.Clone(m.subs)
	m.subsMu.Unlock()
	for _, c := range changes {
		m.log.Info("delegation rules changed", "host", c.Host, "affected", c.Affected)
		for _, f := range subs {
			f(c)
		}
	}
}

// identical reports whether two tables have the same rules, sources included.
func identical(a, b *Table) bool {
	if len(a.rules) != len(b.rules) {
		return false
	}
	for ns, r := range a.rules {
		o, ok := b.rules[ns]
		if !ok || o.Source != r.Source || !sameRule(o, r) {
			return false
		}
	}
	return true
}

func (m *Manager) run(ctx context.Context, rev int64) {
	etcdx.WatchPrefix(ctx, m.store.cli, m.store.Prefix(), rev, "delegation", m.log, m.applyEvents,
		func(ctx context.Context) (int64, error) {
			snap, err := m.store.Load(ctx)
			if err != nil {
				return 0, err
			}
			// Whatever changed while the watch was down is applied and announced.
			m.apply(snap, true)
			return snap.Revision, nil
		})
}

// applyEvents updates the etcd layer from one batch and recomputes the hosts it touched.
func (m *Manager) applyEvents(events []*clientv3.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hosts := map[string]bool{}
	for _, ev := range events {
		var (
			host, ns string
			r        Rule
			err      error
		)
		if ev.Type == clientv3.EventTypePut {
			host, ns, r, err = m.store.Decode(ev.Kv.Key, ev.Kv.Value)
		} else {
			host, ns, err = m.store.ParseKey(ev.Kv.Key)
		}
		if host == "" {
			if ev.Type == clientv3.EventTypePut {
				m.log.Warn("ignoring delegation rule in etcd", "err", err)
			}
			continue
		}
		if _, ok := m.static[host]; !ok {
			m.log.Debug("ignoring delegation rule of a host not served here", "host", host, "namespace", ns)
		}
		layer := m.etcd[host]
		if ev.Type == clientv3.EventTypePut && err == nil {
			if layer == nil {
				layer = map[string]Rule{}
				m.etcd[host] = layer
			}
			layer[ns] = r
		} else {
			// A rule that became unusable counts as absent, as a reload would see it.
			if err != nil {
				m.log.Warn("ignoring delegation rule in etcd", "err", err)
			}
			delete(layer, ns)
			if len(layer) == 0 {
				delete(m.etcd, host)
			}
		}
		hosts[host] = true
	}
	if len(hosts) > 0 {
		m.recompute(hosts, true) // hosts not served here are skipped there
	}
}
