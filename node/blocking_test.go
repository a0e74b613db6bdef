package node_test

import (
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/config"
)

const nsBlocking = "urn:xmpp:blocking"

// blockIQ sends a blocking IQ (op blocklist, block or unblock, with item JIDs) and returns
// its answer; blocklist pushes and presence that come first are skipped.
func blockIQ(t *testing.T, p *peer, id, op string, jids ...string) *elem {
	t.Helper()
	typ := "set"
	if op == "blocklist" {
		typ = "get"
	}
	var b strings.Builder
	b.WriteString(`<iq type='` + typ + `' id='` + id + `'><` + op + ` xmlns='` + nsBlocking + `'>`)
	for _, j := range jids {
		b.WriteString(`<item jid='` + j + `'/>`)
	}
	b.WriteString(`</` + op + `></iq>`)
	p.Send(b.String())
	return nextWith(t, p, "the answer to "+id, func(e *elem) bool { return e.Attr("id") == id })
}

// nextWith reads p's stanzas until one satisfies ok, skipping blocklist pushes and presence.
func nextWith(t *testing.T, p *peer, what string, ok func(*elem) bool) *elem {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		e := p.Next(wait)
		if ok(e) {
			return e
		}
		if e.XMLName.Local == "presence" || isBlockPush(e, "") {
			continue
		}
		t.Fatalf("%s: waiting for %s, got %s", p.JID, what, e)
	}
	t.Fatalf("%s: no %s", p.JID, what)
	return nil
}

// isBlockPush: a blocklist push (op block or unblock, "" either) to p from its bare JID.
func isBlockPush(e *elem, op string) bool {
	if e.XMLName.Local != "iq" || e.Attr("type") != "set" || len(e.Nodes) != 1 || e.Nodes[0].XMLName.Space != nsBlocking {
		return false
	}
	return op == "" || e.Nodes[0].XMLName.Local == op
}

// blockItems lists the JIDs of a <blocklist/>, <block/> or <unblock/>.
func blockItems(e *elem) []string {
	var out []string
	for _, n := range e.Nodes {
		if n.XMLName.Local == "item" {
			out = append(out, n.Attr("jid"))
		}
	}
	return out
}

// expectPush reads p's next blocklist push (presence skipped), checks it and answers it.
func expectPush(t *testing.T, p *peer, op string, jids ...string) {
	t.Helper()
	e := nextWith(t, p, "a blocklist push", func(e *elem) bool { return isBlockPush(e, "") })
	bare := strings.SplitN(p.JID, "/", 2)[0]
	if !isBlockPush(e, op) || e.Attr("from") != bare || e.Attr("to") != p.JID || strings.Join(blockItems(&e.Nodes[0]), " ") != strings.Join(jids, " ") {
		t.Fatalf("%s: want a %s push of %v, got %s", p.JID, op, jids, e)
	}
	p.Send(`<iq type='result' id='` + e.Attr("id") + `' to='` + bare + `'/>`)
}

func chat(to, id string) string {
	return `<message to='` + to + `' type='chat' id='` + id + `'><body>` + id + `</body></message>`
}

