package federationtest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

// wait bounds every expected answer: generous, the exchanges take milliseconds once the
// streams between the servers are up (the first stanza each way waits for one).
const wait = 10 * time.Second

const (
	nsPing      = "urn:xmpp:ping"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsRoster    = "jabber:iq:roster"
	nsStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsTest      = "urn:example:federationtest" // a payload only the clients know
)

// Elem is an XML element as the tests observe it.
type Elem = xmpptest.Elem

// account is a user on one of the two servers.
type account struct {
	server, c2s, domain string // server: a name for messages
	local, password     string
}

func (a account) bare() string { return a.local + "@" + a.domain }

func fromEnv(t *testing.T) (sb, peer account) {
	t.Helper()
	sb = account{server: "switchboard", c2s: os.Getenv("SWITCHBOARD_FED_SB_C2S"), domain: os.Getenv("SWITCHBOARD_FED_SB_DOMAIN")}
	peer = account{server: os.Getenv("SWITCHBOARD_FED_PEER_NAME"), c2s: os.Getenv("SWITCHBOARD_FED_PEER_C2S"),
		domain: os.Getenv("SWITCHBOARD_FED_PEER_DOMAIN")}
	if sb.c2s == "" || peer.c2s == "" {
		t.Skip("SWITCHBOARD_FED_SB_C2S or SWITCHBOARD_FED_PEER_C2S is not set: needs Switchboard federating with another server, run deploy/test-federation-prosody.sh")
	}
	if sb.domain == "" {
		sb.domain = "sb.test"
	}
	if peer.domain == "" {
		peer.domain = "pr.test"
	}
	if peer.server == "" {
		peer.server = "prosody"
	}
	for _, x := range []struct {
		env string
		a   *account
	}{{"SWITCHBOARD_FED_SB_USER", &sb}, {"SWITCHBOARD_FED_PEER_USER", &peer}} {
		local, pw, ok := strings.Cut(os.Getenv(x.env), ":")
		if !ok || local == "" {
			t.Fatalf("%s must be localpart:password", x.env)
		}
		x.a.local, x.a.password = local, pw
	}
	return sb, peer
}

// mechanisms in order of preference; mellium picks the first the server offers
// (Switchboard: SCRAM-SHA-256; Prosody 0.12: SCRAM-SHA-1).
var mechanisms = []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var errTimeout = xmpptest.ErrTimeout

// client is one logged-in resource as a client sees its stream: the stanzas it has read
// and not yet matched stay in its backlog, in order.
type client struct {
	name    string // alice or bob
	acct    account
	p       *xmpptest.Peer
	full    string
	backlog []*Elem
	ended   error
	ids     int
	other   *client // the user on the other server (its backlog is logged on a failure)
}

// login opens TCP, STARTTLS (no certificate check), SASL, binds a resource of its own
// and sends initial presence (so that messages to the bare JID reach it).
func login(t *testing.T, a account, name string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := net.DialTimeout("tcp", a.c2s, wait)
	if err != nil {
		t.Fatalf("%s: connect to %s (%s): %v", name, a.server, a.c2s, err)
	}
	origin, err := jid.Parse(a.bare())
	if err != nil {
		t.Fatal(err)
	}
	sess, err := xmpp.NewClientSession(ctx, origin, conn,
		xmpp.StartTLS(&tls.Config{ServerName: a.domain, InsecureSkipVerify: true}),
		xmpp.SASL("", a.password, mechanisms...),
		xmpptest.BindFeature("fed-"+randHex(4)))
	if err != nil {
		_ = conn.Close()
		t.Fatalf("%s: login as %s at %s (%s): %v", name, a.bare(), a.server, a.c2s, err)
	}
	c := &client{name: name, acct: a, p: xmpptest.NewPeer(t, sess), full: sess.LocalAddr().String()}
	t.Cleanup(func() {
		if c.ended == nil {
			c.p.CloseClean()
		}
		_ = conn.Close()
	})
	c.send(t, `<presence/>`)
	return c
}

