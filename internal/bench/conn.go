package bench

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"mellium.im/sasl"
)

// Namespaces the tool speaks.
const (
	nsClient    = "jabber:client"
	nsComponent = "jabber:component:accept"
	nsStream    = "http://etherx.jabber.org/streams"
	nsTLS       = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL      = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind      = "urn:ietf:params:xml:ns:xmpp-bind"
	nsDelegV2   = "urn:xmpp:delegation:2"
	nsDelegV1   = "urn:xmpp:delegation:1"
	nsForward   = "urn:xmpp:forward:0"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsPing      = "urn:xmpp:ping"
)

// ClientConfig says how to reach and log in to a server's c2s port.
type ClientConfig struct {
	Addr       string // host:port
	Domain     string
	DirectTLS  bool   // TLS from the first byte (XEP-0368) instead of STARTTLS
	Insecure   bool   // skip certificate verification (self-signed test servers)
	ServerName string // TLS server name (default: Domain)
	Mech       string // SASL mechanism; "" picks SCRAM-SHA-256, SCRAM-SHA-1, PLAIN in that order
	Timeout    time.Duration

	// HeaderAttrs is written into every stream header the client sends (namespace
	// declarations a test relies on, say: ` xmlns:x='urn:x'`).
	HeaderAttrs string
}

func (c *ClientConfig) tlsConfig() *tls.Config {
	name := c.ServerName
	if name == "" {
		name = c.Domain
	}
	// No session cache: every login pays a full handshake, as a new client would.
	return &tls.Config{ServerName: name, InsecureSkipVerify: c.Insecure, MinVersion: tls.VersionTLS12}
}

// Client is a logged-in, bound c2s connection.
type Client struct {
	Conn net.Conn
	Sc   *Scanner
	JID  string // full JID the server bound
	Bare string
	// Features are the stream features offered after authentication.
	Features string

	tr          *timedReader
	out         []byte
	headerAttrs string
}

// timedReader notes when the last read returned: every stanza of that read arrived then.
type timedReader struct {
	r    io.Reader
	base time.Time
	at   time.Duration
}

func (t *timedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.at = time.Since(t.base)
	return n, err
}

func header(ns, to string, version bool) string {
	s := "<?xml version='1.0'?><stream:stream xmlns='" + ns + "' xmlns:stream='" + nsStream + "' to='" + string(appendEscaped(nil, to)) + "'"
	if version {
		s += " version='1.0'"
	}
	return s + ">"
}

