package node_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/roster"
)

// until reads p's stanzas until one satisfies ok, answering roster pushes on the way; a
// stanza that is neither wanted nor a push fails the test.
func until(t *testing.T, p *peer, what string, ok func(*elem) bool) *elem {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		e := p.Next(wait)
		if ok(e) {
			return e
		}
		if e.XMLName.Local == "iq" && e.Attr("type") == "set" && e.Child("query") != nil {
			p.Send(`<iq type='result' id='` + e.Attr("id") + `'/>`)
			continue
		}
		if e.XMLName.Local == "presence" && strings.HasPrefix(e.Attr("from"), strings.SplitN(p.JID, "/", 2)[0]+"/") {
			continue // the user's other resources
		}
		t.Fatalf("%s: waiting for %s, got %s", p.JID, what, e)
	}
	t.Fatalf("%s: no %s", p.JID, what)
	return nil
}

func pushOf(jid, sub string, ask bool) func(*elem) bool {
	return func(e *elem) bool {
		q := e.Child("query")
		if e.Attr("type") != "set" || q == nil || q.Child("item") == nil {
			return false
		}
		it := q.Child("item")
		return it.Attr("jid") == jid && it.Attr("subscription") == sub && (it.Attr("ask") == "subscribe") == ask
	}
}

func presenceOf(from, typ string) func(*elem) bool {
	return func(e *elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("from") == from && e.Attr("type") == typ
	}
}