func (c *client) id() string {
	c.ids++
	return c.name[:1] + strconv.Itoa(c.ids) + "-" + randHex(3)
}

func (c *client) send(t *testing.T, raw string) {
	t.Helper()
	if err := c.p.S.Send(context.Background(), xmpptest.Tokens(raw)); err != nil {
		t.Fatalf("%s: send %s: %v", c.name, raw, err)
	}
}

// recv reads the next element; it acknowledges roster pushes on the way, as a client must.
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
	if e.XMLName.Local == "iq" && e.Attr("type") == "set" && e.Child("query") != nil &&
		e.Child("query").XMLName.Space == nsRoster {
		_ = c.p.S.Send(context.Background(), xmpptest.Tokens(`<iq type='result' id='`+xmlEscape(e.Attr("id"))+`'/>`))
	}
	return e, nil
}

// await returns the first element, in the backlog or read within wait, that match
// accepts; the others stay in the backlog. It fails the test with what was expected.
func (c *client) await(t *testing.T, what string, match func(*Elem) bool) *Elem {
	t.Helper()
	for i, e := range c.backlog {
		if match(e) {
			c.backlog = append(c.backlog[:i:i], c.backlog[i+1:]...)
			return e
		}
	}
	deadline := time.After(wait)
	for {
		e, err := c.recv(deadline)
		if err != nil {
			c.logBacklogs(t)
			t.Fatalf("%s: no %s within %v: %v", c.name, what, wait, err)
		}
		if match(e) {
			return e
		}
		c.backlog = append(c.backlog, e)
	}
}

// collect returns the first n elements that match accepts, in the order they arrived.
func (c *client) collect(t *testing.T, what string, n int, match func(*Elem) bool) []*Elem {
	t.Helper()
	var out []*Elem
	rest := c.backlog[:0:0]
	for _, e := range c.backlog {
		if len(out) < n && match(e) {
			out = append(out, e)
		} else {
			rest = append(rest, e)
		}
	}
	c.backlog = rest
	deadline := time.After(wait)
	for len(out) < n {
		e, err := c.recv(deadline)
		if err != nil {
			c.logBacklogs(t)
			t.Fatalf("%s: %d of %d %s within %v: %v", c.name, len(out), n, what, wait, err)
		}
		if match(e) {
			out = append(out, e)
		} else {
			c.backlog = append(c.backlog, e)
		}
	}
	return out
}

// logBacklogs logs what both users received and nothing matched (bounces, mostly), after
// taking in what has already arrived.
func (c *client) logBacklogs(t *testing.T) {
	t.Helper()
	for _, x := range []*client{c, c.other} {
		if x == nil {
			continue
		}
		x.drain()
		for _, e := range x.backlog {
			t.Logf("%s had received: %s", x.name, short(e))
		}
	}
}

func (c *client) drain() {
	for c.ended == nil {
		select {
		case e, ok := <-c.p.In:
			if !ok {
				c.ended = errors.New("stream ended")
				return
			}
			c.backlog = append(c.backlog, e)
		default:
			return
		}
	}
}

