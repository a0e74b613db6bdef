// Package privileges keeps the XEP-0356 privileges of components that are stored in
// etcd, per host and component, and follows their changes at runtime. An entry there
// replaces, for that host, the privileges the config file gives the component.
package privileges

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/etcdx"
)

// ErrNotFound is returned by Store.Remove when etcd holds no entry for the host and
// component.
var ErrNotFound = errors.New("no such privileges in etcd")

// ErrInvalid marks privileges, hosts or components that can't be stored.
var ErrInvalid = errors.New("invalid privileges")

// Store reads and writes the privileges in etcd, one key per host and component:
// <prefix>/privileges/<host>/<component> → config.Privileges as JSON. It holds no
// state besides the client.
type Store struct {
	cli    *clientv3.Client
	prefix string // "<prefix>/privileges/"
}

// NewStore returns a Store for the privileges under prefix (e.g. "/switchboard").
func NewStore(cli *clientv3.Client, prefix string) *Store {
	return &Store{cli: cli, prefix: strings.TrimRight(prefix, "/") + "/privileges/"}
}

// Prefix is the key prefix of every entry ("<prefix>/privileges/"), to watch.
func (s *Store) Prefix() string { return s.prefix }

// Key is the etcd key of component's privileges on host (both already normalized).
func (s *Store) Key(host, component string) string {
	return s.prefix + host + "/" + component
}

// NormalizeHostComponent is NormalizeDomain of both parts of an entry's key.
func NormalizeHostComponent(host, component string) (string, string, error) {
	h, err := NormalizeDomain("host", host)
	if err != nil {
		return "", "", err
	}
	c, err := NormalizeDomain("component", component)
	if err != nil {
		return "", "", err
	}
	return h, c, nil
}

// NormalizeDomain returns the canonical form of a host or component name: lowercased
// and as RFC 7622 prepares a domainpart. A local or resource part is refused, as is
// anything that is not a JID.
func NormalizeDomain(what, s string) (string, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	if in == "" {
		return "", fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	j, err := jid.Parse(in)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q is not a JID: %v", ErrInvalid, what, s, err)
	}
	if j.Localpart() != "" || j.Resourcepart() != "" {
		return "", fmt.Errorf("%w: %s %q must be a domain (no local or resource part)", ErrInvalid, what, s)
	}
	if j.Domainpart() == "" {
		return "", fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	return strings.ToLower(j.Domainpart()), nil
}

// Validate checks p as config.ValidatePrivileges does, as one error listing every
// problem (nil if there is none).
func Validate(p config.Privileges) error {
	probs := config.ValidatePrivileges(p)
	if len(probs) == 0 {
		return nil
	}
	msgs := make([]string, len(probs))
	for i, pr := range probs {
		msgs[i] = pr.Key + ": " + pr.Problem
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(msgs, "; "))
}

// ParseKey splits a key under Prefix into host and component. Only the spelling Key
// produces from normalized names is accepted, so that one entry cannot hide behind
// two keys that Remove would not both find.
func (s *Store) ParseKey(key []byte) (host, component string, err error) {
	rest, ok := strings.CutPrefix(string(key), s.prefix)
	if !ok {
		return "", "", fmt.Errorf("key %q is not under %s", key, s.prefix)
	}
	h, c, ok := strings.Cut(rest, "/")
	if !ok || h == "" || c == "" || strings.Contains(c, "/") {
		return "", "", fmt.Errorf("key %q is not %s<host>/<component>", key, s.prefix)
	}
	if host, err = NormalizeDomain("host", h); err != nil {
		return "", "", fmt.Errorf("key %q: %w", key, err)
	}
	if component, err = NormalizeDomain("component", c); err != nil {
		return "", "", fmt.Errorf("key %q: %w", key, err)
	}
	if host != h || component != c {
		return "", "", fmt.Errorf("key %q is not in canonical form (want %q)", key, s.Key(host, component))
	}
	return host, component, nil
}

// Decode reads one stored entry: its host, component and privileges, or why it is
// unusable (bad key, bad JSON, unknown fields, privileges Validate refuses).
func (s *Store) Decode(key, value []byte) (host, component string, p config.Privileges, err error) {
	host, component, err = s.ParseKey(key)
	if err != nil {
		return "", "", config.Privileges{}, err
	}
	if v := bytes.TrimSpace(value); len(v) == 0 || v[0] != '{' {
		return host, component, config.Privileges{}, fmt.Errorf("key %q: bad value: not a JSON object", key)
	}
	// A misspelt field would otherwise silently grant nothing.
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return host, component, config.Privileges{}, fmt.Errorf("key %q: bad value: %w", key, err)
	}
	if dec.More() {
		return host, component, config.Privileges{}, fmt.Errorf("key %q: bad value: data after the JSON object", key)
	}
	if err := Validate(p); err != nil {
		return host, component, config.Privileges{}, fmt.Errorf("key %q: %w", key, err)
	}
	return host, component, p, nil
}

// Set stores the privileges of component on host, replacing any previous entry (the
// whole set: a privilege left out is not granted there). host and component are
// normalized first.
func (s *Store) Set(ctx context.Context, host, component string, p config.Privileges) error {
	h, c, err := NormalizeHostComponent(host, component)
	if err != nil {
		return fmt.Errorf("privileges: set: %w", err)
	}
	key := s.Key(h, c)
	if err := Validate(p); err != nil {
		return fmt.Errorf("privileges: set %s: %w", key, err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, key, string(b)); err != nil {
		return fmt.Errorf("privileges: set %s: %w", key, err)
	}
	return nil
}

// Remove deletes the privileges of component on host; ErrNotFound if etcd has none.
func (s *Store) Remove(ctx context.Context, host, component string) error {
	h, c, err := NormalizeHostComponent(host, component)
	if err != nil {
		return fmt.Errorf("privileges: remove: %w", err)
	}
	resp, err := s.cli.Delete(ctx, s.Key(h, c))
	if err != nil {
		return fmt.Errorf("privileges: remove %s: %w", s.Key(h, c), err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("privileges: remove %s of %s: %w", c, h, ErrNotFound)
	}
	return nil
}

// List reads every entry: host → component → privileges, the revision of the read
// (watch from rev+1), and the entries left out because they are unusable, each error
// naming its key.
func (s *Store) List(ctx context.Context) (m map[string]map[string]config.Privileges, rev int64, invalid []error, err error) {
	m = map[string]map[string]config.Privileges{}
	rev, err = etcdx.Range(ctx, s.cli, s.prefix, func(kv *mvccpb.KeyValue) {
		host, comp, p, err := s.Decode(kv.Key, kv.Value)
		if err != nil {
			invalid = append(invalid, err)
			return
		}
		if m[host] == nil {
			m[host] = map[string]config.Privileges{}
		}
		m[host][comp] = p
	})
	if err != nil {
		return nil, 0, nil, fmt.Errorf("privileges: list %s: %w", s.prefix, err)
	}
	return m, rev, invalid, nil
}
