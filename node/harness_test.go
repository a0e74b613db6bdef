package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/accounts"
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/node"
)

// One real etcd for the package; every test node gets its own key prefix.
var (
	etcdEndpoints []string
	prefixSeq     atomic.Int64
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sb-etcd-*")
	if err != nil {
		panic(err)
	}
	client, err := etcdx.FreeAddr("127.0.0.1")
	if err != nil {
		panic(err)
	}
	peer, err := etcdx.FreeAddr("127.0.0.1")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	emb, err := etcdx.StartEmbedded(ctx, etcdx.EmbeddedConfig{Dir: dir, ClientAddr: client, PeerAddr: peer, Name: "test"},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	cancel()
	if err != nil {
		panic(err)
	}
	etcdEndpoints = emb.Endpoints()
	code := m.Run()
	emb.Stop()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type server struct {
	t     *testing.T
	n     *node.Node
	cfg   *config.Config
	store *accounts.Store
}

const secret = "s3cret"

// startNode runs a real node on random loopback ports against the test etcd.
func startNode(t *testing.T, mutate ...func(*config.Config)) *server {
	t.Helper()
	cfg := config.Default()
	cfg.Node.ID = "test"
	cfg.Node.DataDir = t.TempDir()
	cfg.Listen = config.ListenConfig{C2S: "127.0.0.1:0", C2STLS: "127.0.0.1:0", Component: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.Etcd.Endpoints = etcdEndpoints
	cfg.Etcd.Prefix = fmt.Sprintf("/sbtest/%s/%d", strings.ReplaceAll(t.Name(), "/", "_"), prefixSeq.Add(1))
	cfg.Components = []config.ComponentConfig{{JID: "comp.localhost", Secret: secret, DelegationNS: "urn:xmpp:delegation:2", Balance: "round-robin"}}
	cfg.Log.Level = "error"
	for _, f := range mutate {
		f(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logw := io.Discard
	if os.Getenv("SB_TEST_LOG") != "" {
		logw = os.Stderr
		cfg.Log.Level = "debug"
	}
	n := node.New(cfg, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: cfg.Log.SlogLevel()})))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	cli, err := etcdx.Connect(ctx, etcdEndpoints, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return &server{t: t, n: n, cfg: cfg, store: accounts.New(cli, cfg.Etcd.Prefix)}
}

// addUser stores an account and waits until the node's account cache has it.
func (s *server) addUser(local, password string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.store.Add(ctx, "localhost", local, password, 4096); err != nil {
		s.t.Fatal(err)
	}
	waitFor(s.t, 5*time.Second, "account "+local+" visible", func() bool {
		return s.accountVisible(local, password)
	})
}

func (s *server) addUserNoWait(local, password string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.store.Add(ctx, "localhost", local, password, 4096); err != nil {
		s.t.Fatal(err)
	}
}

// accountVisible checks through the network: a PLAIN login attempt succeeds.
func (s *server) accountVisible(local, password string) bool {
	c, err := s.dialClient(local, password, "", sasl.Plain)
	if err != nil {
		return false
	}
	c.close()
	return true
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// elem is any XML element as a test observes it.
type elem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []elem     `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (e *elem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name && (a.Name.Space == "" || name == "lang") {
			return a.Value
		}
	}
	return ""
}

func (e *elem) child(local string) *elem {
	for i := range e.Nodes {
		if e.Nodes[i].XMLName.Local == local {
			return &e.Nodes[i]
		}
	}
	return nil
}

// errorCondition returns the stanza error condition, or "".
func (e *elem) errorCondition() string {
	if e.attr("type") != "error" {
		return ""
	}
	if er := e.child("error"); er != nil {
		for _, n := range er.Nodes {
			if n.XMLName.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && n.XMLName.Local != "text" {
				return n.XMLName.Local
			}
		}
	}
	return "?"
}

func (e *elem) String() string {
	b, _ := xml.Marshal(e)
	return string(b)
}

// peer is a real XMPP client (mellium) or component connection.
type peer struct {
	t    *testing.T
	s    *xmpp.Session
	jid  string
	in   chan *elem
	errc chan error
}

func (s *server) dialClient(local, password, resource string, mech sasl.Mechanism) (*peer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.DialTimeout("tcp", s.n.Addrs.C2S, 5*time.Second)
	if err != nil {
		return nil, err
	}
	origin := jid.MustParse(local + "@localhost")
	if resource != "" {
		origin, _ = origin.WithResource(resource)
	}
	// mellium's client-side bind never sends the requested resource (it writes the empty
	// JID instead), so the harness brings its own client bind feature.
	sess, err := xmpp.NewClientSession(ctx, origin, conn,
		xmpp.StartTLS(&tls.Config{ServerName: "localhost", InsecureSkipVerify: true}),
		xmpp.SASL("", password, mech),
		bindFeature(resource))
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return newPeer(s.t, sess), nil
}

func bindFeature(resource string) xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: "urn:ietf:params:xml:ns:xmpp-bind", Local: "bind"},
		Necessary:  xmpp.Authn,
		Prohibited: xmpp.Ready,
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, interface{}, error) {
			return true, nil, d.Skip()
		},
		Negotiate: func(ctx context.Context, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, error) {
			req := `<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`
			if resource != "" {
				req = `<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`
			}
			w := s.TokenWriter()
			_, err := xmlstream.Copy(w, xml.NewDecoder(strings.NewReader(req)))
			if err == nil {
				err = w.Flush()
			}
			w.Close()
			if err != nil {
				return 0, nil, err
			}
			var reply struct {
				Type string `xml:"type,attr"`
				JID  string `xml:"bind>jid"`
			}
			r := s.TokenReader()
			err = xml.NewTokenDecoder(r).Decode(&reply)
			r.Close()
			if err != nil || reply.Type != "result" {
				return 0, nil, fmt.Errorf("bind: %v (type %q)", err, reply.Type)
			}
			full, err := jid.Parse(reply.JID)
			if err != nil {
				return 0, nil, err
			}
			s.UpdateAddr(full)
			return xmpp.Ready, nil, nil
		},
	}
}

func (s *server) client(local, password string) *peer {
	s.t.Helper()
	p, err := s.dialClient(local, password, "", sasl.ScramSha256)
	if err != nil {
		s.t.Fatalf("login %s: %v", local, err)
	}
	s.t.Cleanup(p.close)
	return p
}

func (s *server) component(domain, sec string) (*peer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.DialTimeout("tcp", s.n.Addrs.Component, 5*time.Second)
	if err != nil {
		return nil, err
	}
	sess, err := component.NewSession(ctx, jid.MustParse(domain), []byte(sec), conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	p := newPeer(s.t, sess)
	s.t.Cleanup(p.close)
	return p, nil
}

func newPeer(t *testing.T, sess *xmpp.Session) *peer {
	p := &peer{t: t, s: sess, jid: sess.LocalAddr().String(), in: make(chan *elem, 4096), errc: make(chan error, 1)}
	go func() {
		r := sess.TokenReader()
		defer r.Close()
		d := xml.NewTokenDecoder(r)
		for {
			e := new(elem)
			if err := d.Decode(e); err != nil {
				p.errc <- err
				close(p.in)
				return
			}
			p.in <- e
		}
	}()
	return p
}

func (p *peer) close() { _ = p.s.Close(); _ = p.s.Conn().Close() }

// send writes raw XML (a stanza) to the stream.
func (p *peer) send(raw string) {
	p.t.Helper()
	// No cancellable context: see managing.sendAsync.
	if err := p.s.Send(context.Background(), xml.NewDecoder(strings.NewReader(raw))); err != nil {
		p.t.Fatalf("send %s: %v", raw, err)
	}
}

func tokensOf(raw string) xml.TokenReader { return xml.NewDecoder(strings.NewReader(raw)) }

// sendBatch writes many stanzas in one write, straight to the connection (pipelining).
func (p *peer) sendBatch(raw string) {
	p.t.Helper()
	if _, err := io.WriteString(p.s.Conn(), raw); err != nil {
		p.t.Fatal(err)
	}
}

// sync waits until the server has processed everything this peer sent before (a ping
// round trip on the same stream).
func (p *peer) sync() {
	p.t.Helper()
	p.send(`<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := p.next(wait); r.attr("id") != "sync" || r.attr("type") != "result" {
		p.t.Fatalf("%s: sync got %s", p.jid, r)
	}
}

// next returns the next stanza or fails the test after d.
func (p *peer) next(d time.Duration) *elem {
	p.t.Helper()
	select {
	case e, ok := <-p.in:
		if !ok {
			p.t.Fatalf("%s: stream ended: %v", p.jid, <-p.errc)
		}
		return e
	case <-time.After(d):
		if os.Getenv("SB_DUMP") != "" {
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		}
		p.t.Fatalf("%s: nothing received in %v", p.jid, d)
	}
	return nil
}

// expectNothing asserts that no stanza arrives within d.
func (p *peer) expectNothing(d time.Duration) {
	p.t.Helper()
	select {
	case e, ok := <-p.in:
		if ok {
			p.t.Fatalf("%s: unexpected stanza %s", p.jid, e)
		}
	case <-time.After(d):
	}
}

// raw is a bare TCP connection for bad-input tests.
type raw struct {
	t *testing.T
	c net.Conn
}

func (s *server) raw(addr string) *raw {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = c.Close() })
	return &raw{t: s.t, c: c}
}

func (r *raw) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// readUntilClosed returns everything the server sends until it closes the connection.
func (r *raw) readUntilClosed(d time.Duration) string {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	var b bytes.Buffer
	_, err := io.Copy(&b, r.c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		r.t.Fatalf("server did not close the connection within %v; got %q", d, b.String())
	}
	return b.String()
}

// readFor returns what arrives within d without requiring a close.
func (r *raw) readFor(d time.Duration) string {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	var b bytes.Buffer
	_, _ = io.Copy(&b, r.c)
	return b.String()
}