// Login dials, secures, authenticates and binds a resource ("" lets the server pick).
func Login(ctx context.Context, cfg *ClientConfig, user, password, resource string, base time.Time) (*Client, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	c := &Client{Conn: raw}
	ok := false
	defer func() {
		if !ok {
			_ = raw.Close()
		}
	}()
	_ = raw.SetDeadline(time.Now().Add(timeout))
	secure := false
	if cfg.DirectTLS {
		tc := tls.Client(raw, cfg.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.Conn, secure = tc, true
	}
	c.tr = &timedReader{r: c.Conn, base: base}
	c.Sc = NewScanner(c.tr)

	c.headerAttrs = cfg.HeaderAttrs
	features, err := c.open(cfg.Domain)
	if err != nil {
		return nil, err
	}
	if !secure {
		if !bytes.Contains(features.Raw, []byte(nsTLS)) {
			return nil, errors.New("the server offers no STARTTLS")
		}
		if err := c.writeNow("<starttls xmlns='" + nsTLS + "'/>"); err != nil {
			return nil, err
		}
		st, err := c.Sc.Next()
		if err != nil {
			return nil, err
		}
		if !bytes.HasSuffix(st.Name, []byte("proceed")) {
			return nil, fmt.Errorf("starttls: got %.200s", st.Raw)
		}
		tc := tls.Client(raw, cfg.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.Conn = tc
		c.tr.r = tc
		c.Sc.Reset(c.tr)
		if features, err = c.open(cfg.Domain); err != nil {
			return nil, err
		}
	}
	if err := c.auth(cfg, features.Raw, user, password); err != nil {
		return nil, err
	}
	c.Sc.Restart()
	if features, err = c.open(cfg.Domain); err != nil {
		return nil, err
	}
	if !bytes.Contains(features.Raw, []byte(nsBind)) {
		return nil, fmt.Errorf("no resource binding offered: %.200s", features.Raw)
	}
	c.Features = string(features.Raw)
	req := "<iq type='set' id='bind1'><bind xmlns='" + nsBind + "'"
	if resource != "" {
		req += "><resource>" + string(appendEscaped(nil, resource)) + "</resource></bind></iq>"
	} else {
		req += "/></iq>"
	}
	if err := c.writeNow(req); err != nil {
		return nil, err
	}
	for {
		st, err := c.Sc.Next()
		if err != nil {
			return nil, err
		}
		if string(st.Name) != "iq" || !st.ID.Is("bind1") {
			continue
		}
		if !st.Type.Is("result") {
			return nil, fmt.Errorf("bind: %.300s", st.Raw)
		}
		i := bytes.Index(st.Raw, []byte("<jid>"))
		j := bytes.Index(st.Raw, []byte("</jid>"))
		if i < 0 || j < i {
			return nil, fmt.Errorf("bind: no jid in %.300s", st.Raw)
		}
		c.JID = unescape(st.Raw[i+5 : j])
		c.Bare, _, _ = strings.Cut(c.JID, "/")
		break
	}
	_ = c.Conn.SetDeadline(time.Time{})
	ok = true
	return c, nil
}

// open sends a stream header and returns the server's features.
func (c *Client) open(domain string) (*Stanza, error) {
	h := header(nsClient, domain, true)
	if c.headerAttrs != "" {
		h = h[:len(h)-1] + c.headerAttrs + ">"
	}
	if err := c.writeNow(h); err != nil {
		return nil, err
	}
	st, err := c.Sc.Next()
	if err != nil {
		return nil, err
	}
	if !st.Header {
		return nil, fmt.Errorf("expected a stream header, got %.200s", st.Raw)
	}
	st, err = c.Sc.Next()
	if err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(st.Name, []byte("features")) {
		return nil, fmt.Errorf("expected stream features, got %.300s", st.Raw)
	}
	return st, nil
}

func mechanisms(features []byte) []string {
	var out []string
	for {
		i := bytes.Index(features, []byte("<mechanism>"))
		if i < 0 {
			return out
		}
		features = features[i+len("<mechanism>"):]
		j := bytes.Index(features, []byte("</mechanism>"))
		if j < 0 {
			return out
		}
		out = append(out, strings.TrimSpace(string(features[:j])))
		features = features[j:]
	}
}

func pickMech(want string, offered []string) (sasl.Mechanism, error) {
	has := func(n string) bool {
		for _, o := range offered {
			if o == n {
				return true
			}
		}
		return false
	}
	byName := map[string]sasl.Mechanism{"SCRAM-SHA-256": sasl.ScramSha256, "SCRAM-SHA-1": sasl.ScramSha1, "PLAIN": sasl.Plain}
	if want != "" && want != "auto" {
		m, ok := byName[strings.ToUpper(want)]
		if !ok {
			return sasl.Mechanism{}, fmt.Errorf("unknown mechanism %q (SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN)", want)
		}
		if !has(m.Name) {
			return sasl.Mechanism{}, fmt.Errorf("the server does not offer %s (it offers %v)", m.Name, offered)
		}
		return m, nil
	}
	for _, n := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} {
		if has(n) {
			return byName[n], nil
		}
	}
	return sasl.Mechanism{}, fmt.Errorf("no usable SASL mechanism among %v", offered)
}

func (c *Client) auth(cfg *ClientConfig, features []byte, user, password string) error {
	offered := mechanisms(features)
	mech, err := pickMech(cfg.Mech, offered)
	if err != nil {
		return err
	}
	opts := []sasl.Option{
		sasl.Credentials(func() ([]byte, []byte, []byte) { return []byte(user), []byte(password), nil }),
		sasl.RemoteMechanisms(offered...),
	}
	if tc, ok := c.Conn.(*tls.Conn); ok {
		opts = append(opts, sasl.TLSState(tc.ConnectionState()))
	}
	neg := sasl.NewClient(mech, opts...)
	more, resp, err := neg.Step(nil)
	if err != nil {
		return fmt.Errorf("sasl: %w", err)
	}
	if err := c.writeNow("<auth xmlns='" + nsSASL + "' mechanism='" + mech.Name + "'>" + b64(resp) + "</auth>"); err != nil {
		return err
	}
	for {
		st, err := c.Sc.Next()
		if err != nil {
			return err
		}
		data, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(st.Text()))
		switch string(st.Name) {
		case "challenge":
			if derr != nil {
				return fmt.Errorf("sasl: bad challenge: %w", derr)
			}
			if more, resp, err = neg.Step(data); err != nil {
				return fmt.Errorf("sasl: %w", err)
			}
			if err := c.writeNow("<response xmlns='" + nsSASL + "'>" + b64(resp) + "</response>"); err != nil {
				return err
			}
		case "success":
			if more {
				// The server's final message carries its signature: check it.
				if derr != nil {
					return fmt.Errorf("sasl: bad success data: %w", derr)
				}
				if _, _, err = neg.Step(data); err != nil {
					return fmt.Errorf("sasl: server not verified: %w", err)
				}
			}
			return nil
		case "failure":
			return fmt.Errorf("sasl %s failed: %.300s", mech.Name, st.Raw)
		default:
			return fmt.Errorf("sasl: unexpected %.300s", st.Raw)
		}
	}
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

func (c *Client) writeNow(s string) error {
	_, err := io.WriteString(c.Conn, s)
	return err
}

// Flush writes what was queued with append.
func (c *Client) Flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.out)
	c.out = c.out[:0]
	return err
}

// Close ends the stream politely and closes the connection.
func (c *Client) Close() {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c.Conn, "</stream:stream>")
	_ = c.Conn.Close()
}

// Component is an authenticated XEP-0114 connection.
type Component struct {
	Conn net.Conn
	Sc   *Scanner
	JID  string
}

// DialComponent connects and completes the XEP-0114 handshake.
func DialComponent(ctx context.Context, addr, jid, secret string, timeout time.Duration) (*Component, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	c := &Component{Conn: conn, Sc: NewScanner(conn), JID: jid}
	fail := func(err error) (*Component, error) { _ = conn.Close(); return nil, err }
	if _, err := io.WriteString(conn, header(nsComponent, jid, false)); err != nil {
		return fail(err)
	}
	st, err := c.Sc.Next()
	if err != nil {
		return fail(err)
	}
	if !st.Header || len(st.ID.Val) == 0 {
		return fail(fmt.Errorf("component: expected a stream header with an id, got %.200s", st.Raw))
	}
	sum := sha1.Sum([]byte(st.ID.String() + secret))
	if _, err := io.WriteString(conn, "<handshake>"+hex.EncodeToString(sum[:])+"</handshake>"); err != nil {
		return fail(err)
	}
	st, err = c.Sc.Next()
	if err != nil {
		return fail(fmt.Errorf("component handshake: %w", err))
	}
	if string(st.Name) != "handshake" {
		return fail(fmt.Errorf("component handshake refused: %.300s", st.Raw))
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}
