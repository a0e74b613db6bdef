package blocking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrTooMany is returned when a block would take a list past its bounds
// (limits.blocklist_max_items, MaxBytes).
var ErrTooMany = errors.New("blocking: the blocklist is full")

// MaxBytes bounds the stored JIDs of one list, whatever limits.blocklist_max_items says: a
// JID may be 3 KiB, and every node keeps every list in memory.
const MaxBytes = 128 << 10

type stored struct {
	Items []string `json:"items"`
}

// Store reads and writes the lists in etcd. Writes are compare-and-swap transactions: two
// nodes changing one list at once lose nothing. An empty list is no key.
type Store struct {
	cli      *clientv3.Client
	prefix   string // "<prefix>/blocklist/"
	maxItems atomic.Int64
}

// New returns a Store for the lists under prefix (e.g. "/switchboard"); maxItems bounds
// every list.
func New(cli *clientv3.Client, prefix string, maxItems int) *Store {
	s := &Store{cli: cli, prefix: strings.TrimRight(prefix, "/") + "/blocklist/"}
	s.SetMaxItems(maxItems)
	return s
}

// SetMaxItems changes the bound of every list (a config reload). Lists already longer
// keep their items but take no more.
func (s *Store) SetMaxItems(n int) { s.maxItems.Store(int64(n)) }

func (s *Store) key(host, localpart string) string { return s.prefix + host + "/" + localpart }

// parseKey returns the bare JID a key is the list of.
func (s *Store) parseKey(k []byte) (string, bool) {
	rest, ok := strings.CutPrefix(string(k), s.prefix)
	if !ok {
		return "", false
	}
	host, local, ok := strings.Cut(rest, "/")
	if !ok || host == "" || local == "" {
		return "", false
	}
	return local + "@" + host, true
}

func decode(v []byte) ([]string, error) {
	var st stored
	if err := json.Unmarshal(v, &st); err != nil {
		return nil, err
	}
	return st.Items, nil
}

// Get returns the user's list as stored (nil: none) and its revision (0: none).
func (s *Store) Get(ctx context.Context, host, localpart string) ([]string, int64, error) {
	k := s.key(host, localpart)
	resp, err := s.cli.Get(ctx, k)
	if err != nil {
		return nil, 0, fmt.Errorf("blocking: get %s: %w", k, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	items, err := decode(resp.Kvs[0].Value)
	if err != nil {
		return nil, 0, fmt.Errorf("blocking: %s: bad stored value: %w", k, err)
	}
	return items, resp.Kvs[0].ModRevision, nil
}

// Block adds items to the user's list. It returns those that were not there yet and the
// revision at which the list as it is now was written (0: there is none): once a node's
// Cache has applied that revision, it blocks them.
func (s *Store) Block(ctx context.Context, host, localpart string, items []Item) (added []Item, rev int64, err error) {
	rev, err = s.update(ctx, host, localpart, func(l []string) ([]string, error) {
		added = added[:0]
		have := make(map[string]bool, len(l))
		size := 0
		for _, j := range l {
			have[j] = true
			size += len(j)
		}
		for _, it := range items {
			if j := it.String(); !have[j] {
				have[j] = true
				l = append(l, j)
				size += len(j)
				added = append(added, it)
			}
		}
		if len(added) > 0 && (int64(len(l)) > s.maxItems.Load() || size > MaxBytes) {
			return nil, ErrTooMany
		}
		return l, nil
	})
	return added, rev, err
}

// Unblock removes items from the user's list (none: all of them). It returns those that
// were there and the revision as Block does.
func (s *Store) Unblock(ctx context.Context, host, localpart string, items []Item) (removed []Item, rev int64, err error) {
	rev, err = s.update(ctx, host, localpart, func(l []string) ([]string, error) {
		removed = removed[:0]
		drop := make(map[string]bool, len(items))
		for _, it := range items {
			drop[it.String()] = true
		}
		kept := l[:0:0]
		for _, j := range l {
			if len(items) == 0 || drop[j] {
				if it, err := ParseItem(j); err == nil {
					removed = append(removed, it)
				}
				continue
			}
			kept = append(kept, j)
		}
		return kept, nil
	})
	return removed, rev, err
}

// update applies fn to the user's list and writes what it returns when that differs in
// length (Block and Unblock only add or only remove), retrying on a concurrent write.
func (s *Store) update(ctx context.Context, host, localpart string, fn func([]string) ([]string, error)) (int64, error) {
	k := s.key(host, localpart)
	for {
		l, before, err := s.Get(ctx, host, localpart)
		if err != nil {
			return 0, err
		}
		n := len(l)
		l, err = fn(l)
		if err != nil {
			return 0, err
		}
		if len(l) == n {
			return before, nil
		}
		cmp := clientv3.Compare(clientv3.ModRevision(k), "=", before)
		if before == 0 {
			cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
		}
		op := clientv3.OpDelete(k)
		if len(l) > 0 {
			val, err := json.Marshal(stored{Items: l})
			if err != nil {
				return 0, err
			}
			op = clientv3.OpPut(k, string(val))
		}
		resp, err := s.cli.Txn(ctx).If(cmp).Then(op).Commit()
		if err != nil {
			return 0, fmt.Errorf("blocking: update %s: %w", k, err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}
