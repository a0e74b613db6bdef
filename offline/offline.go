// Package offline keeps the messages sent to users while none of their resources is
// available (XEP-0160), in etcd: one key per user, `<prefix>/offline/<host>/<localpart>`,
// whose value is the JSON list of stored messages, oldest first. Writes are
// compare-and-swap transactions, as rosters' are, and each user's list is bounded by a
// count and a size in bytes (limits.offline_max_messages, limits.offline_max_bytes).
package offline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Msg is one stored message: the stanza as it would have been delivered, and when it
// was stored.
type Msg struct {
	Stanza []byte    `json:"s"`
	Stamp  time.Time `json:"t"`
}

type list struct {
	Msgs []Msg `json:"msgs"`
}

// ErrFull is returned when a message would take a user's list past its bounds.
var ErrFull = errors.New("offline: the user's offline storage is full")

// Store reads and writes the lists in etcd.
type Store struct {
	cli      *clientv3.Client
	prefix   string // "<prefix>/offline/"
	maxMsgs  atomic.Int64
	maxBytes atomic.Int64
}

// New returns a Store for the lists under prefix (e.g. "/switchboard").
func New(cli *clientv3.Client, prefix string, maxMsgs, maxBytes int) *Store {
	s := &Store{cli: cli, prefix: strings.TrimRight(prefix, "/") + "/offline/"}
	s.SetLimits(maxMsgs, maxBytes)
	return s
}

// SetLimits changes the bounds of every list (a config reload). Lists already longer
// keep their messages but take no more.
func (s *Store) SetLimits(maxMsgs, maxBytes int) {
	s.maxMsgs.Store(int64(maxMsgs))
	s.maxBytes.Store(int64(maxBytes))
}

// Enabled reports whether anything may be stored (both bounds above 0).
func (s *Store) Enabled() bool { return s.maxMsgs.Load() > 0 && s.maxBytes.Load() > 0 }

func (s *Store) key(host, localpart string) string { return s.prefix + host + "/" + localpart }

func (s *Store) get(ctx context.Context, k string) (*list, int64, error) {
	resp, err := s.cli.Get(ctx, k)
	if err != nil {
		return nil, 0, fmt.Errorf("offline: get %s: %w", k, err)
	}
	if len(resp.Kvs) == 0 {
		return &list{}, 0, nil
	}
	var l list
	if err := json.Unmarshal(resp.Kvs[0].Value, &l); err != nil {
		return nil, 0, fmt.Errorf("offline: %s: bad stored value: %w", k, err)
	}
	return &l, resp.Kvs[0].ModRevision, nil
}

// Append stores a message at the end of the user's list, or returns ErrFull.
func (s *Store) Append(ctx context.Context, host, localpart string, stanza []byte, stamp time.Time) error {
	k := s.key(host, localpart)
	for {
		l, rev, err := s.get(ctx, k)
		if err != nil {
			return err
		}
		size := len(stanza)
		for _, m := range l.Msgs {
			size += len(m.Stanza)
		}
		if int64(len(l.Msgs)+1) > s.maxMsgs.Load() || int64(size) > s.maxBytes.Load() {
			return ErrFull
		}
		l.Msgs = append(l.Msgs, Msg{Stanza: stanza, Stamp: stamp.UTC()})
		val, err := json.Marshal(l)
		if err != nil {
			return err
		}
		cmp := clientv3.Compare(clientv3.ModRevision(k), "=", rev)
		if rev == 0 {
			cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
		}
		resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(k, string(val))).Commit()
		if err != nil {
			return fmt.Errorf("offline: append %s: %w", k, err)
		}
		if resp.Succeeded {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Take removes and returns the user's whole list, oldest first (nil: none). Of two
// takers at once, one gets the list and the other nothing.
func (s *Store) Take(ctx context.Context, host, localpart string) ([]Msg, error) {
	k := s.key(host, localpart)
	for {
		l, rev, err := s.get(ctx, k)
		if err != nil || rev == 0 {
			return nil, err
		}
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpDelete(k)).Commit()
		if err != nil {
			return nil, fmt.Errorf("offline: take %s: %w", k, err)
		}
		if resp.Succeeded {
			return l.Msgs, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}
