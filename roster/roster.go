// Package roster keeps users' rosters (RFC 6121 §2) in etcd: one key per user,
// `<prefix>/rosters/<host>/<localpart>`, whose value is the JSON list of items. The
// roster version (RFC 6121 §2.6) is the key's etcd mod revision, so it changes with every
// write and is the same on every node. Updates are compare-and-swap transactions: two
// nodes changing one roster at once never lose an item.
package roster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// NS is the roster namespace.
const NS = "jabber:iq:roster"

// Subscription states (RFC 6121 §2.1.2.5); "remove" only appears in pushes and sets.
const (
	SubNone   = "none"
	SubTo     = "to"
	SubFrom   = "from"
	SubBoth   = "both"
	SubRemove = "remove"
)

// Item is one roster entry.
type Item struct {
	JID          string   `json:"jid"`
	Name         string   `json:"name,omitempty"`
	Subscription string   `json:"subscription,omitempty"` // none (empty), to, from, both
	Ask          bool     `json:"ask,omitempty"`          // a subscription request is pending
	Groups       []string `json:"groups,omitempty"`
}

// Roster is a user's roster as stored, with its version.
type Roster struct {
	Items []Item `json:"items"`
	// PendingIn are contacts whose subscription request the user has not answered yet.
	PendingIn []string `json:"pending_in,omitempty"`
	// Ver is the etcd mod revision of the stored roster; 0 when the user has none yet.
	Ver int64 `json:"-"`
}

// Version is the roster version string clients see ("0" for an empty, never-written roster).
func (r *Roster) Version() string { return strconv.FormatInt(r.Ver, 10) }

// Find returns the index of the item for jid, or -1.
func (r *Roster) Find(jid string) int {
	return slices.IndexFunc(r.Items, func(it Item) bool { return it.JID == jid })
}

// ErrTooMany is returned when an update would grow a roster past its limit.
var ErrTooMany = errors.New("roster: too many items")

// Store reads and writes rosters in etcd.
type Store struct {
	cli      *clientv3.Client
	prefix   string // "<prefix>/rosters/"
	maxItems atomic.Int64
	turns    atomic.Pointer[chan struct{}] // requests under way (nil: no bound)
}

// SetMaxRequests bounds how many requests the store may have under way at once (a
// config reload); more wait for a turn, or for their context to end. 0: no bound.
// Requests under way keep the turn they took.
func (s *Store) SetMaxRequests(n int) {
	if n <= 0 {
		s.turns.Store(nil)
		return
	}
	if t := s.turns.Load(); t != nil && cap(*t) == n {
		return
	}
	t := make(chan struct{}, n)
	s.turns.Store(&t)
}

// turn waits for a request's turn and returns its release.
func (s *Store) turn(ctx context.Context) (func(), error) {
	t := s.turns.Load()
	if t == nil {
		return func() {}, nil
	}
	ch := *t
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("roster: waiting for a turn: %w", ctx.Err())
	}
}

// New returns a Store for the rosters under prefix (e.g. "/switchboard"). maxItems
// bounds every roster (0: no bound).
func New(cli *clientv3.Client, prefix string, maxItems int) *Store {
	s := &Store{cli: cli, prefix: strings.TrimRight(prefix, "/") + "/rosters/"}
	s.SetMaxItems(maxItems)
	return s
}

// SetMaxItems changes the bound of every roster (a config reload); 0: no bound. Rosters
// already longer keep their items but cannot grow.
func (s *Store) SetMaxItems(n int) { s.maxItems.Store(int64(n)) }

func (s *Store) key(host, localpart string) string { return s.prefix + host + "/" + localpart }

// Get returns the user's roster (empty, Ver 0, if none was ever stored).
func (s *Store) Get(ctx context.Context, host, localpart string) (*Roster, error) {
	done, err := s.turn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	return s.get(ctx, host, localpart)
}