// XEP-0191 on one node, as clients see it: the server advertises it; the list is empty,
// then holds what was blocked; every resource that asked for it gets the pushes; what a
// blocked user sends is not delivered (an IQ gets service-unavailable) and what is sent
// to it is refused with not-acceptable and <blocked/>; unblocking one, then all, lets
// everything through again; bad requests, malformed JIDs and the bound are refused.
func TestBlocking(t *testing.T) {
	s := startNode(t, func(c *config.Config) { c.Limits.BlocklistMaxItems = 3 })
	for _, u := range []string{"juliet", "romeo", "nurse"} {
		s.addUser(u, "pw")
	}
	phone := online(t, s, "juliet", "phone")
	laptop := online(t, s, "juliet", "laptop")
	r := online(t, s, "romeo", "orchard")
	n := online(t, s, "nurse", "kitchen")

	phone.Send(`<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if d := nextWith(t, phone, "disco#info", func(e *elem) bool { return e.Attr("id") == "d" }); !strings.Contains(d.String(), `var="`+nsBlocking+`"`) {
		t.Fatalf("disco#info without %s: %s", nsBlocking, d)
	}
	for _, p := range []*peer{phone, laptop} {
		res := blockIQ(t, p, "g1", "blocklist")
		if l := res.Child("blocklist"); res.Attr("type") != "result" || l == nil || l.XMLName.Space != nsBlocking || len(blockItems(l)) != 0 {
			t.Fatalf("%s: empty blocklist: %s", p.JID, res)
		}
	}
	// Delivered before the block.
	r.Send(chat("juliet@localhost/phone", "before"))
	if m := nextWith(t, phone, "romeo's message", func(e *elem) bool { return e.XMLName.Local == "message" }); m.Attr("id") != "before" {
		t.Fatalf("phone got %s", m)
	}

	if res := blockIQ(t, phone, "b1", "block", "Romeo@LocalHost"); res.Attr("type") != "result" {
		t.Fatalf("block: %s", res)
	}
	expectPush(t, laptop, "block", "romeo@localhost")
	expectPush(t, phone, "block", "romeo@localhost")

	// From romeo: messages dropped silently, IQs service-unavailable.
	r.Send(chat("juliet@localhost/phone", "m1"))
	r.Send(chat("juliet@localhost", "m2"))
	r.Send(`<presence to='juliet@localhost/laptop'/>`)
	r.Send(`<iq type='get' id='ping' to='juliet@localhost/laptop'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if e := nextWith(t, r, "the ping's answer", func(e *elem) bool { return e.Attr("id") == "ping" }); e.ErrorCondition() != "service-unavailable" {
		t.Fatalf("romeo's ping: %s", e)
	}
	// To romeo: not-acceptable with <blocked/>.
	for _, st := range []string{chat("romeo@localhost", "m3"), `<iq type='get' id='m4' to='romeo@localhost/orchard'><ping xmlns='urn:xmpp:ping'/></iq>`} {
		laptop.Send(st)
		e := nextWith(t, laptop, "the refusal", func(e *elem) bool { return e.Attr("type") == "error" })
		if e.ErrorCondition() != "not-acceptable" || e.Child("error").Child("blocked") == nil ||
			e.Child("error").Child("blocked").XMLName.Space != "urn:xmpp:blocking:errors" || e.Attr("from") == "" {
			t.Fatalf("sending to a blocked JID: %s", e)
		}
	}
	phone.ExpectNothing(300 * time.Millisecond)
	laptop.ExpectNothing(50 * time.Millisecond)
	r.ExpectNothing(50 * time.Millisecond)

	res := blockIQ(t, phone, "g2", "blocklist")
	if got := blockItems(res.Child("blocklist")); len(got) != 1 || got[0] != "romeo@localhost" {
		t.Fatalf("blocklist after the block: %s", res)
	}
	// Refused requests change nothing and push nothing.
	if e := blockIQ(t, phone, "bad", "block"); e.ErrorCondition() != "bad-request" {
		t.Fatalf("a block without items: %s", e)
	}
	if e := blockIQ(t, phone, "mal", "block", "@localhost"); e.ErrorCondition() != "jid-malformed" {
		t.Fatalf("a malformed JID: %s", e)
	}
	if e := blockIQ(t, phone, "b2", "block", "a@example.org", "example.net"); e.Attr("type") != "result" {
		t.Fatalf("block two more: %s", e)
	}
	expectPush(t, laptop, "block", "a@example.org", "example.net")
	expectPush(t, phone, "block", "a@example.org", "example.net")
	if e := blockIQ(t, phone, "full", "block", "nurse@localhost"); e.ErrorCondition() != "resource-constraint" {
		t.Fatalf("past limits.blocklist_max_items: %s", e)
	}
	n.Send(chat("juliet@localhost/phone", "nurse"))
	if m := nextWith(t, phone, "the nurse's message", func(e *elem) bool { return e.XMLName.Local == "message" }); m.Attr("id") != "nurse" {
		t.Fatalf("phone got %s", m)
	}

	// Unblock romeo: delivered again.
	if e := blockIQ(t, laptop, "u1", "unblock", "romeo@localhost"); e.Attr("type") != "result" {
		t.Fatalf("unblock: %s", e)
	}
	expectPush(t, phone, "unblock", "romeo@localhost")
	expectPush(t, laptop, "unblock", "romeo@localhost")
	r.Send(chat("juliet@localhost/phone", "after"))
	if m := nextWith(t, phone, "romeo's message", func(e *elem) bool { return e.XMLName.Local == "message" }); m.Attr("id") != "after" {
		t.Fatalf("phone got %s", m)
	}
	laptop.Send(chat("romeo@localhost", "to-romeo"))
	if m := nextWith(t, r, "juliet's message", func(e *elem) bool { return e.XMLName.Local == "message" }); m.Attr("id") != "to-romeo" {
		t.Fatalf("romeo got %s", m)
	}

	// Block the nurse by her domain's resource form, then unblock everyone at once.
	if e := blockIQ(t, phone, "b3", "unblock", "example.net"); e.Attr("type") != "result" {
		t.Fatalf("unblock one: %s", e)
	}
	expectPush(t, laptop, "unblock", "example.net")
	expectPush(t, phone, "unblock", "example.net")
	if e := blockIQ(t, phone, "b4", "block", "localhost/kitchen"); e.Attr("type") != "result" {
		t.Fatalf("block localhost/kitchen: %s", e)
	}
	expectPush(t, laptop, "block", "localhost/kitchen")
	expectPush(t, phone, "block", "localhost/kitchen")
	n.Send(chat("juliet@localhost/phone", "n2"))
	r.Send(chat("juliet@localhost/phone", "r2"))
	if m := nextWith(t, phone, "romeo's message", func(e *elem) bool { return e.XMLName.Local == "message" }); m.Attr("id") != "r2" {
		t.Fatalf("phone got %s (the nurse's kitchen is blocked)", m)
	}
	if e := blockIQ(t, laptop, "u2", "unblock"); e.Attr("type") != "result" {
		t.Fatalf("unblock all: %s", e)
	}
	expectPush(t, phone, "unblock")
	expectPush(t, laptop, "unblock")
	if res := blockIQ(t, phone, "g3", "blocklist"); len(blockItems(res.Child("blocklist"))) != 0 {
		t.Fatalf("blocklist after unblocking all: %s", res)
	}
	n.Send(chat("juliet@localhost/phone", "n3"))
	if m := nextWith(t, phone, "the nurse's message", func(e *elem) bool { return e.XMLName.Local == "message" }); m.Attr("id") != "n3" {
		t.Fatalf("phone got %s", m)
	}
	phone.ExpectNothing(200 * time.Millisecond)
}

// A resource that never asked for the blocklist gets no push (XEP-0191 §3.2), and the
// list is not another user's to read or change.
func TestBlocklistPushOnlyToInterested(t *testing.T) {
	s := startNode(t)
	s.addUser("juliet", "pw")
	s.addUser("romeo", "pw")
	phone := online(t, s, "juliet", "phone")
	quiet := online(t, s, "juliet", "watch")
	r := online(t, s, "romeo", "orchard")
	blockIQ(t, phone, "g", "blocklist")
	if e := blockIQ(t, phone, "b", "block", "romeo@localhost"); e.Attr("type") != "result" {
		t.Fatalf("block: %s", e)
	}
	expectPush(t, phone, "block", "romeo@localhost")
	for done := time.After(300 * time.Millisecond); ; {
		select {
		case e := <-quiet.In:
			if e.XMLName.Local != "presence" {
				t.Fatalf("a resource that did not ask got %s", e)
			}
			continue
		case <-done:
		}
		break
	}
	r.Send(`<iq type='get' id='peek' to='juliet@localhost'><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
	if e := nextWith(t, r, "the answer", func(e *elem) bool { return e.Attr("id") == "peek" }); e.Attr("type") != "error" {
		t.Fatalf("romeo read juliet's blocklist: %s", e)
	}
}

// When juliet blocks romeo, who is subscribed to her presence (and she to his), he sees
// her go unavailable and gets none of her presence after; nor does she get his. When she
// unblocks him, each gets the other's current presence again.
func TestBlockingPresence(t *testing.T) {
	s := startNode(t)
	s.addUser("juliet", "pw")
	s.addUser("romeo", "pw")
	mutual(t, s, "juliet", "romeo")
	r := online(t, s, "romeo", "orchard")
	j := online(t, s, "juliet", "balcony")
	until(t, r, "juliet's presence", presenceOf("juliet@localhost/balcony", ""))
	until(t, j, "romeo's presence", presenceOf("romeo@localhost/orchard", ""))

	j.Send(`<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block></iq>`)
	until(t, j, "the block's result", func(e *elem) bool { return e.Attr("id") == "b" })
	until(t, r, "juliet unavailable", presenceOf("juliet@localhost/balcony", "unavailable"))
	j.Send(`<presence><status>still here</status></presence>`)
	r.Send(`<presence><status>me too</status></presence>`)
	r.ExpectNothing(300 * time.Millisecond)
	j.ExpectNothing(50 * time.Millisecond)

	j.Send(`<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'/></iq>`)
	until(t, j, "the unblock's result", func(e *elem) bool { return e.Attr("id") == "u" })
	if p := until(t, r, "juliet's presence again", presenceOf("juliet@localhost/balcony", "")); !strings.Contains(p.String(), "still here") {
		t.Fatalf("romeo got %s", p)
	}
	if p := until(t, j, "romeo's presence again", presenceOf("romeo@localhost/orchard", "")); !strings.Contains(p.String(), "me too") {
		t.Fatalf("juliet got %s", p)
	}
}

// Offline messages (XEP-0160) from a blocked JID are not kept, and those kept before
// the block are not given; others are.
func TestBlockedOfflineMessages(t *testing.T) {
	s := startNode(t)
	for _, u := range []string{"juliet", "romeo", "nurse"} {
		s.addUser(u, "pw")
	}
	r := online(t, s, "romeo", "orchard")
	n := online(t, s, "nurse", "kitchen")
	r.Send(chat("juliet@localhost", "romeo-before"))
	n.Send(chat("juliet@localhost", "nurse-before"))
	r.ExpectNothing(300 * time.Millisecond) // kept
	n.ExpectNothing(50 * time.Millisecond)

	j, err := s.dialClient("juliet", "pw", "phone", sasl.ScramSha256) // no presence yet: nothing given
	if err != nil {
		t.Fatal(err)
	}
	if e := blockIQ(t, j, "b", "block", "romeo@localhost"); e.Attr("type") != "result" {
		t.Fatalf("block: %s", e)
	}
	r.Send(chat("juliet@localhost", "romeo-after"))
	n.Send(chat("juliet@localhost", "nurse-after"))
	r.ExpectNothing(300 * time.Millisecond) // dropped silently, as if kept
	j.Send(`<presence/>`)
	for _, id := range []string{"nurse-before", "nurse-after"} {
		if m := nextWith(t, j, "the offline message", func(e *elem) bool { return e.XMLName.Local == "message" }); m.Attr("id") != id {
			t.Fatalf("juliet got %s, want %s", m, id)
		}
	}
	j.ExpectNothing(300 * time.Millisecond)
}
