package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/internal/etcdx"
)

type userKey struct{ host, local string }

// Cache is an in-memory copy of every account under the store's prefix, loaded once and
// then kept current by an etcd watch, so that logins and "does this user exist" checks
// never wait for etcd. A miss is authoritative: nothing falls back to etcd, so unknown
// names cannot be used to load etcd. After Store.Add an account becomes visible here as
// soon as the watch delivers the event (normally milliseconds).
//
// When the watch fails (etcd unreachable long enough for the stream to break, no
// leader, history compacted) the cache keeps serving what it has, reloads everything
// with backoff and watches again from the reloaded revision.
type Cache struct {
	store *Store
	log   *slog.Logger

	// fakeKey makes the fake SCRAM salts of unknown users stable for this process but
	// unpredictable from outside.
	fakeKey []byte
	// fakeIters follows the iteration count of real accounts so fake ones look alike.
	fakeIters atomic.Int64
	// maxIters bounds the PBKDF2 work one login attempt may cost (SetMaxIterations): a
	// stored credential with more iterations is not used (0: no bound).
	maxIters atomic.Int64

	mu       sync.RWMutex
	accounts map[userKey]*Account

	loop etcdx.Loop // the watch, between Start and Stop
}

// NewCache returns a Cache over store; call Start to fill it.
func NewCache(store *Store, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(fmt.Sprintf("accounts: crypto/rand: %v", err)) // crypto/rand does not fail on supported platforms
	}
	c := &Cache{
		store:    store,
		log:      log.With("component", "accounts"),
		fakeKey:  key,
		accounts: map[userKey]*Account{},
	}
	c.fakeIters.Store(DefaultIterations)
	return c
}

// Start loads all accounts (one Get; its error is returned) and then follows changes in
// the background until Stop. ctx bounds the initial load only.
func (c *Cache) Start(ctx context.Context) error {
	if c.loop.Running() {
		return errors.New("accounts: cache already started")
	}
	rev, err := c.load(ctx)
	if err != nil {
		return err
	}
	return c.loop.Go(ctx, func(ctx context.Context) { c.run(ctx, rev) })
}

// Stop ends the watch and waits for it. The cache keeps answering from what it has.
func (c *Cache) Stop(ctx context.Context) error { return c.loop.Stop(ctx) }

// Lookup returns the account, if known. host and localpart are normalized if they are
// not found as given. The returned Account is shared: do not modify it.
func (c *Cache) Lookup(host, localpart string) (*Account, bool) {
	if a, ok := c.get(host, localpart); ok {
		return a, true
	}
	h, l, err := normalize(host, localpart)
	if err != nil || (h == host && l == localpart) {
		return nil, false
	}
	return c.get(h, l)
}

// Exists reports whether the account is known.
func (c *Cache) Exists(host, localpart string) bool {
	_, ok := c.Lookup(host, localpart)
	return ok
}

func (c *Cache) get(host, localpart string) (*Account, bool) {
	c.mu.RLock()
	a, ok := c.accounts[userKey{host, localpart}]
	c.mu.RUnlock()
	return a, ok
}

// Fetcher returns the SCRAM credential lookup for host's users. An unknown user, or one
// without a credential for the mechanism, gets a made-up credential (a salt that is
// stable per user name, a random salted password), so the exchange looks the same as for
// a real user and fails only at the proof, as with Prosody. The authorization identity
// is ignored here; the caller checks it.
func (c *Cache) Fetcher(host string) sasl.SaltedCredentialsFetcher {
	return func(username, _ []byte, mech string) ([]byte, []byte, int64, error) {
		h, name := host, string(username)
		if a, ok := c.Lookup(h, name); ok {
			if cr, ok := a.SCRAM[baseMechanism(mech)]; ok && cr.Iterations > 0 && len(cr.Salt) > 0 && len(cr.SaltedPassword) > 0 {
				if c.tooCostly(a, cr) {
					return c.fake(a.Host, a.Localpart, mech)
				}
				return cr.Salt, cr.SaltedPassword, cr.Iterations, nil
			}
			h, name = a.Host, a.Localpart
		} else if nh, nl, err := normalize(h, name); err == nil {
			// The same salt for every spelling of a name, as a real account would show.
			h, name = nh, nl
		}
		return c.fake(h, name, mech)
	}
}

