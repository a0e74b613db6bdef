package xmpp

import (
	"bytes"
	"context"
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

// S2SInOptions configure an incoming server stream.
type S2SInOptions struct {
	// TLS is the server side's configuration; it should request (not require) a
	// client certificate, which Verify checks.
	TLS        *tls.Config
	RequireTLS bool
	IsHost     func(domain string) bool
	// Verify reports whether the TLS peer's certificate is valid for domain.
	Verify func(domain string, cs tls.ConnectionState) error
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
			f.WriteString("<starttls xmlns='" + NSTLS + "'>")
			if o.RequireTLS {
				f.WriteString("<required/>")
			}
			f.WriteString("</starttls>")
		}
		external := false
		if tc, ok := c.Conn.(*tls.Conn); ok && c.Secure {
			external = o.Verify(remote, tc.ConnectionState()) == nil
		}
		if external {
			f.WriteString("<mechanisms xmlns='" + NSSASL + "'><mechanism>EXTERNAL</mechanism></mechanisms>")
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
				if err := c.WriteRaw([]byte("<proceed xmlns='" + NSTLS + "'/>")); err != nil {
					return "", err
				}
				tc := tls.Server(c.Conn, o.TLS)
				if err := tc.HandshakeContext(ctx); err != nil {
					_ = c.Conn.Close()
					return "", err
				}
				c.Conn, c.Secure = tc, true
				c.R.Reset(tc)
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
			case env.Kind != KindOther:
				return "", c.fail(&StreamError{Condition: "not-authorized"}, host)
			default:
				return "", c.fail(&StreamError{Condition: "unsupported-stanza-type"}, host)
			}
		}
	}
}

// S2SOutOptions configure an outgoing server stream.
type S2SOutOptions struct {
	// TLS is the client side's configuration (its certificate, the roots); ServerName
	// is set to the remote domain.
	TLS        *tls.Config
	RequireTLS bool
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
		var hb bytes.Buffer
		hb.WriteString("<?xml version='1.0'?><stream:stream xmlns='" + NSServer + "' xmlns:stream='" + NSStream + "'")
		writeAttr(&hb, "from", local)
		writeAttr(&hb, "to", remote)
		hb.WriteString(" version='1.0'>")
		if err := c.WriteRaw(hb.Bytes()); err != nil {
			return err
		}
		c.headerSent = true
		hdr, err := c.R.ReadHeader()
		if err != nil {
			return c.failWith(err, local)
		}
		if h := ParseHeader(hdr); h.NS != NSServer || !versionOK(h.Version) {
			return c.fail(&StreamError{Condition: "invalid-namespace"}, local)
		}
		env, err := c.R.Next()
		if err != nil {
			return c.failWith(err, local)
		}
		if env.Name.Space != NSStream || env.Name.Local != "features" {
			return c.fail(&StreamError{Condition: "not-authorized", Text: "expected stream features"}, local)
		}
		if authed {
			return nil
		}
		var f struct {
			StartTLS   *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
			Mechanisms []string  `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms>mechanism"`
		}
		if err := xml.Unmarshal(env.Raw, &f); err != nil {
			return c.fail(&StreamError{Condition: "bad-format"}, local)
		}
		switch {
		case !c.Secure && f.StartTLS != nil && o.TLS != nil:
			if err := c.WriteRaw([]byte("<starttls xmlns='" + NSTLS + "'/>")); err != nil {
				return err
			}
			p, err := c.R.Next()
			if err != nil {
				return c.failWith(err, local)
			}
			if p.Name.Space != NSTLS || p.Name.Local != "proceed" {
				_ = c.Conn.Close()
				return fmt.Errorf("s2s: STARTTLS refused by %s", remote)
			}
			cfg := o.TLS.Clone()
			cfg.ServerName = remote
			tc := tls.Client(c.Conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = c.Conn.Close()
				return fmt.Errorf("s2s: TLS with %s: %w", remote, err)
			}
			c.Conn, c.Secure = tc, true
			c.R.Reset(tc)
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
