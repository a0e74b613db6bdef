package xmpp

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// ComponentOptions configure the XEP-0114 accept side.
type ComponentOptions struct {
	// Secret returns the shared secret of a configured component domain.
	Secret func(domain string) (string, bool)
}

// NegotiateComponent runs the XEP-0114 handshake: stream header addressed to the
// component's domain, then <handshake> = hex(SHA-1(stream id + secret)). On failure it has
// sent the stream error and closed the connection. On success nothing is written yet:
// see HandshakeOK.
func NegotiateComponent(c *Conn, o *ComponentOptions) error {
	c.NS = NSComponent
	hdr, err := c.R.ReadHeader()
	if err != nil {
		return c.failWith(err, "")
	}
	h := ParseHeader(hdr)
	domain := strings.ToLower(h.To)
	if h.NS != NSComponent {
		return c.fail(&StreamError{Condition: "invalid-namespace"}, domain)
	}
	secret, ok := o.Secret(domain)
	if domain == "" || !ok {
		return c.fail(&StreamError{Condition: "host-unknown"}, domain)
	}
	c.Host = domain
	if err := c.SendHeader(domain, false); err != nil {
		return err
	}
	env, err := c.R.Next()
	if err != nil {
		return c.failWith(err, domain)
	}
	if env.Name.Local != "handshake" || env.Name.Space != NSComponent {
		return c.fail(&StreamError{Condition: "not-authorized", Text: "expected <handshake/>"}, domain)
	}
	got, err := Text(env)
	if err != nil {
		return c.failWith(err, domain)
	}
	sum := sha1.Sum([]byte(c.StreamID + secret))
	want := hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(strings.TrimSpace(got))), []byte(want)) != 1 {
		return c.fail(&StreamError{Condition: "not-authorized"}, domain)
	}
	// The caller confirms with HandshakeOK once the session is registered, so that the
	// component can be reached as soon as it knows it is connected.
	return nil
}

// HandshakeOK is the server's confirmation of a component handshake.
var HandshakeOK = []byte("<handshake/>")
