package xmpp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// Server-to-server streams (RFC 6120): STARTTLS, then SASL EXTERNAL with the peer's
// certificate (XEP-0178). The receiving side (NegotiateS2SIn) learns which remote domain
// the stream speaks for; the initiating side (NegotiateS2SOut) proves its own.

// XEP-0220 server dialback.
const (
	NSDialback        = "jabber:server:dialback"
	NSDialbackFeature = "urn:xmpp:features:dialback"
)

// Dialback is what XEP-0220 needs from the server: its keys (XEP-0185), and asking the
// authoritative server of a domain whether a key is its own.
type Dialback struct {
	// Key is this server's key for a stream from originating to receiving with id.
	Key func(receiving, originating, id string) string
	// Verify asks the server of originating (db:verify) whether key is its key for the
	// stream id it opened to receiving.
	Verify func(ctx context.Context, receiving, originating, id, key string) bool
}

// S2SInOptions configure an incoming server stream.
type S2SInOptions struct {
	// TLS is the server side's configuration; it should request (not require) a
	// client certificate, which Verify checks.
	TLS        *tls.Config
	RequireTLS bool
	IsHost     func(domain string) bool
	// Verify reports whether the TLS peer's certificate is valid for domain.
	Verify func(domain string, cs tls.ConnectionState) error
	// Dialback, if set, authenticates a peer whose certificate does not (XEP-0220),
	// and answers other servers' db:verify for this server's domains.
	Dialback *Dialback
}

