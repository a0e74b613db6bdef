package compliance

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

// wait bounds every expected answer (generous: the exchanges take milliseconds).
const wait = 5 * time.Second

const (
	nsSM        = "urn:xmpp:sm:3"
	nsCSI       = "urn:xmpp:csi:0"
	nsCarbons   = "urn:xmpp:carbons:2"
	nsForward   = "urn:xmpp:forward:0"
	nsBlocking  = "urn:xmpp:blocking"
	nsBlockErr  = "urn:xmpp:blocking:errors"
	nsDelay     = "urn:xmpp:delay"
	nsRoster    = "jabber:iq:roster"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsPing      = "urn:xmpp:ping"
	nsStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
)

// Elem is an XML element as the suite observes it.
type Elem = xmpptest.Elem

// account is one of the two users of COMPLIANCE_USERS.
type account struct{ local, password string }

// server is what the environment says about the server under test.
type server struct {
	addr, domain, name string
	users              [2]account // alice, bob (whatever their localparts)
}

var srv server

func (s server) bare(u int) string { return s.users[u].local + "@" + s.domain }

// check is one check's state: the first failure's message is its reason.
type check struct {
	t      *testing.T
	id     string
	reason string
	ran    bool
}

func (k *check) fatalf(format string, a ...any) {
	k.t.Helper()
	msg := fmt.Sprintf(format, a...)
	if k.reason == "" {
		k.reason = msg
	}
	k.t.Fatal(msg)
}

// client is one logged-in resource: a mellium session read by xmpptest's Peer, with what
// a client keeps: the stanzas it has read but not yet matched (backlog), its
// stream-management counters, and its answers to the server's IQs and ack requests.
type client struct {
	k       *check
	p       *xmpptest.Peer
	tcp     net.Conn // the TCP connection under TLS: closing it is a dropped connection
	user    int
	full    string
	backlog []*Elem
	ended   error
	ids     int

	// XEP-0198, once enabled: stanzas sent and handled since <enable/>.
	sm            bool
	sent, handled uint32
	smID          string
}

func (c *client) bare() string { return srv.bare(c.user) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// mechanisms are offered in this order of preference; mellium picks the first the
// server offers (Prosody 0.12: SCRAM-SHA-1; ejabberd and Switchboard: SCRAM-SHA-256).
var mechanisms = []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain}

// session opens TCP, STARTTLS (no verification), SASL, then final (bind or resume).
func session(user int, final xmpp.StreamFeature) (*xmpp.Session, net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.DialTimeout("tcp", srv.addr, wait)
	if err != nil {
		return nil, nil, err
	}
	origin, err := jid.Parse(srv.bare(user))
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	sess, err := xmpp.NewClientSession(ctx, origin, conn,
		xmpp.StartTLS(&tls.Config{ServerName: srv.domain, InsecureSkipVerify: true}),
		xmpp.SASL("", srv.users[user].password, mechanisms...),
		final)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return sess, conn, nil
}

// dialErr logs user (0 alice, 1 bob) in with a fresh resource of the suite's own.
func (k *check) dialErr(user int) (*client, error) {
	res := "cmp-" + randHex(4)
	sess, conn, err := session(user, xmpptest.BindFeature(res))
	if err != nil {
		return nil, err
	}
	c := &client{k: k, p: xmpptest.NewPeer(k.t, sess), tcp: conn, user: user, full: sess.LocalAddr().String()}
	k.t.Cleanup(c.closeClean)
	return c, nil
}

func (k *check) dial(user int) *client {
	k.t.Helper()
	c, err := k.dialErr(user)
	if err != nil {
		k.fatalf("login %s: %v", srv.bare(user), err)
	}
	return c
}

// online is dial and initial presence.
func (k *check) online(user int) *client {
	k.t.Helper()
	c := k.dial(user)
	c.send(`<presence/>`)
	return c
}