// mutual subscribes two users of localhost to each other (in etcd directly).
func mutual(t *testing.T, s *server, a, b string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs := roster.New(s.cli, s.cfg.Etcd.Prefix, 0)
	for user, contact := range map[string]string{a: b + "@localhost", b: a + "@localhost"} {
		if _, _, err := rs.Update(ctx, "localhost", user, func(r *roster.Roster) (bool, error) {
			r.Items = append(r.Items, roster.Item{JID: contact, Subscription: roster.SubBoth})
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// A flood of presence updates (backpressure finding of the security review: each one
// cost a roster read and a stanza per contact, queued without bound) coalesces: the
// contact gets the updates in order, ending with the latest, and far fewer of them.
func TestPresenceFloodCoalesces(t *testing.T) {
	s := startNode(t)
	s.addUser("juliet", "pw")
	s.addUser("romeo", "pw")
	mutual(t, s, "juliet", "romeo")
	r := online(t, s, "romeo", "orchard")
	j := online(t, s, "juliet", "balcony")
	until(t, r, "juliet's initial presence", presenceOf("juliet@localhost/balcony", ""))
	const n = 500
	var flood strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&flood, "<presence><status>%d</status></presence>", i)
	}
	j.SendBatch(flood.String())
	got, last := 0, 0
	for last != n {
		e := until(t, r, "juliet's update", presenceOf("juliet@localhost/balcony", ""))
		v, err := strconv.Atoi(e.Child("status").Text)
		// The same one twice is allowed: romeo's presence probe (sent at his login, its
		// roster read maybe slow on a busy machine) is answered with juliet's presence
		// as it is when it is answered, which may be mid-flood.
		if err != nil || v < last {
			t.Fatalf("update %s after %d", e, last)
		}
		last = v
		got++
	}
	r.ExpectNothing(300 * time.Millisecond)
	t.Logf("%d updates sent, %d broadcast", n, got)
	if got > n/2 {
		t.Fatalf("%d of %d updates were broadcast: they did not coalesce", got, n)
	}
}

// online logs a user in with a resource, asks for the roster and sends initial presence.
func online(t *testing.T, s *server, user, res string) *peer {
	t.Helper()
	p, err := s.dialClient(user, "pw", res, sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	rosterGet(t, p, "g")
	p.Send(`<presence/>`)
	return p
}

// RFC 6121 §3 and §4 between this server's users: a request, its approval, presence that
// follows the subscription (and only it), requests kept for an offline user, a refusal,
// a mutual subscription with probes at login, and removal of the roster item.
func TestPresenceSubscriptions(t *testing.T) {
	s := startNode(t)
	for _, u := range []string{"juliet", "romeo", "nurse"} {
		s.addUser(u, "pw")
	}
	j := online(t, s, "juliet", "balcony")
	r := online(t, s, "romeo", "orchard")

	// romeo asks; juliet approves.
	r.Send(`<presence type='subscribe' to='juliet@localhost'/>`)
	until(t, r, "push ask=subscribe", pushOf("juliet@localhost", "none", true))
	until(t, j, "the request", presenceOf("romeo@localhost", "subscribe"))
	j.Send(`<presence type='subscribed' to='romeo@localhost'/>`)
	until(t, j, "push from", pushOf("romeo@localhost", "from", false))
	until(t, r, "push to", pushOf("juliet@localhost", "to", false))
	until(t, r, "the approval", presenceOf("juliet@localhost", "subscribed"))
	until(t, r, "juliet's presence", presenceOf("juliet@localhost/balcony", ""))

	// Presence follows the subscription: juliet's reaches romeo, romeo's does not reach her.
	j.Send(`<presence><show>away</show></presence>`)
	if p := until(t, r, "juliet away", presenceOf("juliet@localhost/balcony", "")); p.Child("show") == nil {
		t.Fatalf("romeo got %s", p)
	}
	r.Send(`<presence><show>dnd</show></presence>`)
	r.Sync()
	j.ExpectNothing(300 * time.Millisecond)

	// A request to an offline user waits for her next login; she refuses it.
	r.Send(`<presence type='subscribe' to='nurse@localhost'/>`)
	until(t, r, "push ask", pushOf("nurse@localhost", "none", true))
	n := online(t, s, "nurse", "kitchen")
	until(t, n, "the stored request", presenceOf("romeo@localhost", "subscribe"))
	n.Send(`<presence type='unsubscribed' to='romeo@localhost'/>`)
	until(t, r, "push ask cleared", pushOf("nurse@localhost", "none", false))
	until(t, r, "the refusal", presenceOf("nurse@localhost", "unsubscribed"))

	// Mutual: juliet asks romeo too; now both. A new resource of juliet learns romeo's
	// presence at login (a probe), and romeo learns that she came.
	j.Send(`<presence type='subscribe' to='romeo@localhost'/>`)
	until(t, r, "juliet's request", presenceOf("juliet@localhost", "subscribe"))
	r.Send(`<presence type='subscribed' to='juliet@localhost'/>`)
	until(t, r, "push both", pushOf("juliet@localhost", "both", false))
	until(t, j, "push both", pushOf("romeo@localhost", "both", false))
	until(t, j, "romeo's approval", presenceOf("romeo@localhost", "subscribed"))
	until(t, j, "romeo's presence", presenceOf("romeo@localhost/orchard", ""))
	j2 := online(t, s, "juliet", "garden")
	if p := until(t, j2, "probe answer", presenceOf("romeo@localhost/orchard", "")); p.Child("show") == nil {
		t.Fatalf("probe answer %s", p)
	}
	until(t, r, "juliet/garden", presenceOf("juliet@localhost/garden", ""))
	j2.Close()
	until(t, r, "juliet/garden gone", presenceOf("juliet@localhost/garden", "unavailable"))

	// romeo removes juliet from his roster: both subscriptions end (RFC 6121 §2.5.2).
	r.Send(`<iq type='set' id='rm'><query xmlns='` + nsRoster + `'><item jid='juliet@localhost' subscription='remove'/></query></iq>`)
	until(t, r, "removal result", func(e *elem) bool { return e.Attr("id") == "rm" && e.Attr("type") == "result" })
	// juliet is told both: unsubscribe, unsubscribed, romeo's unavailable presence, and
	// pushes down to subscription none.
	seen := map[string]bool{}
	for !seen["unsubscribe"] || !seen["unsubscribed"] || !seen["unavailable"] || !seen["push none"] {
		e := j.Next(wait)
		switch {
		case e.XMLName.Local == "presence" && strings.HasPrefix(e.Attr("from"), "romeo@localhost"):
			seen[e.Attr("type")] = true
		case e.XMLName.Local == "presence" && strings.HasPrefix(e.Attr("from"), "juliet@localhost/"):
		case pushOf("romeo@localhost", "none", false)(e):
			seen["push none"] = true
			j.Send(`<iq type='result' id='` + e.Attr("id") + `'/>`)
		case e.Attr("type") == "set" && e.Child("query") != nil:
			j.Send(`<iq type='result' id='` + e.Attr("id") + `'/>`)
		default:
			t.Fatalf("juliet got %s after romeo removed her (saw %v)", e, seen)
		}
	}
	j.Send(`<presence><show>chat</show></presence>`)
	j.Sync()
	time.Sleep(200 * time.Millisecond)
	for {
		select {
		case e := <-r.In:
			if e.XMLName.Local == "presence" && e.Attr("from") == "juliet@localhost/balcony" && e.Attr("type") == "" {
				t.Fatalf("romeo still gets juliet's presence: %s", e)
			}
			continue
		default:
		}
		break
	}
}

// XEP-0356 presence privilege "roster": the component gets every presence the host's
// users receive from their contacts, updates included; "managed_entity" gets only the
// users' initial and unavailable presence.
func TestRosterPresencePrivilege(t *testing.T) {
	s := startNode(t, func(c *config.Config) {
		c.Components[0].Privileges = config.Privileges{Roster: "get", Presence: "roster"}
		c.Components = append(c.Components, config.ComponentConfig{JID: "other.localhost", Secret: secret,
			Privileges: config.Privileges{Presence: "managed_entity"}})
	})
	s.addUser("juliet", "pw")
	s.addUser("romeo", "pw")
	mutual(t, s, "juliet", "romeo")
	comp := s.managingEntity("comp.localhost", nil)
	other := s.managingEntity("other.localhost", nil)
	j := online(t, s, "juliet", "balcony")
	for _, m := range []*managing{comp, other} {
		m.NextOther(t, wait, "juliet's initial presence", func(e *elem) bool {
			return e.XMLName.Local == "presence" && e.Attr("from") == "juliet@localhost/balcony"
		})
	}
	r := online(t, s, "romeo", "orchard")
	until(t, j, "romeo online", presenceOf("romeo@localhost/orchard", ""))
	for _, m := range []*managing{comp, other} {
		m.NextOther(t, wait, "romeo's initial presence", func(e *elem) bool {
			return e.XMLName.Local == "presence" && e.Attr("from") == "romeo@localhost/orchard"
		})
	}
	r.Send(`<presence><show>away</show></presence>`)
	until(t, j, "romeo away", presenceOf("romeo@localhost/orchard", ""))
	if p := comp.NextOther(t, wait, "stanza", nil); p.Attr("from") != "romeo@localhost/orchard" || p.Child("show") == nil {
		t.Fatalf("roster-presence component got %s", p)
	}
	select {
	case e := <-other.Other:
		t.Fatalf("managed_entity component got %s", e)
	case <-time.After(300 * time.Millisecond):
	}
	select {
	case e := <-comp.Other:
		t.Fatalf("roster-presence component got a second stanza %s", e)
	case <-time.After(100 * time.Millisecond):
	}
}