// NegotiateS2SIn runs negotiation on an accepted server connection up to the stream
// restart after authentication; it returns the authenticated remote domain (c.Host is
// the local domain the stream is for). On failure it has already sent the stream error
// and closed the connection.
func NegotiateS2SIn(ctx context.Context, c *Conn, o *S2SInOptions) (string, error) {
	c.NS = NSServer
	remote, authed := "", false
	for {
		hdr, err := c.R.ReadHeader()
		if err != nil {
			return "", c.failWith(err, c.Host)
		}
		h := ParseHeader(hdr)
		c.headerSent = false
		host, from := strings.ToLower(h.To), strings.ToLower(h.From)
		if h.NS != NSServer {
			return "", c.fail(&StreamError{Condition: "invalid-namespace"}, host)
		}
		if host == "" || !o.IsHost(host) {
			return "", c.fail(&StreamError{Condition: "host-unknown"}, "")
		}
		if c.Host != "" && c.Host != host {
			return "", c.fail(&StreamError{Condition: "host-unknown", Text: "stream restarted for another host"}, c.Host)
		}
		c.Host = host
		if from == "" || strings.ContainsAny(from, "@/") {
			return "", c.fail(&StreamError{Condition: "invalid-from", Text: "a server stream needs the sending domain in 'from'"}, host)
		}
		if remote != "" && from != remote {
			return "", c.fail(&StreamError{Condition: "invalid-from", Text: "stream restarted for another domain"}, host)
		}
		remote = from
		if !versionOK(h.Version) {
			return "", c.fail(&StreamError{Condition: "unsupported-version"}, host)
		}
		c.StreamID = NewID()
		if err := c.SendHeader(host, true); err != nil {
			return "", err
		}
		if authed {
			return remote, c.WriteRaw([]byte("<stream:features/>"))
		}
		var f bytes.Buffer
		f.WriteString("<stream:features>")
		if !c.Secure && o.TLS != nil {
			writeStartTLS(&f, o.RequireTLS)
		}
		external := false
		if tc, ok := c.Conn.(*tls.Conn); ok && c.Secure {
			external = o.Verify(remote, tc.ConnectionState()) == nil
		}
		if external {
			f.WriteString("<mechanisms xmlns='" + NSSASL + "'><mechanism>EXTERNAL</mechanism></mechanisms>")
		}
		if o.Dialback != nil && (c.Secure || !o.RequireTLS) {
			f.WriteString("<dialback xmlns='" + NSDialbackFeature + "'><errors/></dialback>")
		}
		f.WriteString("</stream:features>")
		if err := c.WriteRaw(f.Bytes()); err != nil {
			return "", err
		}

	elements:
		for {
			env, err := c.R.Next()
			if err != nil {
				return "", c.failWith(err, host)
			}
			switch {
			case env.Name.Space == NSTLS && env.Name.Local == "starttls":
				if c.Secure || o.TLS == nil {
					return "", c.fail(&StreamError{Condition: "policy-violation", Text: "STARTTLS not available"}, host)
				}
				if err := c.proceedTLS(ctx, o.TLS); err != nil {
					return "", err
				}
				break elements
			case env.Name.Space == NSSASL && env.Name.Local == "auth":
				if !external || attrOf(env.Raw, "mechanism") != "EXTERNAL" {
					_ = c.saslFailure("invalid-mechanism", "")
					return "", c.fail(&StreamError{Condition: "not-authorized", Text: "no certificate of " + remote + " to authenticate with"}, host)
				}
				authz, ok := decodeSASL(string(env.Content()))
				if !ok || (len(authz) > 0 && !strings.EqualFold(string(authz), remote)) {
					_ = c.saslFailure("invalid-authzid", "")
					return "", c.fail(&StreamError{Condition: "not-authorized"}, host)
				}
				if err := c.WriteRaw([]byte("<success xmlns='" + NSSASL + "'/>")); err != nil {
					return "", err
				}
				authed = true
				c.R.Restart()
				break elements
			case env.Name.Space == NSDialback && env.Name.Local == "verify" && o.Dialback != nil:
				// An authoritative server's part (XEP-0220 §2.2): is this key ours?
				from, to, id := attrOf(env.Raw, "from"), attrOf(env.Raw, "to"), attrOf(env.Raw, "id")
				valid := o.IsHost(to) && subtle.ConstantTimeCompare([]byte(o.Dialback.Key(from, to, id)), []byte(strings.TrimSpace(string(env.Content())))) == 1
				if err := c.WriteRaw(dbElement("verify", to, from, id, valid)); err != nil {
					return "", err
				}
			case env.Name.Space == NSDialback && env.Name.Local == "result" && o.Dialback != nil && (c.Secure || !o.RequireTLS):
				// A receiving server's part (XEP-0220 §2.1): ask the originating domain's
				// server whether the key it gives is its own.
				from, to := strings.ToLower(attrOf(env.Raw, "from")), strings.ToLower(attrOf(env.Raw, "to"))
				if from != remote || to != host {
					return "", c.fail(&StreamError{Condition: "invalid-from", Text: "dialback for another pair of domains"}, host)
				}
				if !o.Dialback.Verify(ctx, host, remote, c.StreamID, strings.TrimSpace(string(env.Content()))) {
					_ = c.WriteRaw(dbElement("result", host, remote, "", false))
					return "", c.fail(&StreamError{Condition: "not-authorized", Text: "dialback: " + remote + " did not vouch for the key"}, host)
				}
				if err := c.WriteRaw(dbElement("result", host, remote, "", true)); err != nil {
					return "", err
				}
				return remote, nil // no restart with dialback
			case env.Kind != KindOther:
				return "", c.fail(&StreamError{Condition: "not-authorized"}, host)
			default:
				return "", c.fail(&StreamError{Condition: "unsupported-stanza-type"}, host)
			}
		}
	}
}

// dbElement is a db:verify or db:result answer.
func dbElement(name, from, to, id string, valid bool) []byte {
	var b bytes.Buffer
	b.WriteString("<db:" + name + " xmlns:db='" + NSDialback + "'")
	writeAttr(&b, "from", from)
	writeAttr(&b, "to", to)
	if id != "" {
		writeAttr(&b, "id", id)
	}
	if valid {
		b.WriteString(" type='valid'/>")
	} else {
		b.WriteString(" type='invalid'/>")
	}
	return b.Bytes()
}

// S2SOutOptions configure an outgoing server stream.
type S2SOutOptions struct {
	// TLS is the client side's configuration (its certificate, the roots); ServerName
	// is set to the remote domain.
	TLS        *tls.Config
	RequireTLS bool
	// Dialback, if set, is used where the remote server offers no SASL EXTERNAL for
	// this one (XEP-0220).
	Dialback *Dialback
	// VerifyServer, if set, checks the remote server's certificate instead of the TLS
	// library: a certificate it refuses ends the stream, unless Dialback is set, which
	// then stands for the authentication (XEP-0220 with TLS for encryption only).
	VerifyServer func(domain string, cs tls.ConnectionState) error
}

