// Package xmpptest holds the XMPP test peers shared by Switchboard's end-to-end tests:
// real clients and components (mellium) on real TCP/TLS connections, and a Managing entity
// for XEP-0355 tests. Test code only.
package xmpptest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
)

// Wait is the default time to Wait for an expected stanza.
const Wait = 5 * time.Second

func WaitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Elem is any XML element as a test observes it.
type Elem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []Elem     `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (e *Elem) Attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name && (a.Name.Space == "" || name == "lang") {
			return a.Value
		}
	}
	return ""
}

func (e *Elem) Child(local string) *Elem {
	for i := range e.Nodes {
		if e.Nodes[i].XMLName.Local == local {
			return &e.Nodes[i]
		}
	}
	return nil
}

// errorCondition returns the stanza error condition, or "".
func (e *Elem) ErrorCondition() string {
	if e.Attr("type") != "error" {
		return ""
	}
	if er := e.Child("error"); er != nil {
		for _, n := range er.Nodes {
			if n.XMLName.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && n.XMLName.Local != "text" {
				return n.XMLName.Local
			}
		}
	}
	return "?"
}

func (e *Elem) String() string {
	b, _ := xml.Marshal(e)
	return string(b)
}

// Peer is a real XMPP client (mellium) or component connection.
type Peer struct {
	t    *testing.T
	S    *xmpp.Session
	JID  string
	In   chan *Elem // every stanza received, in order; closed when the stream ends
	Errc chan error // why the stream ended

	ended chan struct{} // closed when the stream has ended
}

// DialClient logs in to a c2s STARTTLS listener with mellium (STARTTLS, SASL with mech,
// bind; resource "" lets the server pick one). The host is "localhost".
func DialClient(t *testing.T, addr, local, password, resource string, mech sasl.Mechanism) (*Peer, error) {
	return DialClientAt(t, addr, local+"@localhost", password, resource, mech)
}

// DialClientAt is DialClient for the account bare (user@domain).
func DialClientAt(t *testing.T, addr, bare, password, resource string, mech sasl.Mechanism) (*Peer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	origin := jid.MustParse(bare)
	if resource != "" {
		origin, _ = origin.WithResource(resource)
	}
	// mellium's client-side bind never sends the requested resource (it writes the empty
	// JID instead), so the harness brings its own client bind feature.
	sess, err := xmpp.NewClientSession(ctx, origin, conn,
		xmpp.StartTLS(&tls.Config{ServerName: origin.Domainpart(), InsecureSkipVerify: true}),
		xmpp.SASL("", password, mech),
		BindFeature(resource))
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return NewPeer(t, sess), nil
}

// Client is DialClient with SCRAM-SHA-256 that fails the test on error and closes at cleanup.
func Client(t *testing.T, addr, local, password string) *Peer {
	t.Helper()
	p, err := DialClient(t, addr, local, password, "", sasl.ScramSha256)
	if err != nil {
		t.Fatalf("login %s: %v", local, err)
	}
	t.Cleanup(p.Close)
	return p
}

// BindFeature binds resource ("": the server picks one): mellium's own client-side bind
// never sends the requested resource.
func BindFeature(resource string) xmpp.StreamFeature {
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
			_, err := xmlstream.Copy(w, Tokens(req))
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

// DialComponent connects an XEP-0114 component with mellium; it is closed at cleanup.
func DialComponent(t *testing.T, addr, domain, sec string) (*Peer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	sess, err := component.NewSession(ctx, jid.MustParse(domain), []byte(sec), conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	p := NewPeer(t, sess)
	t.Cleanup(p.Close)
	return p, nil
}

func NewPeer(t *testing.T, sess *xmpp.Session) *Peer {
	p := &Peer{t: t, S: sess, JID: sess.LocalAddr().String(), In: make(chan *Elem, 4096), Errc: make(chan error, 1),
		ended: make(chan struct{})}
	go func() {
		r := sess.TokenReader()
		defer r.Close()
		d := xml.NewTokenDecoder(r)
		for {
			e := new(Elem)
			if err := d.Decode(e); err != nil {
				p.Errc <- err
				close(p.ended)
				close(p.In)
				return
			}
			p.In <- e
		}
	}()
	return p
}

// Close sends the closing tag and closes the connection at once: unread data the server
// sent may make it a reset, which the server can take for a dropped connection.
func (p *Peer) Close() { _ = p.S.Close(); _ = p.S.Conn().Close() }

// CloseClean ends the stream as RFC 6120 §4.4 has it: the closing tag, then the server's
// own close (up to 5 s), then the connection. What the server sent meanwhile is not read.
func (p *Peer) CloseClean() {
	_ = p.S.Close()
	select {
	case <-p.ended:
	case <-time.After(5 * time.Second):
	}
	_ = p.S.Conn().Close()
}

// Send writes raw XML (a stanza) to the stream.
func (p *Peer) Send(raw string) {
	p.t.Helper()
	// No cancellable context: see Managing.SendAsync.
	if err := p.S.Send(context.Background(), Tokens(raw)); err != nil {
		p.t.Fatalf("send %s: %v", raw, err)
	}
}

// Tokens reads raw XML as tokens to send through mellium. encoding/xml's encoder writes
// an element's namespace as an xmlns attribute of its own, so the decoder's xmlns
// attribute is dropped: with both, every element would carry xmlns twice, which is not
// well-formed (the server refuses it, as expat-based servers do).
func Tokens(raw string) xml.TokenReader {
	return tokens{xml.NewDecoder(strings.NewReader(raw))}
}

type tokens struct{ d *xml.Decoder }

func (t tokens) Token() (xml.Token, error) {
	tok, err := t.d.Token()
	if st, ok := tok.(xml.StartElement); ok {
		attrs := st.Attr[:0:0]
		for _, a := range st.Attr {
			if a.Name.Space != "" || a.Name.Local != "xmlns" {
				attrs = append(attrs, a)
			}
		}
		st.Attr = attrs
		tok = st
	}
	return tok, err
}

// sendBatch writes many stanzas in one write, straight to the connection (pipelining).
func (p *Peer) SendBatch(raw string) {
	p.t.Helper()
	if _, err := io.WriteString(p.S.Conn(), raw); err != nil {
		p.t.Fatal(err)
	}
}

// Sync waits until the server has processed everything this Peer sent before (a ping
// round trip on the same stream).
func (p *Peer) Sync() {
	p.t.Helper()
	p.Send(`<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := p.Next(Wait); r.Attr("id") != "sync" || r.Attr("type") != "result" {
		p.t.Fatalf("%s: sync got %s", p.JID, r)
	}
}

