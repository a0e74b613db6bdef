package node

import (
	"sync"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/accounts"
)

// authLimit throttles password guessing by address: an address with
// limits.auth_failures_per_ip failed attempts (SASL or component handshake) within
// limits.auth_failure_window can authenticate nothing, with any password, until that
// window has passed since its first failure. Guesses then cost the attacker time, and
// the node no PBKDF2 work, whatever the number of connections (which is capped per
// address too, preauth.go). Like Prosody's mod_limit_auth and ejabberd's mod_fail2ban
// it counts per address, not per account: a per-account lock would let anyone lock a
// user out.
type authLimit struct {
	mu  sync.Mutex
	ips map[string]*authFailures
}

type authFailures struct {
	n     int
	first time.Time
}

// maxTracked bounds the table: past it, windows that have passed are dropped first, and
// if that is not enough the table is emptied (an attacker with that many addresses is
// not slowed by this anyway).
const maxTracked = 1 << 16

func (l *authLimit) blocked(ip string, max int, window time.Duration) bool {
	if max <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.ips[ip]
	if f == nil {
		return false
	}
	if time.Since(f.first) >= window {
		delete(l.ips, ip)
		return false
	}
	return f.n >= max
}

func (l *authLimit) failed(ip string, window time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ips == nil {
		l.ips = make(map[string]*authFailures)
	}
	now := time.Now()
	f := l.ips[ip]
	if f == nil || now.Sub(f.first) >= window {
		if len(l.ips) >= maxTracked {
			for k, v := range l.ips {
				if now.Sub(v.first) >= window {
					delete(l.ips, k)
				}
			}
			if len(l.ips) >= maxTracked {
				clear(l.ips)
			}
		}
		f = &authFailures{first: now}
		l.ips[ip] = f
	}
	f.n++
}

// limitedAuth is the SASL authenticator of one connection: the account cache, refusing
// everything while the connection's address is throttled.
type limitedAuth struct {
	c      *accounts.Cache
	limit  *authLimit
	ip     string
	max    int
	window time.Duration
}

func (a limitedAuth) blocked() bool { return a.limit.blocked(a.ip, a.max, a.window) }

func (a limitedAuth) Fetcher(host string) sasl.SaltedCredentialsFetcher {
	fetch := a.c.Fetcher(host)
	return func(username, authzid []byte, mech string) ([]byte, []byte, int64, error) {
		if a.blocked() {
			return nil, nil, 0, sasl.ErrAuthn
		}
		return fetch(username, authzid, mech)
	}
}

func (a limitedAuth) VerifyPlain(host, local, password string) bool {
	if a.blocked() {
		return false
	}
	return a.c.VerifyPlain(host, local, password)
}
