package xmpp

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"log/slog"
	"strings"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp/jid"
)

// Authenticator checks credentials. The SCRAM side hands mellium's SASL server the salted
// credentials; PLAIN is checked against the same stored SCRAM data.
type Authenticator interface {
	Fetcher(host string) sasl.SaltedCredentialsFetcher
	VerifyPlain(host, localpart, password string) bool
}

// C2SOptions configure client stream negotiation.
type C2SOptions struct {
	TLS             *tls.Config
	RequireTLS      bool
	IsHost          func(domain string) bool
	DefaultHost     string
	Auth            Authenticator
	MaxAuthAttempts int
	Log             *slog.Logger
	// AuthFailed, if set, is told of every failed SASL attempt (throttling by address).
	AuthFailed func()
}

// mechanisms offered now: PLAIN only over TLS (RFC 6120 §13.8), -PLUS never (no channel
// binding in the SASL library's server side).
func (o *C2SOptions) mechanisms(secure bool) []string {
	m := []string{"SCRAM-SHA-256", "SCRAM-SHA-1"}
	if secure {
		m = append(m, "PLAIN")
	}
	return m
}

// NegotiateC2S runs RFC 6120 negotiation on an accepted client connection up to and
// including the stream restart after SASL, where it offers resource binding. The caller
// handles the bind request (it needs the router). On failure it has already sent the
// stream error and closed the connection.
func NegotiateC2S(ctx context.Context, c *Conn, o *C2SOptions) error {
	c.NS = NSClient
	failures := 0
	for {
		hdr, err := c.R.ReadHeader()
		if err != nil {
			return c.failWith(err, o.DefaultHost)
		}
		h := ParseHeader(hdr)
		c.headerSent = false
		if h.Lang != "" {
			c.Lang = h.Lang
		}
		host := strings.ToLower(h.To)
		if host == "" {
			host = o.DefaultHost
		}
		if h.NS != NSClient {
			return c.fail(&StreamError{Condition: "invalid-namespace"}, host)
		}
		if !o.IsHost(host) {
			return c.fail(&StreamError{Condition: "host-unknown"}, o.DefaultHost)
		}
		if c.Host != "" && c.Host != host {
			return c.fail(&StreamError{Condition: "host-unknown", Text: "stream restarted for another host"}, c.Host)
		}
		c.Host = host
		if !versionOK(h.Version) {
			return c.fail(&StreamError{Condition: "unsupported-version"}, host)
		}
		c.StreamID = NewID()
		if err := c.SendHeader(host, true); err != nil {
			return err
		}

		if c.User != "" {
			// Authenticated: offer binding; the caller takes over.
			// rosterver: roster versioning (RFC 6121 §2.6), answered by the router;
			// csi: client state indication (XEP-0352), kept by the session;
			// sm: stream management (XEP-0198), enabled after binding or resumed instead.
			return c.WriteRaw([]byte("<stream:features><bind xmlns='" + NSBind + "'/>" +
				"<session xmlns='" + NSSession + "'><optional/></session>" +
				"<ver xmlns='urn:xmpp:features:rosterver'/><csi xmlns='" + NSCSI + "'/>" +
				"<sm xmlns='" + NSSM + "'/></stream:features>"))
		}
		var f bytes.Buffer
		f.WriteString("<stream:features>")
		if !c.Secure && o.TLS != nil {
			writeStartTLS(&f, o.RequireTLS)
		}
		if c.Secure || !o.RequireTLS {
			f.WriteString("<mechanisms xmlns='" + NSSASL + "'>")
			for _, m := range o.mechanisms(c.Secure) {
				f.WriteString("<mechanism>" + m + "</mechanism>")
			}
			f.WriteString("</mechanisms>")
		}
		f.WriteString("</stream:features>")
		if err := c.WriteRaw(f.Bytes()); err != nil {
			return err
		}

	elements:
		for {
			env, err := c.R.Next()
			if err != nil {
				return c.failWith(err, host)
			}
			switch {
			case env.Name.Space == NSTLS && env.Name.Local == "starttls":
				if c.Secure || o.TLS == nil {
					return c.fail(&StreamError{Condition: "policy-violation", Text: "STARTTLS not available"}, host)
				}
				if err := c.proceedTLS(ctx, o.TLS); err != nil {
					return err
				}
				break elements
			case env.Name.Space == NSSASL && env.Name.Local == "auth":
				if !c.Secure && o.RequireTLS {
					return c.fail(&StreamError{Condition: "policy-violation", Text: "STARTTLS is required first"}, host)
				}
				user, err := c.sasl(env, o)
				if err != nil {
					var se *StreamError
					if errors.As(err, &se) {
						return c.fail(se, host)
					}
					if errors.Is(err, errSASLFailed) {
						if o.AuthFailed != nil {
							o.AuthFailed()
						}
						failures++
						if failures >= o.MaxAuthAttempts {
							return c.fail(&StreamError{Condition: "policy-violation", Text: "too many failed authentication attempts"}, host)
						}
						continue
					}
					_ = c.Conn.Close()
					return err
				}
				c.User = user
				c.R.Restart()
				break elements
			case env.Kind != KindOther:
				return c.fail(&StreamError{Condition: "not-authorized"}, host)
			default:
				return c.fail(&StreamError{Condition: "unsupported-stanza-type"}, host)
			}
		}
	}
}