// next returns the next stanza or fails the test after d.
func (p *Peer) Next(d time.Duration) *Elem {
	p.t.Helper()
	select {
	case e, ok := <-p.In:
		if !ok {
			p.t.Fatalf("%s: stream ended: %v", p.JID, <-p.Errc)
		}
		return e
	case <-time.After(d):
		if os.Getenv("SB_DUMP") != "" {
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		}
		p.t.Fatalf("%s: nothing received in %v", p.JID, d)
	}
	return nil
}

// expectNothing asserts that no stanza arrives within d.
func (p *Peer) ExpectNothing(d time.Duration) {
	p.t.Helper()
	select {
	case e, ok := <-p.In:
		if ok {
			p.t.Fatalf("%s: unexpected stanza %s", p.JID, e)
		}
	case <-time.After(d):
	}
}

// Managing is a test component acting as a Managing entity: it records advertisements,
// answers disco nesting queries and hands forwarded IQs to a handler.
type Managing struct {
	*Peer
	t        *testing.T
	Domain   string
	Ads      chan *Elem          // advertisements
	Forwards chan Forwarded      // delegated IQs
	Other    chan *Elem          // anything else
	features map[string][]string // nesting node → features it answers with
}

// Forwarded is a delegated IQ as the managing entity receives it.
type Forwarded struct {
	Outer, Inner *Elem
}

// NewManaging connects a component at addr as a managing entity. features maps a disco
// nesting node to the features it answers with.
func NewManaging(t *testing.T, addr, domain, secret string, features map[string][]string) *Managing {
	t.Helper()
	p, err := DialComponent(t, addr, domain, secret)
	if err != nil {
		t.Fatal(err)
	}
	m := &Managing{Peer: p, t: t, Domain: domain, Ads: make(chan *Elem, 100), Forwards: make(chan Forwarded, 5000),
		Other: make(chan *Elem, 100), features: features}
	go m.loop()
	return m
}

