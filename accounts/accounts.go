// Package accounts stores user accounts in etcd as SCRAM credentials (never the plain
// password) and keeps a watch-updated in-memory view of them for logins.
//
// Key layout: <prefix>/accounts/<host>/<localpart> → JSON
//
//	{"scram":{"SCRAM-SHA-1":{"salt":"<b64>","iterations":4096,"salted_password":"<b64>"},
//	          "SCRAM-SHA-256":{...}}}
//
// host and localpart are stored in their normalized (RFC 7622) form.
package accounts

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"strings"

	"golang.org/x/text/secure/precis"
	"mellium.im/sasl"
	"mellium.im/xmpp/jid"
)

var (
	// ErrExists is returned by Store.Add when the account is already there.
	ErrExists = errors.New("account exists")
	// ErrNotFound is returned when the account is not there.
	ErrNotFound = errors.New("no such account")
	// ErrInvalid wraps every rejection of a user name, host, password or iteration count.
	ErrInvalid = errors.New("invalid account data")
)

// SCRAM mechanism names, as used in the stored JSON and by mellium.im/sasl.
const (
	SCRAMSHA1   = "SCRAM-SHA-1"
	SCRAMSHA256 = "SCRAM-SHA-256"
)

// DefaultIterations is used when 0 iterations are asked for; MinIterations is the
// RFC 7677 minimum.
const (
	DefaultIterations = 4096
	MinIterations     = 4096
)

// mechanisms lists what NewCredentials computes, in order of preference for PLAIN checks.
var mechanisms = []struct {
	name string
	hash func() hash.Hash
}{
	{SCRAMSHA256, sha256.New},
	{SCRAMSHA1, sha1.New},
}

func hashFor(mech string) func() hash.Hash {
	switch baseMechanism(mech) {
	case SCRAMSHA256:
		return sha256.New
	case SCRAMSHA1:
		return sha1.New
	}
	return nil
}

// baseMechanism maps SCRAM-*-PLUS to SCRAM-*: channel binding does not change the
// salted password.
func baseMechanism(mech string) string {
	return strings.TrimSuffix(mech, "-PLUS")
}

// Credential is what a SCRAM server needs for one mechanism.
type Credential struct {
	Salt           []byte `json:"salt"`
	Iterations     int64  `json:"iterations"`
	SaltedPassword []byte `json:"salted_password"`
}

// Account is one stored account. Values handed out by Store and Cache are shared:
// treat them as read-only.
type Account struct {
	Host, Localpart string
	// SCRAM maps a mechanism name (SCRAM-SHA-1, SCRAM-SHA-256) to its credential.
	SCRAM map[string]Credential
}

// record is the stored JSON.
type record struct {
	SCRAM map[string]Credential `json:"scram"`
}

// preparePassword applies the PRECIS OpaqueString profile (RFC 8265, the successor of
// SASLprep that SCRAM asks for). ASCII passwords come out unchanged.
func preparePassword(password string) ([]byte, error) {
	if password == "" {
		return nil, fmt.Errorf("%w: empty password", ErrInvalid)
	}
	p, err := precis.OpaqueString.Bytes([]byte(password))
	if err != nil {
		return nil, fmt.Errorf("%w: password: %v", ErrInvalid, err)
	}
	return p, nil
}

// NewCredentials computes SCRAM-SHA-1 and SCRAM-SHA-256 credentials for password, each
// with a fresh random 16-byte salt. iterations 0 means DefaultIterations.
func NewCredentials(password string, iterations int) (map[string]Credential, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < MinIterations {
		return nil, fmt.Errorf("%w: %d iterations, need at least %d", ErrInvalid, iterations, MinIterations)
	}
	pw, err := preparePassword(password)
	if err != nil {
		return nil, err
	}
	creds := make(map[string]Credential, len(mechanisms))
	for _, m := range mechanisms {
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return nil, fmt.Errorf("accounts: salt: %w", err)
		}
		creds[m.name] = Credential{
			Salt:           salt,
			Iterations:     int64(iterations),
			SaltedPassword: sasl.SCRAMSaltPassword(m.hash, pw, salt, iterations),
		}
	}
	return creds, nil
}

// VerifyPassword checks a plain password (SASL PLAIN) against the strongest stored
// SCRAM credential. It costs one PBKDF2 run.
func (a *Account) VerifyPassword(pw string) bool {
	if a == nil {
		return false
	}
	p, err := preparePassword(pw)
	if err != nil {
		return false
	}
	for _, m := range mechanisms {
		c, ok := a.SCRAM[m.name]
		if !ok || c.Iterations <= 0 || len(c.SaltedPassword) == 0 {
			continue
		}
		return hmac.Equal(sasl.SCRAMSaltPassword(m.hash, p, c.Salt, int(c.Iterations)), c.SaltedPassword)
	}
	return false
}

// normalize returns the RFC 7622 forms of host and localpart (case-folded, NFC, IDNA).
func normalize(host, localpart string) (string, string, error) {
	if localpart == "" {
		return "", "", fmt.Errorf("%w: empty user name", ErrInvalid)
	}
	j, err := jid.New(localpart, host, "")
	if err != nil {
		return "", "", fmt.Errorf("%w: %q@%q: %v", ErrInvalid, localpart, host, err)
	}
	if j.Domainpart() == "" {
		return "", "", fmt.Errorf("%w: empty host", ErrInvalid)
	}
	return j.Domainpart(), j.Localpart(), nil
}

// normalizeHost returns the RFC 7622 form of a host name.
func normalizeHost(host string) (string, error) {
	if host == "" {
		return "", fmt.Errorf("%w: empty host", ErrInvalid)
	}
	j, err := jid.New("", host, "")
	if err != nil {
		return "", fmt.Errorf("%w: host %q: %v", ErrInvalid, host, err)
	}
	return j.Domainpart(), nil
}

// ParseUser splits and normalizes "alice@localhost". A resource is not allowed.
func ParseUser(s string) (host, localpart string, err error) {
	j, err := jid.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("%w: user %q: %v", ErrInvalid, s, err)
	}
	if j.Localpart() == "" {
		return "", "", fmt.Errorf("%w: user %q: want user@host", ErrInvalid, s)
	}
	if j.Resourcepart() != "" {
		return "", "", fmt.Errorf("%w: user %q: a resource is not allowed", ErrInvalid, s)
	}
	return j.Domainpart(), j.Localpart(), nil
}