func (s *Store) get(ctx context.Context, host, localpart string) (*Roster, error) {
	resp, err := s.cli.Get(ctx, s.key(host, localpart))
	if err != nil {
		return nil, fmt.Errorf("roster: get %s@%s: %w", localpart, host, err)
	}
	if len(resp.Kvs) == 0 {
		return &Roster{}, nil
	}
	var r Roster
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return nil, fmt.Errorf("roster: %s@%s: bad stored value: %w", localpart, host, err)
	}
	r.Ver = resp.Kvs[0].ModRevision
	return &r, nil
}

// Update applies fn to the user's roster and stores the result if fn reports a change;
// on a concurrent write it reads again and retries. fn must not keep r. It returns the
// roster as stored (with its new version) and whether anything was written.
func (s *Store) Update(ctx context.Context, host, localpart string, fn func(r *Roster) (changed bool, err error)) (*Roster, bool, error) {
	done, err := s.turn(ctx)
	if err != nil {
		return nil, false, err
	}
	defer done()
	k := s.key(host, localpart)
	for {
		r, err := s.get(ctx, host, localpart)
		if err != nil {
			return nil, false, err
		}
		before, had := r.Ver, len(r.Items)
		changed, err := fn(r)
		if err != nil {
			return nil, false, err
		}
		if !changed {
			return r, false, nil
		}
		if max := s.maxItems.Load(); max > 0 && int64(len(r.Items)) > max && len(r.Items) > had {
			return nil, false, ErrTooMany
		}
		val, err := json.Marshal(r)
		if err != nil {
			return nil, false, err
		}
		var cmp clientv3.Cmp
		if before == 0 {
			cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
		} else {
			cmp = clientv3.Compare(clientv3.ModRevision(k), "=", before)
		}
		var op clientv3.Op
		empty := len(r.Items) == 0 && len(r.PendingIn) == 0
		if empty {
			op = clientv3.OpDelete(k)
		} else {
			op = clientv3.OpPut(k, string(val))
		}
		resp, err := s.cli.Txn(ctx).If(cmp).Then(op).Commit()
		if err != nil {
			return nil, false, fmt.Errorf("roster: update %s@%s: %w", localpart, host, err)
		}
		if resp.Succeeded {
			r.Ver = resp.Header.Revision
			if empty {
				r.Ver = 0
			}
			return r, true, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
	}
}

// Delete drops a user's roster (the account was removed).
func (s *Store) Delete(ctx context.Context, host, localpart string) error {
	if _, err := s.cli.Delete(ctx, s.key(host, localpart)); err != nil {
		return fmt.Errorf("roster: delete %s@%s: %w", localpart, host, err)
	}
	return nil
}

// ErrItemNotFound is returned when a removal names an item the roster does not have.
var ErrItemNotFound = errors.New("item-not-found")

// Apply applies a roster set (RFC 6121 §2.3, §2.5) to r and returns the item to push
// (subscription "remove" for a removal) and the item as it was (for a removal: its
// subscription says what the contact must be told, §2.5.2). An update keeps the item's
// subscription state: only presence subscriptions change it, never a roster set.
func Apply(r *Roster, req Request) (pushed, prev Item, err error) {
	i := r.Find(req.Item.JID)
	if req.Remove {
		if i < 0 {
			return Item{}, Item{}, ErrItemNotFound
		}
		prev = r.Items[i]
		r.Items = slices.Delete(r.Items, i, i+1)
		r.dropPending(req.Item.JID)
		return Item{JID: req.Item.JID, Subscription: SubRemove}, prev, nil
	}
	it := req.Item
	if i < 0 {
		it.Subscription, it.Ask = SubNone, false
		r.Items = append(r.Items, it)
		return it, Item{}, nil
	}
	prev = r.Items[i]
	it.Subscription, it.Ask = prev.Subscription, prev.Ask
	r.Items[i] = it
	return it, prev, nil
}