// iq sends an IQ and returns its answer (result or error).
func (c *client) iq(t *testing.T, what, typ, to, payload string) *Elem {
	t.Helper()
	id := c.id()
	c.send(t, `<iq type='`+typ+`' id='`+id+`' to='`+to+`'>`+payload+`</iq>`)
	return c.await(t, "answer to "+what+" (iq "+id+")", func(e *Elem) bool {
		return e.XMLName.Local == "iq" && e.Attr("id") == id && (e.Attr("type") == "result" || e.Attr("type") == "error")
	})
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func bareOf(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

func short(e *Elem) string {
	s := e.String()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func isMessage(id string) func(*Elem) bool {
	return func(e *Elem) bool { return e.XMLName.Local == "message" && e.Attr("id") == id }
}

// discoHas reports whether a disco#info result has the identity category/type and feature.
func discoHas(e *Elem, category, typ, feature string) (identity, feat bool) {
	q := xmpptest.ChildNS(e, nsDiscoInfo, "query")
	if q == nil {
		return false, false
	}
	for i := range q.Nodes {
		n := &q.Nodes[i]
		switch n.XMLName.Local {
		case "identity":
			identity = identity || (n.Attr("category") == category && n.Attr("type") == typ)
		case "feature":
			feat = feat || n.Attr("var") == feature
		}
	}
	return identity, feat
}

// RFC 6120 federation between Switchboard (alice) and another server (bob), each user
// logged in to their own, checked as the users observe it.
func TestFederation(t *testing.T) {
	sbAcct, peerAcct := fromEnv(t)
	alice := login(t, sbAcct, "alice")
	bob := login(t, peerAcct, "bob")
	alice.other, bob.other = bob, alice
	sb, peer := sbAcct.domain, peerAcct.domain
	t.Logf("alice %s on switchboard (%s), bob %s on %s (%s)", alice.full, sbAcct.c2s, bob.full, peerAcct.server, peerAcct.c2s)

	// A chat message from one user to the other's JID (full or bare) arrives from the
	// sender's full JID with its id, type and body.
	message := func(t *testing.T, from, to *client, toJID string) {
		id := from.id()
		text := "hello from " + from.name + " " + id
		from.send(t, `<message to='`+toJID+`' type='chat' id='`+id+`'><body>`+text+`</body></message>`)
		m := to.await(t, "message "+id+" from "+from.name, isMessage(id))
		if m.Attr("type") != "chat" || m.Attr("from") != from.full || bareOf(m.Attr("to")) != to.acct.bare() || xmpptest.Body(m) != text {
			t.Fatalf("%s got %s", to.name, short(m))
		}
	}
	t.Run("message_sb_to_peer_full", func(t *testing.T) { message(t, alice, bob, bob.full) })
	t.Run("message_sb_to_peer_bare", func(t *testing.T) { message(t, alice, bob, bob.acct.bare()) })
	t.Run("message_peer_to_sb_full", func(t *testing.T) { message(t, bob, alice, alice.full) })
	t.Run("message_peer_to_sb_bare", func(t *testing.T) { message(t, bob, alice, alice.acct.bare()) })

	// XEP-0199 ping to the other server: a result from that domain.
	ping := func(t *testing.T, c *client, server string) {
		r := c.iq(t, "ping "+server, "get", server, `<ping xmlns='`+nsPing+`'/>`)
		if r.Attr("type") != "result" || r.Attr("from") != server {
			t.Fatalf("%s: ping %s: %s", c.name, server, short(r))
		}
	}
	t.Run("ping_peer_server", func(t *testing.T) { ping(t, alice, peer) })
	t.Run("ping_sb_server", func(t *testing.T) { ping(t, bob, sb) })

	// An IQ to the other user's full JID reaches that client from the sender's full JID,
	// and the client's answer, payload included, comes back.
	iqUser := func(t *testing.T, from, to *client) {
		id := from.id()
		from.send(t, `<iq type='get' id='`+id+`' to='`+to.full+`'><query xmlns='`+nsTest+`'/></iq>`)
		q := to.await(t, "iq "+id+" from "+from.name, func(e *Elem) bool { return e.XMLName.Local == "iq" && e.Attr("id") == id })
		if q.Attr("type") != "get" || q.Attr("from") != from.full || xmpptest.ChildNS(q, nsTest, "query") == nil {
			t.Fatalf("%s got %s", to.name, short(q))
		}
		to.send(t, `<iq type='result' id='`+xmlEscape(id)+`' to='`+xmlEscape(q.Attr("from"))+`'><query xmlns='`+nsTest+`'><answer>42 from `+to.name+`</answer></query></iq>`)
		r := from.await(t, "answer to iq "+id, func(e *Elem) bool { return e.XMLName.Local == "iq" && e.Attr("id") == id })
		qr := xmpptest.ChildNS(r, nsTest, "query")
		if r.Attr("type") != "result" || r.Attr("from") != to.full || qr == nil || qr.Child("answer") == nil ||
			qr.Child("answer").Text != "42 from "+to.name {
			t.Fatalf("%s got the answer %s", from.name, short(r))
		}
	}
	t.Run("iq_sb_to_peer_user", func(t *testing.T) { iqUser(t, alice, bob) })
	t.Run("iq_peer_to_sb_user", func(t *testing.T) { iqUser(t, bob, alice) })

	// disco#info of the other server: an XMPP server (identity server/im) with XEP-0199.
	disco := func(t *testing.T, c *client, server string) {
		r := c.iq(t, "disco#info "+server, "get", server, `<query xmlns='`+nsDiscoInfo+`'/>`)
		identity, ping := discoHas(r, "server", "im", nsPing)
		if r.Attr("type") != "result" || r.Attr("from") != server || !identity || !ping {
			t.Fatalf("%s: disco#info %s (want identity server/im, feature %s): %s", c.name, server, nsPing, short(r))
		}
	}
	t.Run("disco_info_peer_server", func(t *testing.T) { disco(t, alice, peer) })
	t.Run("disco_info_sb_server", func(t *testing.T) { disco(t, bob, sb) })

	// A chat message to a user who does not exist on the other server: RFC 6121 §8.5.2.2.1
	// lets that server ignore it or answer service-unavailable; both do the latter (Prosody
	// 0.12's mod_message), from the JID it was sent to, with the message's id.
	noUser := func(t *testing.T, c *client, server string) {
		to := "nobody-" + randHex(3) + "@" + server
		id := c.id()
		c.send(t, `<message to='`+to+`' type='chat' id='`+id+`'><body>anyone?</body></message>`)
		r := c.await(t, "error for "+to, isMessage(id))
		if r.Attr("type") != "error" || r.ErrorCondition() != "service-unavailable" || r.Attr("from") != to ||
			r.Child("error").Attr("type") != "cancel" {
			t.Fatalf("%s: message to %s answered %s", c.name, to, short(r))
		}
	}
	t.Run("error_message_to_nobody_at_peer", func(t *testing.T) { noUser(t, alice, peer) })
	t.Run("error_message_to_nobody_at_sb", func(t *testing.T) { noUser(t, bob, sb) })

	// An IQ to a resource of the other user that is not connected: service-unavailable
	// (RFC 6121 §8.5.3.2.1), from that full JID.
	noResource := func(t *testing.T, from, to *client) {
		target := to.acct.bare() + "/gone-" + randHex(3)
		r := from.iq(t, "ping "+target, "get", target, `<ping xmlns='`+nsPing+`'/>`)
		if r.Attr("type") != "error" || r.ErrorCondition() != "service-unavailable" || r.Attr("from") != target {
			t.Fatalf("%s: iq to %s answered %s", from.name, target, short(r))
		}
	}
	t.Run("error_iq_to_gone_resource_at_peer", func(t *testing.T) { noResource(t, alice, bob) })
	t.Run("error_iq_to_gone_resource_at_sb", func(t *testing.T) { noResource(t, bob, alice) })

	// 200 messages each way, sent interleaved, all arrive, in the order sent.
	t.Run("burst_200_each_way_in_order", func(t *testing.T) {
		const n = 200
		prefixA, prefixB := "burst-a-"+randHex(3)+"-", "burst-b-"+randHex(3)+"-"
		for i := 0; i < n; i++ {
			alice.send(t, `<message to='`+bob.full+`' type='chat' id='`+prefixA+strconv.Itoa(i)+`'><body>a`+strconv.Itoa(i)+`</body></message>`)
			bob.send(t, `<message to='`+alice.full+`' type='chat' id='`+prefixB+strconv.Itoa(i)+`'><body>b`+strconv.Itoa(i)+`</body></message>`)
		}
		for _, x := range []struct {
			c      *client
			prefix string
		}{{bob, prefixA}, {alice, prefixB}} {
			got := x.c.collect(t, "burst messages", n, func(e *Elem) bool {
				return e.XMLName.Local == "message" && strings.HasPrefix(e.Attr("id"), x.prefix)
			})
			for i, m := range got {
				if m.Attr("id") != x.prefix+strconv.Itoa(i) || m.Attr("type") != "chat" {
					t.Fatalf("%s: burst message %d of %d is %s", x.c.name, i, n, short(m))
				}
			}
		}
	})

	// RFC 6121 §3: alice subscribes to bob's presence and bob approves, then the other
	// way round; each then sees the other's available presence. Not in Switchboard yet.
	t.Run("presence_subscription", func(t *testing.T) {
		t.Cleanup(func() { // leave the rosters as they were (best effort)
			for _, x := range []struct{ c, o *client }{{alice, bob}, {bob, alice}} {
				_ = x.c.p.S.Send(context.Background(), xmpptest.Tokens(`<iq type='set' id='cleanup-`+randHex(3)+`'><query xmlns='`+
					nsRoster+`'><item jid='`+x.o.acct.bare()+`' subscription='remove'/></query></iq>`))
			}
		})
		// Real clients fetch the roster first: a server sends roster pushes, and inbound
		// approvals, only to resources that did (RFC 6121 §2.1.6; Prosody holds to it).
		for _, c := range []*client{alice, bob} {
			id := "roster-" + randHex(3)
			c.send(t, `<iq type='get' id='`+id+`'><query xmlns='`+nsRoster+`'/></iq>`)
			c.await(t, "the roster", func(e *Elem) bool { return e.Attr("id") == id })
		}
		presence := func(from *client, typ string) func(*Elem) bool {
			return func(e *Elem) bool {
				return e.XMLName.Local == "presence" && bareOf(e.Attr("from")) == from.acct.bare() && e.Attr("type") == typ
			}
		}
		handshake := func(t *testing.T, user, contact *client) {
			user.send(t, `<presence to='`+contact.acct.bare()+`' type='subscribe'/>`)
			if r := contact.await(t, "subscribe from "+user.name, presence(user, "subscribe")); r.Attr("from") != user.acct.bare() {
				t.Fatalf("%s: subscription request %s (RFC 6121 §3.1.3: from the bare JID)", contact.name, short(r))
			}
			contact.send(t, `<presence to='`+user.acct.bare()+`' type='subscribed'/>`)
			if r := user.await(t, "subscribed from "+contact.name, presence(contact, "subscribed")); r.Attr("from") != contact.acct.bare() {
				t.Fatalf("%s: approval %s (RFC 6121 §3.1.5: from the bare JID)", user.name, short(r))
			}
			// §3.1.5: the contact's server then sends the contact's available presence.
			if r := user.await(t, "available presence from "+contact.name, presence(contact, "")); r.Attr("from") != contact.full {
				t.Fatalf("%s: presence %s, want from %s", user.name, short(r), contact.full)
			}
		}
		handshake(t, alice, bob)
		handshake(t, bob, alice)
		// A new presence of each reaches the other (a subscription both ways now).
		for _, x := range []struct{ c, o *client }{{alice, bob}, {bob, alice}} {
			status := "status-" + randHex(3)
			x.c.send(t, `<presence><status>`+status+`</status></presence>`)
			r := x.o.await(t, "presence of "+x.c.name+" with status "+status, func(e *Elem) bool {
				return e.XMLName.Local == "presence" && e.Attr("from") == x.c.full && e.Child("status") != nil && e.Child("status").Text == status
			})
			if r.Attr("type") != "" {
				t.Fatalf("%s got %s", x.o.name, short(r))
			}
		}
	})
}