// clientTLS is the TLS client configuration for a stream to remote.
func (o *S2SOutOptions) clientTLS(remote string) *tls.Config {
	cfg := o.TLS.Clone()
	cfg.ServerName = remote
	if o.VerifyServer != nil {
		cfg.InsecureSkipVerify = true // checked by VerifyServer, after the handshake
	}
	return cfg
}

// checkServer applies VerifyServer after a handshake.
func (o *S2SOutOptions) checkServer(remote string, tc *tls.Conn) error {
	if o.VerifyServer == nil {
		return nil
	}
	if err := o.VerifyServer(remote, tc.ConnectionState()); err != nil && o.Dialback == nil {
		return fmt.Errorf("s2s: the certificate of %s: %w", remote, err)
	}
	return nil
}

// ErrS2SAuth: the remote server did not let this one authenticate.
var ErrS2SAuth = errors.New("s2s: not authenticated by the remote server")

// NegotiateS2SOut runs the initiating side's negotiation on a connection to the server of
// remote: STARTTLS (the server's certificate must be valid for remote), then SASL
// EXTERNAL as local. It returns once the stream is ready for stanzas.
func NegotiateS2SOut(ctx context.Context, c *Conn, local, remote string, o *S2SOutOptions) error {
	c.NS, c.Host = NSServer, local
	authed := false
	for {
		h, env, err := c.openS2S(local, remote)
		if err != nil {
			return c.failWith(err, local)
		}
		if authed {
			return nil
		}
		var f struct {
			StartTLS   *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
			Mechanisms []string  `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms>mechanism"`
			Dialback   *struct{} `xml:"urn:xmpp:features:dialback dialback"`
		}
		if err := xml.Unmarshal(env.Raw, &f); err != nil {
			return c.fail(&StreamError{Condition: "bad-format"}, local)
		}
		switch {
		case !c.Secure && f.StartTLS != nil && o.TLS != nil:
			tc, err := c.startTLS(ctx, o.clientTLS(remote))
			if err != nil {
				return c.failWith(err, local)
			}
			if err := o.checkServer(remote, tc); err != nil {
				_ = tc.Close()
				return err
			}
		case !c.Secure && o.RequireTLS:
			return c.fail(&StreamError{Condition: "policy-violation", Text: "encryption is required"}, local)
		case hasString(f.Mechanisms, "EXTERNAL"):
			if err := c.WriteRaw([]byte("<auth xmlns='" + NSSASL + "' mechanism='EXTERNAL'>" +
				base64.StdEncoding.EncodeToString([]byte(local)) + "</auth>")); err != nil {
				return err
			}
			res, err := c.R.Next()
			if err != nil {
				return c.failWith(err, local)
			}
			if res.Name.Space != NSSASL || res.Name.Local != "success" {
				_ = c.Conn.Close()
				return fmt.Errorf("%w: %s answered %s", ErrS2SAuth, remote, res.Name.Local)
			}
			authed = true
			c.R.Restart()
		case f.Dialback != nil && o.Dialback != nil:
			if err := c.WriteRaw([]byte("<db:result xmlns:db='" + NSDialback + "' from='" + local + "' to='" + remote + "'>" +
				o.Dialback.Key(remote, local, h.ID) + "</db:result>")); err != nil {
				return err
			}
			res, err := c.R.Next()
			if err != nil {
				return c.failWith(err, local)
			}
			if res.Name.Space != NSDialback || res.Name.Local != "result" || attrOf(res.Raw, "type") != "valid" {
				_ = c.Conn.Close()
				return fmt.Errorf("%w: %s refused dialback for %s", ErrS2SAuth, remote, local)
			}
			return nil // no restart with dialback
		default:
			c.Fail(&StreamError{Condition: "policy-violation", Text: "no way to authenticate"}, local)
			return fmt.Errorf("%w: %s offers no SASL EXTERNAL for %s", ErrS2SAuth, remote, local)
		}
	}
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// attrOf reads one attribute of an element's start tag (a nonza's, in negotiation).
func attrOf(raw []byte, name string) string {
	var e struct {
		Attrs []xml.Attr `xml:",any,attr"`
	}
	if xml.Unmarshal(raw, &e) != nil {
		return ""
	}
	for _, a := range e.Attrs {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// DialbackVerify asks, on a fresh connection c to the server of originating, whether key
// is its key for the stream id it opened to receiving (XEP-0220 §2.1.3): STARTTLS if
// offered (required with o.RequireTLS), then db:verify.
func DialbackVerify(ctx context.Context, c *Conn, receiving, originating, id, key string, o *S2SOutOptions) (bool, error) {
	c.NS, c.Host = NSServer, receiving
	defer c.Close()
	for {
		_, env, err := c.openS2S(receiving, originating)
		if err != nil {
			return false, fmt.Errorf("dialback verify: %w", err)
		}
		var f struct {
			StartTLS *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
		}
		_ = xml.Unmarshal(env.Raw, &f)
		if !c.Secure && f.StartTLS != nil && o.TLS != nil {
			if _, err := c.startTLS(ctx, o.clientTLS(originating)); err != nil {
				return false, fmt.Errorf("dialback verify: %w", err)
			}
			continue
		}
		if !c.Secure && o.RequireTLS {
			return false, fmt.Errorf("dialback verify: %s offers no TLS", originating)
		}
		break
	}
	var b bytes.Buffer
	b.WriteString("<db:verify xmlns:db='" + NSDialback + "'")
	writeAttr(&b, "from", receiving)
	writeAttr(&b, "to", originating)
	writeAttr(&b, "id", id)
	b.WriteString(">")
	_ = xml.EscapeText(&b, []byte(key))
	b.WriteString("</db:verify>")
	if err := c.WriteRaw(b.Bytes()); err != nil {
		return false, err
	}
	for {
		env, err := c.R.Next()
		if err != nil {
			return false, err
		}
		if env.Name.Space == NSDialback && env.Name.Local == "verify" {
			_ = c.WriteRaw([]byte("</stream:stream>"))
			return attrOf(env.Raw, "type") == "valid" && attrOf(env.Raw, "id") == id, nil
		}
	}
}

// openS2S opens an initiating server stream from local to remote (or restarts it): it
// writes the header, and reads the answer's header and its stream features.
func (c *Conn) openS2S(local, remote string) (StreamHeader, *Envelope, error) {
	var hb bytes.Buffer
	hb.WriteString("<?xml version='1.0'?><stream:stream xmlns='" + NSServer + "' xmlns:stream='" + NSStream +
		"' xmlns:db='" + NSDialback + "'")
	writeAttr(&hb, "from", local)
	writeAttr(&hb, "to", remote)
	hb.WriteString(" version='1.0'>")
	if err := c.WriteRaw(hb.Bytes()); err != nil {
		return StreamHeader{}, nil, err
	}
	c.headerSent = true
	hdr, err := c.R.ReadHeader()
	if err != nil {
		return StreamHeader{}, nil, err
	}
	h := ParseHeader(hdr)
	if h.NS != NSServer || !versionOK(h.Version) {
		return h, nil, &StreamError{Condition: "invalid-namespace"}
	}
	env, err := c.R.Next()
	if err != nil {
		return h, nil, err
	}
	if env.Name.Space != NSStream || env.Name.Local != "features" {
		return h, nil, &StreamError{Condition: "not-authorized", Text: "expected stream features"}
	}
	return h, env, nil
}

// startTLS asks the receiving server for STARTTLS and runs the client side of the
// handshake with cfg (its ServerName the remote domain); the stream goes on over TLS.
func (c *Conn) startTLS(ctx context.Context, cfg *tls.Config) (*tls.Conn, error) {
	if err := c.WriteRaw([]byte("<starttls xmlns='" + NSTLS + "'/>")); err != nil {
		return nil, err
	}
	p, err := c.R.Next()
	if err != nil {
		return nil, err
	}
	if p.Name.Space != NSTLS || p.Name.Local != "proceed" {
		_ = c.Conn.Close()
		return nil, fmt.Errorf("s2s: STARTTLS refused by %s", cfg.ServerName)
	}
	tc := tls.Client(c.Conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Conn.Close()
		return nil, fmt.Errorf("s2s: TLS with %s: %w", cfg.ServerName, err)
	}
	c.Conn, c.Secure = tc, true
	c.R.Reset(tc)
	return tc, nil
}
