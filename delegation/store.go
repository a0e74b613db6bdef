package delegation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/internal/etcdx"
)

// ErrNotFound is returned by Store.Remove when etcd holds no rule for the namespace.
var ErrNotFound = errors.New("no such delegation in etcd")

// Store reads and writes the dynamic delegation rules in etcd, one key per host and
// namespace: <prefix>/delegations/<host>/<url.PathEscape(namespace)> → Rule as JSON.
// It holds no state besides the client.
type Store struct {
	cli    *clientv3.Client
	prefix string // "<prefix>/delegations/"
}

// NewStore returns a Store for the delegations under prefix (e.g. "/switchboard").
func NewStore(cli *clientv3.Client, prefix string) *Store {
	return &Store{cli: cli, prefix: strings.TrimRight(prefix, "/") + "/delegations/"}
}

// Prefix is the key prefix of every delegation ("<prefix>/delegations/"), to watch.
func (s *Store) Prefix() string { return s.prefix }

// Key is the etcd key of host's rule for ns.
func (s *Store) Key(host, ns string) string {
	return s.prefix + host + "/" + url.PathEscape(ns)
}

// ParseKey splits a key under Prefix into host and namespace. Only the spelling Key
// produces is accepted (lowercase host, canonical escaping), so that one namespace
// cannot hide behind two keys that Remove would not both find.
func (s *Store) ParseKey(key []byte) (host, ns string, err error) {
	rest, ok := strings.CutPrefix(string(key), s.prefix)
	if !ok {
		return "", "", fmt.Errorf("key %q is not under %s", key, s.prefix)
	}
	host, esc, ok := strings.Cut(rest, "/")
	if !ok || host == "" || esc == "" || strings.Contains(esc, "/") {
		return "", "", fmt.Errorf("key %q is not %s<host>/<escaped namespace>", key, s.prefix)
	}
	if host != strings.ToLower(host) {
		return "", "", fmt.Errorf("key %q: host %q is not lowercase", key, host)
	}
	ns, err = url.PathUnescape(esc)
	if err != nil {
		return "", "", fmt.Errorf("key %q: bad namespace escape: %w", key, err)
	}
	if url.PathEscape(ns) != esc {
		return "", "", fmt.Errorf("key %q: namespace not escaped as url.PathEscape does (want %q)", key, url.PathEscape(ns))
	}
	return host, ns, nil
}

// Decode reads one stored entry: its host, namespace and rule (Source SourceEtcd), or
// why the entry is unusable (bad key, bad JSON, a rule Validate refuses).
func (s *Store) Decode(key, value []byte) (host, ns string, r Rule, err error) {
	host, ns, err = s.ParseKey(key)
	if err != nil {
		return "", "", Rule{}, err
	}
	if err := json.Unmarshal(value, &r); err != nil {
		return host, ns, Rule{}, fmt.Errorf("key %q: bad value: %w", key, err)
	}
	r.JID = strings.ToLower(strings.TrimSpace(r.JID))
	if err := Validate(ns, r); err != nil {
		return host, ns, Rule{}, fmt.Errorf("key %q: %w", key, err)
	}
	r.Namespace, r.Source = ns, SourceEtcd
	return host, ns, r, nil
}

func normalizeHost(host string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(host))
	if h == "" || strings.Contains(h, "/") {
		return "", fmt.Errorf("bad host %q", host)
	}
	return h, nil
}

// Set stores host's rule for ns, replacing any previous one. The rule is validated
// first: delegating the delegation namespace itself fails with ErrForbiddenNamespace.
// host and the rule's JID are lowercased.
func (s *Store) Set(ctx context.Context, host, ns string, r Rule) error {
	h, err := normalizeHost(host)
	if err != nil {
		return fmt.Errorf("delegation: set: %w", err)
	}
	r.JID = strings.ToLower(strings.TrimSpace(r.JID))
	if err := Validate(ns, r); err != nil {
		return fmt.Errorf("delegation: set %s of %s: %w", ns, h, err)
	}
	b, err := json.Marshal(Rule{JID: r.JID, Filtering: r.Filtering})
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, s.Key(h, ns), string(b)); err != nil {
		return fmt.Errorf("delegation: set %s of %s: %w", ns, h, err)
	}
	return nil
}

// Remove deletes host's rule for ns; ErrNotFound if etcd has none.
func (s *Store) Remove(ctx context.Context, host, ns string) error {
	h, err := normalizeHost(host)
	if err != nil {
		return fmt.Errorf("delegation: remove: %w", err)
	}
	if ns == "" {
		return errors.New("delegation: remove: empty namespace")
	}
	resp, err := s.cli.Delete(ctx, s.Key(h, ns))
	if err != nil {
		return fmt.Errorf("delegation: remove %s of %s: %w", ns, h, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("delegation: remove %s of %s: %w", ns, h, ErrNotFound)
	}
	return nil
}

// Snapshot is every rule in etcd at one revision.
type Snapshot struct {
	// Rules maps host → namespace → rule (Source SourceEtcd, Namespace set).
	Rules map[string]map[string]Rule
	// Invalid are the entries that were skipped, each error naming its key.
	Invalid []error
	// Revision is the etcd revision of the read; watch from Revision+1.
	Revision int64
}

// Load reads every rule, skipping (and reporting in Invalid) unusable entries.
func (s *Store) Load(ctx context.Context) (*Snapshot, error) {
	snap := &Snapshot{Rules: map[string]map[string]Rule{}}
	rev, err := etcdx.Range(ctx, s.cli, s.prefix, func(kv *mvccpb.KeyValue) {
		host, ns, r, err := s.Decode(kv.Key, kv.Value)
		if err != nil {
			snap.Invalid = append(snap.Invalid, err)
			return
		}
		if snap.Rules[host] == nil {
			snap.Rules[host] = map[string]Rule{}
		}
		snap.Rules[host][ns] = r
	})
	if err != nil {
		return nil, fmt.Errorf("delegation: load %s: %w", s.prefix, err)
	}
	snap.Revision = rev
	return snap, nil
}

// List returns every valid rule (host → namespace → rule) and the revision of the
// read. Unusable entries are left out; Load reports them.
func (s *Store) List(ctx context.Context) (rules map[string]map[string]Rule, rev int64, err error) {
	snap, err := s.Load(ctx)
	if err != nil {
		return nil, 0, err
	}
	return snap.Rules, snap.Revision, nil
}
