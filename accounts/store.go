package accounts

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Store reads and writes accounts in etcd. It holds no state besides the client.
type Store struct {
	cli    *clientv3.Client
	prefix string // "<prefix>/accounts/"
}

// New returns a Store for the accounts under prefix (e.g. "/switchboard").
func New(cli *clientv3.Client, prefix string) *Store {
	return &Store{cli: cli, prefix: strings.TrimRight(prefix, "/") + "/accounts/"}
}

func (s *Store) hostPrefix(host string) string { return s.prefix + host + "/" }

func (s *Store) key(host, localpart string) string { return s.prefix + host + "/" + localpart }

// parseKey splits a key under s.prefix into host and localpart. Neither may contain a
// slash (RFC 7622 forbids '/' in localparts and domainparts).
func (s *Store) parseKey(key []byte) (host, localpart string, ok bool) {
	rest, found := strings.CutPrefix(string(key), s.prefix)
	if !found {
		return "", "", false
	}
	host, localpart, found = strings.Cut(rest, "/")
	if !found || host == "" || localpart == "" || strings.Contains(localpart, "/") {
		return "", "", false
	}
	return host, localpart, true
}

func encode(password string, iterations int) (string, error) {
	creds, err := NewCredentials(password, iterations)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(record{SCRAM: creds})
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func decode(host, localpart string, value []byte) (*Account, error) {
	var r record
	if err := json.Unmarshal(value, &r); err != nil {
		return nil, fmt.Errorf("accounts: %s@%s: bad stored value: %w", localpart, host, err)
	}
	return &Account{Host: host, Localpart: localpart, SCRAM: r.SCRAM}, nil
}

// Add creates an account; ErrExists if it is already there.
func (s *Store) Add(ctx context.Context, host, localpart, password string, iterations int) error {
	host, localpart, err := normalize(host, localpart)
	if err != nil {
		return err
	}
	val, err := encode(password, iterations)
	if err != nil {
		return err
	}
	k := s.key(host, localpart)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, val)).
		Commit()
	if err != nil {
		return fmt.Errorf("accounts: add %s@%s: %w", localpart, host, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("accounts: add %s@%s: %w", localpart, host, ErrExists)
	}
	return nil
}

// Set replaces the password of an existing account; ErrNotFound if there is none (so a
// mistyped name does not create an account).
func (s *Store) Set(ctx context.Context, host, localpart, password string, iterations int) error {
	host, localpart, err := normalize(host, localpart)
	if err != nil {
		return err
	}
	val, err := encode(password, iterations)
	if err != nil {
		return err
	}
	k := s.key(host, localpart)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), ">", 0)).
		Then(clientv3.OpPut(k, val)).
		Commit()
	if err != nil {
		return fmt.Errorf("accounts: set %s@%s: %w", localpart, host, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("accounts: set %s@%s: %w", localpart, host, ErrNotFound)
	}
	return nil
}

// Remove deletes an account; ErrNotFound if there is none.
func (s *Store) Remove(ctx context.Context, host, localpart string) error {
	host, localpart, err := normalize(host, localpart)
	if err != nil {
		return err
	}
	resp, err := s.cli.Delete(ctx, s.key(host, localpart))
	if err != nil {
		return fmt.Errorf("accounts: remove %s@%s: %w", localpart, host, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("accounts: remove %s@%s: %w", localpart, host, ErrNotFound)
	}
	return nil
}

// List returns the localparts of host's accounts, sorted.
func (s *Store) List(ctx context.Context, host string) ([]string, error) {
	host, err := normalizeHost(host)
	if err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, s.hostPrefix(host), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("accounts: list %s: %w", host, err)
	}
	users := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if h, l, ok := s.parseKey(kv.Key); ok && h == host {
			users = append(users, l)
		}
	}
	sort.Strings(users)
	return users, nil
}

// Get reads one account; ErrNotFound if there is none.
func (s *Store) Get(ctx context.Context, host, localpart string) (*Account, error) {
	host, localpart, err := normalize(host, localpart)
	if err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, s.key(host, localpart))
	if err != nil {
		return nil, fmt.Errorf("accounts: get %s@%s: %w", localpart, host, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("accounts: get %s@%s: %w", localpart, host, ErrNotFound)
	}
	return decode(host, localpart, resp.Kvs[0].Value)
}