func (c *Cache) fake(host, localpart, mech string) ([]byte, []byte, int64, error) {
	m := hmac.New(sha256.New, c.fakeKey)
	m.Write([]byte(baseMechanism(mech)))
	m.Write([]byte{0})
	m.Write([]byte(host))
	m.Write([]byte{0})
	m.Write([]byte(localpart))
	salt := m.Sum(nil)[:16]
	size := sha256.Size
	if h := hashFor(mech); h != nil {
		size = h().Size()
	}
	salted := make([]byte, size)
	if _, err := rand.Read(salted); err != nil {
		return nil, nil, 0, err
	}
	iters := c.fakeIters.Load()
	if max := c.maxIters.Load(); max > 0 && iters > max {
		iters = max
	}
	return salt, salted, iters, nil
}

// SetMaxIterations bounds the PBKDF2 iterations of a stored credential that a login may
// use (accounts.max_scram_iterations): etcd is shared state, and a credential stored with
// millions of iterations would make every attempt on it cost seconds of CPU. Such an
// account cannot log in until its password is set again. 0: no bound.
func (c *Cache) SetMaxIterations(n int) { c.maxIters.Store(int64(n)) }

func (c *Cache) tooCostly(a *Account, cr Credential) bool {
	max := c.maxIters.Load()
	if max <= 0 || cr.Iterations <= max {
		return false
	}
	c.log.Warn("a stored credential has more iterations than accounts.max_scram_iterations: not used",
		"user", a.Localpart+"@"+a.Host, "iterations", cr.Iterations, "max", max)
	return true
}

// VerifyPlain checks a plain password (SASL PLAIN) for host's user. An unknown user costs
// the same PBKDF2 run as a real one (on a made-up credential), so the time an answer
// takes does not tell which accounts exist; a credential over the iteration bound fails.
func (c *Cache) VerifyPlain(host, localpart, password string) bool {
	a, ok := c.Lookup(host, localpart)
	if ok {
		for _, m := range mechanisms {
			if cr, ok := a.SCRAM[m.name]; ok && c.tooCostly(a, cr) {
				return false
			}
		}
		return a.VerifyPassword(password)
	}
	salt, salted, iters, err := c.fake(host, localpart, SCRAMSHA256)
	if err == nil {
		fake := &Account{SCRAM: map[string]Credential{SCRAMSHA256: {Salt: salt, Iterations: iters, SaltedPassword: salted}}}
		_ = fake.VerifyPassword(password)
	}
	return false
}

func (c *Cache) noteIterations(a *Account) {
	max := c.maxIters.Load()
	if cr, ok := a.SCRAM[SCRAMSHA256]; ok && cr.Iterations > 0 && (max <= 0 || cr.Iterations <= max) {
		c.fakeIters.Store(cr.Iterations)
	}
}

// load replaces the whole view with a fresh read and returns its revision.
func (c *Cache) load(ctx context.Context) (int64, error) {
	m := make(map[userKey]*Account)
	rev, err := etcdx.Range(ctx, c.store.cli, c.store.prefix, func(kv *mvccpb.KeyValue) {
		host, local, ok := c.store.parseKey(kv.Key)
		if !ok {
			return
		}
		a, err := decode(host, local, kv.Value)
		if err != nil {
			c.log.Warn("skipping unreadable account", "jid", local+"@"+host, "err", err)
			return
		}
		c.noteIterations(a)
		m[userKey{host, local}] = a
	})
	if err != nil {
		return 0, fmt.Errorf("accounts: load %s: %w", c.store.prefix, err)
	}
	c.mu.Lock()
	c.accounts = m
	c.mu.Unlock()
	c.log.Debug("accounts loaded", "count", len(m), "revision", rev)
	return rev, nil
}

func (c *Cache) run(ctx context.Context, rev int64) {
	etcdx.WatchPrefix(ctx, c.store.cli, c.store.prefix, rev, "account", c.log, c.apply, c.load)
}

func (c *Cache) apply(events []*clientv3.Event) {
	for _, ev := range events {
		host, local, ok := c.store.parseKey(ev.Kv.Key)
		if !ok {
			continue
		}
		k := userKey{host, local}
		var a *Account
		if ev.Type == clientv3.EventTypePut {
			var err error
			if a, err = decode(host, local, ev.Kv.Value); err != nil {
				c.log.Warn("ignoring unreadable account", "jid", local+"@"+host, "err", err)
			} else {
				c.noteIterations(a)
			}
		}
		c.mu.Lock()
		if a != nil {
			c.accounts[k] = a
		} else {
			delete(c.accounts, k)
		}
		c.mu.Unlock()
	}
}