func (m *Managing) loop() {
	for e := range m.In {
		switch {
		case e.XMLName.Local == "message" && e.Child("delegation") != nil:
			m.Ads <- e
		case e.XMLName.Local == "iq" && e.Child("delegation") != nil:
			fw := e.Child("delegation").Child("forwarded")
			var inner *Elem
			if fw != nil {
				inner = fw.Child("iq")
			}
			m.Forwards <- Forwarded{Outer: e, Inner: inner}
		case e.XMLName.Local == "iq" && e.Child("query") != nil && e.Child("query").Attr("node") != "":
			node := e.Child("query").Attr("node")
			var b strings.Builder
			for _, f := range m.features[node] {
				b.WriteString("<feature var='" + f + "'/>")
			}
			m.SendAsync(fmt.Sprintf(`<iq type='result' from='%s' to='%s' id='%s'><query xmlns='http://jabber.org/protocol/disco#info' node='%s'>%s</query></iq>`,
				m.Domain, e.Attr("from"), e.Attr("id"), node, b.String()))
		default:
			m.Other <- e
		}
	}
}

// SendAsync is send usable off the test goroutine.
func (m *Managing) SendAsync(raw string) {
	if err := m.TrySend(raw); err != nil {
		m.t.Errorf("%s: send failed: %v", m.Domain, err)
	}
}

// TrySend sends, off the test goroutine, to a stream that may have ended.
func (m *Managing) TrySend(raw string) error {
	// context.Background on purpose: mellium's Send arms a watcher that, if the context
	// is cancelled just after Send returns, sets a past write deadline on the connection
	// and can fail the next, concurrent Send with an i/o timeout (observed under -race).
	return m.S.Send(context.Background(), Tokens(raw))
}

// NextOther returns the next stanza in Other that ok accepts (nil: any), dropping the
// ones it refuses; the test fails if none comes within d.
func (m *Managing) NextOther(t testing.TB, d time.Duration, what string, ok func(*Elem) bool) *Elem {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e := <-m.Other:
			if ok == nil || ok(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("%s: no %s within %v", m.Domain, what, d)
			return nil
		}
	}
}

func (m *Managing) NextForward(d time.Duration) Forwarded {
	m.t.Helper()
	select {
	case f := <-m.Forwards:
		return f
	case <-time.After(d):
		m.t.Fatalf("%s: no forwarded IQ within %v", m.Domain, d)
	}
	return Forwarded{}
}

func (m *Managing) NoForward(d time.Duration) {
	m.t.Helper()
	select {
	case f := <-m.Forwards:
		m.t.Fatalf("%s: unexpected forward %s", m.Domain, f.Outer)
	case <-time.After(d):
	}
}

func (m *Managing) NextAd(d time.Duration) map[string][]string {
	m.t.Helper()
	select {
	case e := <-m.Ads:
		out := map[string][]string{}
		for _, dl := range e.Child("delegation").Nodes {
			if dl.XMLName.Local != "delegated" {
				continue
			}
			var attrs []string
			for _, a := range dl.Nodes {
				attrs = append(attrs, a.Attr("name"))
			}
			out[dl.Attr("namespace")] = attrs
		}
		return out
	case <-time.After(d):
		m.t.Fatalf("%s: no advertisement within %v", m.Domain, d)
	}
	return nil
}

// Reply answers a forwarded IQ; the inner stanza is given in full.
func (m *Managing) Reply(f Forwarded, innerXML string) { m.SendAsync(replyXML(m.Domain, f, innerXML)) }

func replyXML(domain string, f Forwarded, innerXML string) string {
	return fmt.Sprintf(`<iq type='result' from='%s' to='%s' id='%s'><delegation xmlns='%s'><forwarded xmlns='urn:xmpp:forward:0'>%s</forwarded></delegation></iq>`,
		domain, f.Outer.Attr("from"), f.Outer.Attr("id"), "urn:xmpp:delegation:2", innerXML)
}