func (c *Conn) fail(e *StreamError, from string) error {
	c.Fail(e, from)
	return e
}

func (c *Conn) failWith(err error, from string) error {
	if se, ok := AsStreamError(err); ok {
		return c.fail(se, from)
	}
	_ = c.Conn.Close()
	return err
}

var errSASLFailed = errors.New("sasl failed")

func (c *Conn) saslFailure(cond, text string) error {
	var b bytes.Buffer
	b.WriteString("<failure xmlns='" + NSSASL + "'><" + cond + "/>")
	if text != "" {
		b.WriteString("<text>")
		_ = xml.EscapeText(&b, []byte(text))
		b.WriteString("</text>")
	}
	b.WriteString("</failure>")
	if err := c.WriteRaw(b.Bytes()); err != nil {
		return err
	}
	return errSASLFailed
}

func decodeSASL(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if s == "=" || s == "" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return b, err == nil
}

// sasl runs one SASL exchange (RFC 6120 §6.4) starting from <auth>; it returns the
// authenticated localpart, errSASLFailed after sending <failure/>, or another error.
func (c *Conn) sasl(auth *Envelope, o *C2SOptions) (string, error) {
	mechName := auth.Attr("mechanism")
	var mech sasl.Mechanism
	switch mechName {
	case "PLAIN":
		if !c.Secure {
			return "", c.saslFailure("encryption-required", "")
		}
		mech = sasl.Plain
	case "SCRAM-SHA-256":
		mech = sasl.ScramSha256
	case "SCRAM-SHA-1":
		mech = sasl.ScramSha1
	default:
		return "", c.saslFailure("invalid-mechanism", "")
	}
	text, err := Text(auth)
	if err != nil {
		return "", err
	}
	data, ok := decodeSASL(text)
	if !ok {
		return "", c.saslFailure("incorrect-encoding", "")
	}

	var username, authzid []byte
	fetch := o.Auth.Fetcher(c.Host)
	perm := func(n *sasl.Negotiator) bool {
		u, p, id := n.Credentials()
		username, authzid = u, id
		local, err := normalizeLocal(string(u), c.Host)
		if err != nil {
			return false
		}
		return o.Auth.VerifyPlain(c.Host, local, string(p))
	}
	server := sasl.NewServer(mech, perm, sasl.SaltedCredentials(func(u, id []byte, m string) ([]byte, []byte, int64, error) {
		username, authzid = append([]byte(nil), u...), append([]byte(nil), id...)
		local, err := normalizeLocal(string(u), c.Host)
		if err != nil {
			return nil, nil, 0, sasl.ErrAuthn
		}
		return fetch([]byte(local), id, m)
	}))

	// Without an initial response the client is asked for one with an empty challenge.
	if text == "" {
		if err := c.WriteRaw([]byte("<challenge xmlns='" + NSSASL + "'/>")); err != nil {
			return "", err
		}
		env, err := c.R.Next()
		if err != nil {
			return "", err
		}
		if data, err = c.saslResponse(env); err != nil {
			return "", err
		}
	}
	for {
		more, resp, err := stepSafely(server, data)
		if err != nil {
			return "", c.saslFailure("not-authorized", "")
		}
		if !more {
			local, err := normalizeLocal(string(username), c.Host)
			if err != nil {
				return "", c.saslFailure("not-authorized", "")
			}
			if len(authzid) > 0 && string(authzid) != local+"@"+c.Host {
				return "", c.saslFailure("invalid-authzid", "")
			}
			var b bytes.Buffer
			b.WriteString("<success xmlns='" + NSSASL + "'")
			if len(resp) > 0 {
				b.WriteByte('>')
				b.WriteString(base64.StdEncoding.EncodeToString(resp))
				b.WriteString("</success>")
			} else {
				b.WriteString("/>")
			}
			if err := c.WriteRaw(b.Bytes()); err != nil {
				return "", err
			}
			return local, nil
		}
		if err := c.WriteRaw([]byte("<challenge xmlns='" + NSSASL + "'>" + base64.StdEncoding.EncodeToString(resp) + "</challenge>")); err != nil {
			return "", err
		}
		env, err := c.R.Next()
		if err != nil {
			return "", err
		}
		if data, err = c.saslResponse(env); err != nil {
			return "", err
		}
	}
}