// dialResume logs user in and resumes previd with h; answer is the server's <resumed/>
// or <failed/> (then err is set and the connection closed).
func (k *check) dialResume(user int, full, previd string, h uint32) (*client, *Elem, error) {
	var answer Elem
	sess, conn, err := session(user, xmpptest.ResumeFeature(full, previd, h, &answer))
	if err != nil {
		return nil, &answer, err
	}
	c := &client{k: k, p: xmpptest.NewPeer(k.t, sess), tcp: conn, user: user, full: full, sm: true, smID: previd}
	k.t.Cleanup(c.closeClean)
	return c, &answer, nil
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// feature reports whether the server listed a stream feature of that namespace.
func (c *client) feature(ns string) bool {
	_, ok := c.p.S.Feature(ns)
	return ok
}

func isStanza(raw string) bool {
	return strings.HasPrefix(raw, "<message") || strings.HasPrefix(raw, "<presence") || strings.HasPrefix(raw, "<iq")
}

// trySend writes raw XML; stanzas are counted once stream management is on.
func (c *client) trySend(raw string) error {
	if err := c.p.S.Send(context.Background(), xmpptest.Tokens(raw)); err != nil {
		return err
	}
	if c.sm && isStanza(raw) {
		c.sent++
	}
	return nil
}

func (c *client) send(raw string) {
	c.k.t.Helper()
	if err := c.trySend(raw); err != nil {
		c.k.fatalf("%s: send: %v", c.who(), err)
	}
}

func (c *client) who() string {
	if c.user == 0 {
		return "alice"
	}
	return "bob"
}

func (c *client) id() string {
	c.ids++
	return "cmp" + strconv.Itoa(c.ids) + "-" + randHex(3)
}

var errTimeout = xmpptest.ErrTimeout

// recv reads the next element, answering what a client must answer on the way: the
// server's IQ requests and pushes, and its ack requests once stream management is on.
func (c *client) recv(deadline <-chan time.Time) (*Elem, error) {
	if c.ended != nil {
		return nil, c.ended
	}
	e, err := c.p.Recv(deadline)
	if err != nil {
		if err != errTimeout {
			c.ended = err
		}
		return nil, err
	}
	if isStanzaElem(e) {
		if c.sm {
			c.handled++
		}
		if e.XMLName.Local == "iq" && (e.Attr("type") == "get" || e.Attr("type") == "set") {
			c.answerIQ(e)
		}
	} else if c.sm && e.XMLName.Space == nsSM && e.XMLName.Local == "r" {
		_ = c.trySend(fmt.Sprintf(`<a xmlns='%s' h='%d'/>`, nsSM, c.handled))
	}
	return e, nil
}

func isStanzaElem(e *Elem) bool {
	switch e.XMLName.Space {
	case "", "jabber:client":
	default:
		return false
	}
	switch e.XMLName.Local {
	case "message", "presence", "iq":
		return true
	}
	return false
}

// answerIQ acknowledges pushes (roster, blocklist) and pings; other requests get
// service-unavailable, as a client that does not know them answers.
func (c *client) answerIQ(e *Elem) {
	to := ""
	if f := e.Attr("from"); f != "" {
		to = ` to='` + xmlEscape(f) + `'`
	}
	id := xmlEscape(e.Attr("id"))
	switch {
	case e.Attr("type") == "set" || (len(e.Nodes) > 0 && e.Nodes[0].XMLName.Space == nsPing):
		_ = c.trySend(`<iq type='result' id='` + id + `'` + to + `/>`)
	default:
		_ = c.trySend(`<iq type='error' id='` + id + `'` + to + `><error type='cancel'><service-unavailable xmlns='` + nsStanzas + `'/></error></iq>`)
	}
}

// await returns the first element, read before or within d, that match accepts; the
// others stay in the backlog.
func (c *client) await(d time.Duration, match func(*Elem) bool) (*Elem, error) {
	for i, e := range c.backlog {
		if match(e) {
			c.backlog = append(c.backlog[:i:i], c.backlog[i+1:]...)
			return e, nil
		}
	}
	deadline := time.After(d)
	for {
		e, err := c.recv(deadline)
		if err != nil {
			return nil, err
		}
		if match(e) {
			return e, nil
		}
		c.backlog = append(c.backlog, e)
	}
}

// expect is await that fails the check with what was expected.
func (c *client) expect(what string, match func(*Elem) bool) *Elem {
	c.k.t.Helper()
	e, err := c.await(wait, match)
	if err != nil {
		c.logBacklog()
		if err == errTimeout {
			c.k.fatalf("%s: no %s within %v", c.who(), what, wait)
		}
		c.k.fatalf("%s: waiting for %s: %v", c.who(), what, err)
	}
	return e
}

// logBacklog logs what the client received and did not match (for the test log).
func (c *client) logBacklog() {
	c.k.t.Helper()
	for _, e := range c.backlog {
		c.k.t.Logf("%s had received: %s", c.who(), short(e))
	}
}

// expectNone fails the check if an element that match accepts is in the backlog or
// arrives within d.
func (c *client) expectNone(what string, d time.Duration, match func(*Elem) bool) {
	c.k.t.Helper()
	e, err := c.await(d, match)
	switch {
	case err == nil:
		c.k.fatalf("%s: got %s: %s", c.who(), what, short(e))
	case err != errTimeout:
		c.k.fatalf("%s: while checking for no %s: %v", c.who(), what, err)
	}
}

// drain reads, without blocking, what has already arrived (so that it is handled).
func (c *client) drain() {
	for {
		select {
		case e, ok := <-c.p.In:
			if !ok {
				c.ended = errors.New("stream ended")
				return
			}
			if c.sm && isStanzaElem(e) {
				c.handled++
			}
			c.backlog = append(c.backlog, e)
		default:
			return
		}
	}
}

// iqErr sends an IQ and returns the reply (result or error).
func (c *client) iqErr(typ, to, payload string) (*Elem, error) {
	id := c.id()
	toAttr := ""
	if to != "" {
		toAttr = ` to='` + to + `'`
	}
	if err := c.trySend(`<iq type='` + typ + `' id='` + id + `'` + toAttr + `>` + payload + `</iq>`); err != nil {
		return nil, err
	}
	return c.await(wait, func(e *Elem) bool {
		return e.XMLName.Local == "iq" && e.Attr("id") == id && (e.Attr("type") == "result" || e.Attr("type") == "error")
	})
}

// iq sends an IQ and returns its reply, result or error; it fails the check on no reply.
func (c *client) iq(what, typ, to, payload string) *Elem {
	c.k.t.Helper()
	r, err := c.iqErr(typ, to, payload)
	if err != nil {
		c.k.fatalf("%s: %s: no reply: %v", c.who(), what, err)
	}
	return r
}

// iqOK is iq that also fails the check if the reply is an error.
func (c *client) iqOK(what, typ, to, payload string) *Elem {
	c.k.t.Helper()
	r := c.iq(what, typ, to, payload)
	if r.Attr("type") != "result" {
		c.k.fatalf("%s: %s: answered with error %s", c.who(), what, r.ErrorCondition())
	}
	return r
}

// sync is a ping round trip to the server: what this client sent before is processed.
func (c *client) sync() {
	c.k.t.Helper()
	c.iqOK("ping", "get", srv.domain, `<ping xmlns='`+nsPing+`'/>`)
}

// closeClean ends the stream as RFC 6120 has it (closing tag, then the server's), which
// also ends a stream-management session instead of leaving it waiting for resumption.
func (c *client) closeClean() {
	if c.ended == nil {
		c.p.CloseClean()
		c.ended = errors.New("closed")
	}
	_ = c.tcp.Close()
}

// drop closes the TCP connection without a closing tag or TLS close_notify: a lost
// connection as the server sees it.
func (c *client) drop() {
	_ = c.tcp.Close()
	c.ended = errors.New("dropped")
}

// --- matchers

func bareOf(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

// msgBody matches a message (not an error) whose body is text.
func msgBody(text string) func(*Elem) bool {
	return func(e *Elem) bool {
		return e.XMLName.Local == "message" && e.Attr("type") != "error" && xmpptest.Body(e) == text
	}
}

// msgError matches an error message about the message whose body is text (the bounce
// carries the original or not: then any error message from to).
func msgError(to string) func(*Elem) bool {
	return func(e *Elem) bool {
		return e.XMLName.Local == "message" && e.Attr("type") == "error" && bareOf(e.Attr("from")) == bareOf(to)
	}
}

// carbon matches a carbon copy (dir received or sent) of a message whose body is text.
func carbon(dir, text string) func(*Elem) bool {
	return func(e *Elem) bool {
		if e.XMLName.Local != "message" {
			return false
		}
		fw := xmpptest.ChildNS(xmpptest.ChildNS(e, nsCarbons, dir), nsForward, "forwarded")
		if fw == nil {
			return false
		}
		inner := fw.Child("message")
		return inner != nil && xmpptest.Body(inner) == text
	}
}

func presenceFrom(bare, typ string) func(*Elem) bool {
	return func(e *Elem) bool {
		return e.XMLName.Local == "presence" && bareOf(e.Attr("from")) == bare && e.Attr("type") == typ
	}
}

func smElem(local string) func(*Elem) bool {
	return func(e *Elem) bool { return e.XMLName.Space == nsSM && e.XMLName.Local == local }
}

func short(e *Elem) string {
	s := e.String()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func token() string { return randHex(6) }