// answer replies correctly with a result carrying payload.
func (m *Managing) Answer(f Forwarded, payload string) { m.Reply(f, resultXML(f, payload)) }

// TryAnswer is Answer to a stream that may have ended (a node killed under it).
func (m *Managing) TryAnswer(f Forwarded, payload string) error {
	return m.TrySend(replyXML(m.Domain, f, resultXML(f, payload)))
}

func resultXML(f Forwarded, payload string) string {
	return fmt.Sprintf(`<iq xmlns='jabber:client' type='result' id='%s' to='%s'>%s</iq>`, f.Inner.Attr("id"), f.Inner.Attr("from"), payload)
}

// LockedBuffer collects a subprocess's output while a test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// DialResume logs in like DialClient but, instead of binding, resumes a stream-management
// session (XEP-0198) with previd and the count h of what the client handled; full is the
// session's JID. It returns the server's answer (<resumed/> or <failed/>); on <failed/>
// the error says so and the connection is closed.
func DialResume(t *testing.T, addr, local, password, full, previd string, h uint32) (*Peer, *Elem, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	var answer Elem
	sess, err := xmpp.NewClientSession(ctx, jid.MustParse(local+"@localhost"), conn,
		xmpp.StartTLS(&tls.Config{ServerName: "localhost", InsecureSkipVerify: true}),
		xmpp.SASL("", password, sasl.ScramSha256),
		ResumeFeature(full, previd, h, &answer))
	if err != nil {
		_ = conn.Close()
		return nil, &answer, err
	}
	p := NewPeer(t, sess)
	t.Cleanup(p.Close)
	return p, &answer, nil
}

// ResumeFeature sends <resume/> (XEP-0198) instead of binding and keeps the server's
// answer; anything but <resumed/> fails the negotiation. full: the session's JID, if known.
func ResumeFeature(full, previd string, h uint32, answer *Elem) xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: "urn:xmpp:sm:3", Local: "sm"},
		Necessary:  xmpp.Authn,
		Prohibited: xmpp.Ready,
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, interface{}, error) {
			return true, nil, d.Skip()
		},
		Negotiate: func(ctx context.Context, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, error) {
			w := s.TokenWriter()
			var id strings.Builder
			_ = xml.EscapeText(&id, []byte(previd))
			_, err := xmlstream.Copy(w, Tokens(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, id.String(), h)))
			if err == nil {
				err = w.Flush()
			}
			w.Close()
			if err != nil {
				return 0, nil, err
			}
			r := s.TokenReader()
			err = xml.NewTokenDecoder(r).Decode(answer)
			r.Close()
			if err != nil {
				return 0, nil, err
			}
			if answer.XMLName.Local != "resumed" {
				return 0, nil, fmt.Errorf("resume: %s", answer)
			}
			if full != "" {
				s.UpdateAddr(jid.MustParse(full))
			}
			return xmpp.Ready, nil, nil
		},
	}
}

// ChildNS is e's first child element named local in namespace space (nil if none, or if
// e is nil).
func ChildNS(e *Elem, space, local string) *Elem {
	if e == nil {
		return nil
	}
	for i := range e.Nodes {
		if e.Nodes[i].XMLName.Local == local && e.Nodes[i].XMLName.Space == space {
			return &e.Nodes[i]
		}
	}
	return nil
}

// Body is the text of e's <body/> ("" if none).
func Body(e *Elem) string {
	if e == nil {
		return ""
	}
	if b := e.Child("body"); b != nil {
		return b.Text
	}
	return ""
}

// ErrTimeout is Recv's error when its deadline comes first.
var ErrTimeout = errors.New("timeout")

// Recv is the next element p reads, or why it cannot be: the stream ended (with its
// error), or the deadline came (ErrTimeout). Unlike Next it does not fail the test.
func (p *Peer) Recv(deadline <-chan time.Time) (*Elem, error) {
	select {
	case e, ok := <-p.In:
		if !ok {
			var err error
			select {
			case err = <-p.Errc:
			default:
			}
			return nil, fmt.Errorf("stream ended (%v)", err)
		}
		return e, nil
	case <-deadline:
		return nil, ErrTimeout
	}
}
