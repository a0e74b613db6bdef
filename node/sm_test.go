package node_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

// smClient is a client of stream management (XEP-0198) as a test drives it: it counts
// the stanzas it receives (h) and answers the server's <r/> only when told to.
type smClient struct {
	t      *testing.T
	p      *peer
	h      uint32 // stanzas received since enable
	asked  int    // <r/> the server sent
	id     string // resumption id
	full   string
	answer bool // answer <r/> at once
}

// enableSM binds local/res and enables stream management (resume: with resumption).
func enableSM(t *testing.T, s *server, local, res string, resume bool, extra string) *smClient {
	t.Helper()
	p, err := s.dialClient(local, "pw", res, sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	attr := ""
	if resume {
		attr = " resume='true'"
	}
	p.Send(`<enable xmlns='urn:xmpp:sm:3'` + attr + extra + `/>`)
	e := p.Next(wait)
	if e.XMLName.Local != "enabled" || e.XMLName.Space != "urn:xmpp:sm:3" {
		t.Fatalf("enable: %s", e)
	}
	if resume && (e.Attr("id") == "" || e.Attr("resume") != "true") {
		t.Fatalf("enable with resumption: %s", e)
	}
	return &smClient{t: t, p: p, id: e.Attr("id"), full: local + "@localhost/" + res}
}

// next is the next stanza, counted; <r/> is noted (and answered if c.answer).
func (c *smClient) next() *elem {
	c.t.Helper()
	for {
		e := c.p.Next(wait)
		if e.XMLName.Space == "urn:xmpp:sm:3" {
			if e.XMLName.Local == "r" {
				c.asked++
				if c.answer {
					c.ack()
				}
				continue
			}
			c.t.Fatalf("%s: unexpected %s", c.full, e)
		}
		c.h++
		return e
	}
}

// nextMessage skips presence (counted) up to a message.
func (c *smClient) nextMessage() *elem {
	c.t.Helper()
	for {
		if e := c.next(); e.XMLName.Local == "message" {
			return e
		}
	}
}

func (c *smClient) ack() {
	c.p.Send(`<a xmlns='urn:xmpp:sm:3' h='` + strconv.FormatUint(uint64(c.h), 10) + `'/>`)
}

// drop loses the connection without a closing tag, as a phone changing networks does.
func (c *smClient) drop() { _ = c.p.S.Conn().Close() }

// XEP-0198 acks: the server counts what the client sent exactly (IQs, messages,
// presence, errors to bad stanzas), asks once per burst for the client's count, and
// enable before bind or twice fails.
func TestStreamManagementAcks(t *testing.T) {
	s := startNode(t)
	s.addUser("alice", "pw")
	s.addUser("bob", "pw")

	// Resumption of nothing.
	if _, ans, err := xmpptest.DialResume(t, s.n.Addrs.C2S, "alice", "pw", "", "bogus", 0); err == nil || ans.Child("item-not-found") == nil {
		t.Fatalf("resume with a bogus id: %v %s", err, ans)
	}

	a := enableSM(t, s, "alice", "phone", false, "")
	if a.id != "" {
		t.Fatalf("no resumption asked, yet an id: %s", a.id)
	}
	b := s.client("bob", "pw")

	a.p.Send(`<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	a.p.Send(`<presence/>`)
	a.p.Send(`<iq type='get' id='bad'/>`) // no child: bad-request, still a stanza handled
	a.p.Send(chat(b.JID, "to-bob"))
	a.p.Send(`<r xmlns='urn:xmpp:sm:3'/>`)
	var got []string
	for len(got) < 3 {
		e := a.p.Next(wait)
		switch {
		case e.XMLName.Local == "a":
			if e.Attr("h") != "4" {
				t.Fatalf("server's count: %s, want h='4'", e)
			}
			got = append(got, "a")
		case e.XMLName.Local == "r":
			a.asked++
		default:
			a.h++
			got = append(got, e.Attr("id"))
		}
	}
	if strings.Join(got, " ") == "" || !strings.Contains(" "+strings.Join(got, " ")+" ", " p1 ") || !strings.Contains(strings.Join(got, " "), "bad") {
		t.Fatalf("got %v, want the ping's result, the bad-request and <a/>", got)
	}
	if m := b.Next(wait); m.Attr("id") != "to-bob" {
		t.Fatalf("bob got %s", m)
	}

	// The server asks for the client's count after what it sends, once until answered.
	for i := 0; i < 3; i++ {
		b.Send(chat("alice@localhost/phone", "m"+strconv.Itoa(i)))
	}
	for i := 0; i < 3; i++ {
		if m := a.nextMessage(); m.Attr("id") != "m"+strconv.Itoa(i) {
			t.Fatalf("alice got %s", m)
		}
	}
	deadline := time.Now().Add(wait)
	for a.asked == 0 && time.Now().Before(deadline) {
		a.next()
	}
	if a.asked == 0 {
		t.Fatal("the server never asked for an acknowledgement")
	}
	a.ack()
	a.p.Send(`<enable xmlns='urn:xmpp:sm:3'/>`) // twice
	if e := a.p.Next(wait); e.XMLName.Local != "failed" || e.Child("unexpected-request") == nil {
		t.Fatalf("second enable: %s", e)
	}
	a.p.Sync()
}

// XEP-0198 resumption: a client whose connection drops resumes on a new one with the
// count of what it handled; the server answers with its own count and sends again what
// the client had not handled, then what came while it was away. The user stayed
// available meanwhile.
func TestStreamResumption(t *testing.T) {
	s := startNode(t)
	s.addUser("alice", "pw")
	s.addUser("bob", "pw")
	s.addUser("eve", "pw")
	a := enableSM(t, s, "alice", "phone", true, " max='60'")
	a.answer = false
	b := s.client("bob", "pw")

	a.p.Send(`<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := a.next(); r.Attr("id") != "p1" {
		t.Fatalf("ping: %s", r)
	}
	a.p.Send(chat(b.JID, "a1"))
	b.Next(wait)
	b.Send(chat("alice@localhost/phone", "m1"))
	b.Send(chat("alice@localhost/phone", "m2"))
	if m := a.nextMessage(); m.Attr("id") != "m1" {
		t.Fatalf("alice got %s", m)
	}
	a.ack() // h: the ping result and m1
	// m2 arrives but the client "loses" it with the connection: it does not count it.
	if m := a.nextMessage(); m.Attr("id") != "m2" {
		t.Fatalf("alice got %s", m)
	}
	a.h--
	handled := a.h
	a.drop()
	time.Sleep(200 * time.Millisecond)
	b.Send(chat("alice@localhost/phone", "m3"))
	b.Send(`<iq type='get' id='q1' to='alice@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>`)

	// Someone else cannot take the session.
	if _, ans, err := xmpptest.DialResume(t, s.n.Addrs.C2S, "eve", "pw", a.full, a.id, 0); err == nil || ans.XMLName.Local != "failed" || ans.Child("item-not-found") == nil {
		t.Fatalf("eve resumed alice's session: %v %s", err, ans)
	}

	p, ans, err := xmpptest.DialResume(t, s.n.Addrs.C2S, "alice", "pw", a.full, a.id, handled)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	// alice sent the ping and a1: two.
	if ans.Attr("h") != "2" || ans.Attr("previd") != a.id {
		t.Fatalf("resumed: %s, want h='2'", ans)
	}
	a.p = p
	if m := a.nextMessage(); m.Attr("id") != "m2" {
		t.Fatalf("first after resumption: %s, want m2 again", m)
	}
	if m := a.nextMessage(); m.Attr("id") != "m3" {
		t.Fatalf("then %s, want m3", m)
	}
	if iq := a.next(); iq.Attr("id") != "q1" {
		t.Fatalf("then %s, want the IQ q1", iq)
	}
	a.p.Send(`<iq type='result' id='q1' to='bob@localhost/` + strings.SplitN(b.JID, "/", 2)[1] + `'/>`)
	if r := b.Next(wait); r.Attr("id") != "q1" || r.Attr("type") != "result" {
		t.Fatalf("bob's IQ: %s", r)
	}
	// And it goes on both ways, counted on from where it was.
	b.Send(chat("alice@localhost/phone", "m4"))
	if m := a.nextMessage(); m.Attr("id") != "m4" {
		t.Fatalf("after resumption: %s", m)
	}
	a.p.Send(`<r xmlns='urn:xmpp:sm:3'/>`)
	for {
		e := a.p.Next(wait)
		if e.XMLName.Local == "a" {
			if e.Attr("h") != "3" {
				t.Fatalf("server's count after resumption: %s, want 3", e)
			}
			break
		}
	}
	// A second resumption takes the session over from the first (whose connection is
	// closed), as when the client cannot tell whether the first went through.
	p2, ans, err := xmpptest.DialResume(t, s.n.Addrs.C2S, "alice", "pw", a.full, a.id, a.h)
	if err != nil || ans.Attr("h") != "3" {
		t.Fatalf("second resume: %v %s", err, ans)
	}
	waitFor(t, wait, "the first connection closed", func() bool {
		select {
		case _, ok := <-p.In:
			return !ok
		default:
			return false
		}
	})
	p2.Sync()
}

// A session that is not resumed in time ends: the user goes unavailable, unacknowledged
// messages go to offline storage, IQ requests are answered service-unavailable, and
// the old id fails.
func TestStreamResumptionTimeout(t *testing.T) {
	s := startNode(t, func(c *config.Config) { c.Limits.SMResumeTimeout = config.Duration(time.Second) })
	s.addUser("alice", "pw")
	s.addUser("bob", "pw")
	a := enableSM(t, s, "alice", "phone", true, " max='600'")
	b := s.client("bob", "pw")
	b.Send(chat("alice@localhost/phone", "m1"))
	if m := a.nextMessage(); m.Attr("id") != "m1" {
		t.Fatalf("alice got %s", m)
	}
	a.drop() // m1 never acknowledged
	time.Sleep(200 * time.Millisecond)
	b.Send(chat("alice@localhost/phone", "m2"))
	b.Send(`<message to='alice@localhost/phone' type='headline' id='h1'><body>news</body></message>`)
	b.Send(`<iq type='get' id='q1' to='alice@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if e := b.Next(3 * time.Second); e.Attr("id") != "q1" || e.ErrorCondition() != "service-unavailable" {
		t.Fatalf("bob's IQ to the lost session: %s", e)
	}
	if _, ans, err := xmpptest.DialResume(t, s.n.Addrs.C2S, "alice", "pw", a.full, a.id, 0); err == nil || ans.Child("item-not-found") == nil {
		t.Fatalf("resumed after the timeout: %v %s", err, ans)
	}
	p := online(t, s, "alice", "laptop")
	var ids []string
	for len(ids) < 2 {
		m := until(t, p, "offline messages", func(e *elem) bool { return e.XMLName.Local == "message" })
		if m.Child("delay") == nil {
			t.Fatalf("offline message without delay: %s", m)
		}
		ids = append(ids, m.Attr("id"))
	}
	if ids[0] != "m1" || ids[1] != "m2" {
		t.Fatalf("offline messages %v, want m1 m2", ids)
	}
	p.ExpectNothing(300 * time.Millisecond) // not the headline
}

// A client that never acknowledges is cut off past limits.sm_max_unacked; what it did
// not acknowledge is not lost.
func TestStreamManagementUnackedLimit(t *testing.T) {
	s := startNode(t, func(c *config.Config) { c.Limits.SMMaxUnacked = 3 })
	s.addUser("alice", "pw")
	s.addUser("bob", "pw")
	a := enableSM(t, s, "alice", "phone", false, "")
	b := s.client("bob", "pw")
	for i := 0; i < 4; i++ { // the fourth is one too many
		b.Send(chat("alice@localhost/phone", "m"+strconv.Itoa(i)))
	}
	waitFor(t, wait, "alice's stream ended", func() bool {
		for {
			select {
			case e, ok := <-a.p.In:
				if !ok {
					return true
				}
				_ = e
			default:
				return false
			}
		}
	})
	p := online(t, s, "alice", "laptop")
	for i := 0; i < 4; i++ {
		m := until(t, p, "offline messages", func(e *elem) bool { return e.XMLName.Local == "message" })
		if m.Attr("id") != "m"+strconv.Itoa(i) {
			t.Fatalf("offline message %d: %s", i, m)
		}
	}
}

// A client silent past limits.idle_timeout gets connection-timeout, but a resumable
// session waits for it: it resumes and gets what came meanwhile.
func TestIdleTimeoutDetachesResumableSession(t *testing.T) {
	s := startNode(t, func(c *config.Config) { c.Limits.IdleTimeout = config.Duration(time.Second) })
	s.addUser("alice", "pw")
	s.addUser("bob", "pw")
	a := enableSM(t, s, "alice", "phone", true, "")
	for range a.p.In { // silent until the server gives up on the connection
	}
	b := s.client("bob", "pw")
	b.Send(chat("alice@localhost/phone", "m1"))
	b.Sync()
	p, ans, err := xmpptest.DialResume(t, s.n.Addrs.C2S, "alice", "pw", a.full, a.id, 0)
	if err != nil {
		t.Fatalf("resume after the idle timeout: %v %s", err, ans)
	}
	a.p = p
	if m := a.nextMessage(); m.Attr("id") != "m1" {
		t.Fatalf("after resumption: %s", m)
	}
}
