package privileges

import (
	"context"
	"errors"
	"log/slog"
	"maps"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/etcdx"
)

// Watcher follows the privileges in etcd and hands the whole set (host → component →
// privileges) to onChange at start and after every change. While etcd is unreachable
// nothing is reported and the consumer keeps what it has; once etcd is back the set is
// read again and reported whole.
type Watcher struct {
	store    *Store
	log      *slog.Logger
	onChange func(map[string]map[string]config.Privileges)

	// cur is the view of etcd, touched only by Start and then by the watch goroutine
	// (which Start starts after its own use), so it needs no lock.
	cur map[string]map[string]config.Privileges

	loop etcdx.Loop // the watch, between Start and Stop
}

// NewWatcher returns a Watcher over s. onChange gets a map of its own every time (it
// may keep it); calls never overlap. log may be nil.
func NewWatcher(s *Store, log *slog.Logger, onChange func(map[string]map[string]config.Privileges)) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{store: s, log: log.With("component", "privileges"), onChange: onChange}
}

// Start reads every entry (an error if etcd cannot be read within ctx: the node must
// not start on a partial view), calls onChange with them, and then follows changes
// until Stop. ctx bounds the initial read only.
func (w *Watcher) Start(ctx context.Context) error {
	if w.loop.Running() {
		return errors.New("privileges: watcher already started")
	}
	m, rev, invalid, err := w.store.List(ctx)
	if err != nil {
		return err
	}
	w.warn(invalid)
	w.cur = m
	w.notify()
	return w.loop.Go(ctx, func(ctx context.Context) { w.run(ctx, rev) })
}

// Stop ends the watch and waits for it; no onChange call runs after it returns.
func (w *Watcher) Stop(ctx context.Context) error { return w.loop.Stop(ctx) }

func (w *Watcher) run(ctx context.Context, rev int64) {
	etcdx.WatchPrefix(ctx, w.store.cli, w.store.Prefix(), rev, "privileges", w.log, w.apply,
		func(ctx context.Context) (int64, error) {
			m, rev, invalid, err := w.store.List(ctx)
			if err != nil {
				return 0, err
			}
			w.warn(invalid)
			w.cur = m
			w.notify()
			return rev, nil
		})
}

// apply updates the view from one batch of events and reports the result.
func (w *Watcher) apply(events []*clientv3.Event) {
	for _, ev := range events {
		var (
			host, comp string
			p          config.Privileges
			err        error
		)
		if ev.Type == clientv3.EventTypePut {
			host, comp, p, err = w.store.Decode(ev.Kv.Key, ev.Kv.Value)
		} else {
			host, comp, err = w.store.ParseKey(ev.Kv.Key)
		}
		if host == "" {
			// A key in no usable shape: never in the view, nothing to remove.
			if ev.Type == clientv3.EventTypePut {
				w.warn([]error{err})
			}
			continue
		}
		if ev.Type == clientv3.EventTypePut && err == nil {
			if w.cur[host] == nil {
				w.cur[host] = map[string]config.Privileges{}
			}
			w.cur[host][comp] = p
			continue
		}
		// An entry that became unusable counts as absent, as a reload would see it.
		if err != nil {
			w.warn([]error{err})
		}
		delete(w.cur[host], comp)
		if len(w.cur[host]) == 0 {
			delete(w.cur, host)
		}
	}
	w.notify()
}

func (w *Watcher) warn(invalid []error) {
	for _, err := range invalid {
		w.log.Warn("ignoring privileges in etcd", "err", err)
	}
}

// notify hands a deep copy of the view to onChange, so that the consumer never shares
// a map with the watch.
func (w *Watcher) notify() {
	if w.onChange == nil {
		return
	}
	out := make(map[string]map[string]config.Privileges, len(w.cur))
	for host, comps := range w.cur {
		c := make(map[string]config.Privileges, len(comps))
		for comp, p := range comps {
			p.IQ = maps.Clone(p.IQ)
			c[comp] = p
		}
		out[host] = c
	}
	w.onChange(out)
}