// stepSafely guards against panics inside the SASL library on hostile input.
func stepSafely(n *sasl.Negotiator, data []byte) (more bool, resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errSASLFailed
		}
	}()
	return n.Step(data)
}

func (c *Conn) saslResponse(env *Envelope) ([]byte, error) {
	if env.Name.Space == NSSASL && env.Name.Local == "abort" {
		return nil, c.saslFailure("aborted", "")
	}
	if env.Name.Space != NSSASL || env.Name.Local != "response" {
		return nil, &StreamError{Condition: "not-authorized", Text: "expected a SASL response"}
	}
	text, err := Text(env)
	if err != nil {
		return nil, err
	}
	data, ok := decodeSASL(text)
	if !ok {
		return nil, c.saslFailure("incorrect-encoding", "")
	}
	return data, nil
}

func normalizeLocal(user, host string) (string, error) {
	if user == "" {
		return "", errors.New("empty username")
	}
	j, err := jid.New(user, host, "")
	if err != nil {
		return "", err
	}
	return j.Localpart(), nil
}

// ParseBind recognises a resource-binding request and returns the requested resource
// (empty: the server picks one).
func ParseBind(env *Envelope) (resource string, ok bool) {
	if env.Kind != KindIQ || env.Type != "set" || !env.HasChild || env.Child != (xml.Name{Space: NSBind, Local: "bind"}) {
		return "", false
	}
	var v struct {
		Bind struct {
			Resource string `xml:"resource"`
		} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
	}
	if err := xml.Unmarshal(env.Raw, &v); err != nil {
		return "", true
	}
	return strings.TrimSpace(v.Bind.Resource), true
}

// BindResult is the reply to a successful bind.
func BindResult(id, full string) []byte {
	var b bytes.Buffer
	b.WriteString("<bind xmlns='" + NSBind + "'><jid>")
	_ = xml.EscapeText(&b, []byte(full))
	b.WriteString("</jid></bind>")
	return IQResult(id, "", "", b.Bytes())
}

// Deadline sets an overall deadline on the connection (0 clears it).
func (c *Conn) Deadline(d time.Duration) {
	if d <= 0 {
		_ = c.Conn.SetDeadline(time.Time{})
		return
	}
	_ = c.Conn.SetDeadline(time.Now().Add(d))
}

// writeStartTLS writes the STARTTLS stream feature (RFC 6120 §5.3.1).
func writeStartTLS(f *bytes.Buffer, required bool) {
	f.WriteString("<starttls xmlns='" + NSTLS + "'>")
	if required {
		f.WriteString("<required/>")
	}
	f.WriteString("</starttls>")
}

// proceedTLS answers <starttls/> and runs the server side of the TLS handshake (RFC 6120
// §5.4.3); the stream goes on over TLS. On failure the connection is closed.
func (c *Conn) proceedTLS(ctx context.Context, cfg *tls.Config) error {
	if err := c.WriteRaw([]byte("<proceed xmlns='" + NSTLS + "'/>")); err != nil {
		return err
	}
	tc := tls.Server(c.Conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Conn.Close()
		return err
	}
	c.Conn, c.Secure = tc, true
	c.R.Reset(tc)
	return nil
}
