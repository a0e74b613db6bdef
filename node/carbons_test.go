package node_test

import (
	"strings"
	"testing"
	"time"
)

// message is the next message p receives (presence and roster pushes skipped).
func message(t *testing.T, p *peer) *elem {
	t.Helper()
	return until(t, p, "a message", func(e *elem) bool { return e.XMLName.Local == "message" })
}

// XEP-0280: a resource that enabled carbons gets a copy of the chats its user's other
// resources receive and send, except private ones, and none once it disables them.
func TestCarbons(t *testing.T) {
	s := startNode(t)
	s.addUser("juliet", "pw")
	s.addUser("romeo", "pw")
	phone := online(t, s, "juliet", "phone")
	laptop := online(t, s, "juliet", "laptop")
	r := online(t, s, "romeo", "orchard")
	for _, p := range []*peer{phone, laptop} {
		p.Send(`<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
		if res := until(t, p, "carbons enabled", func(e *elem) bool { return e.Attr("id") == "c1" }); res.Attr("type") != "result" {
			t.Fatalf("enable: %s", res)
		}
	}
	phone.Send(`<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if d := until(t, phone, "disco#info", func(e *elem) bool { return e.Attr("id") == "d" }); !strings.Contains(d.String(), "urn:xmpp:carbons:2") {
		t.Fatalf("disco#info without carbons: %s", d)
	}

	r.Send(`<message to='juliet@localhost/phone' type='chat' id='in'><body>hi</body></message>`)
	if m := message(t, phone); m.Attr("id") != "in" {
		t.Fatalf("phone got %s", m)
	}
	c := message(t, laptop)
	fw := c.Child("received")
	if c.Attr("from") != "juliet@localhost" || fw == nil || fw.Child("forwarded") == nil ||
		fw.Child("forwarded").Child("message").Attr("id") != "in" ||
		!strings.HasPrefix(fw.Child("forwarded").Child("message").Attr("from"), "romeo@localhost/") {
		t.Fatalf("laptop's received carbon: %s", c)
	}

	phone.Send(`<message to='romeo@localhost' type='chat' id='out'><body>yo</body></message>`)
	if m := message(t, r); m.Attr("id") != "out" {
		t.Fatalf("romeo got %s", m)
	}
	c = message(t, laptop)
	fw = c.Child("sent")
	if fw == nil || fw.Child("forwarded").Child("message").Attr("from") != "juliet@localhost/phone" ||
		fw.Child("forwarded").Child("message").Attr("id") != "out" {
		t.Fatalf("laptop's sent carbon: %s", c)
	}

	// Private: no copy.
	phone.Send(`<message to='romeo@localhost' type='chat' id='p'><body>shh</body><private xmlns='urn:xmpp:carbons:2'/></message>`)
	if m := message(t, r); m.Attr("id") != "p" {
		t.Fatalf("romeo got %s", m)
	}
	laptop.ExpectNothing(200 * time.Millisecond)

	// Disabled: no copy.
	laptop.Send(`<iq type='set' id='c2'><disable xmlns='urn:xmpp:carbons:2'/></iq>`)
	if res := until(t, laptop, "carbons disabled", func(e *elem) bool { return e.Attr("id") == "c2" }); res.Attr("type") != "result" {
		t.Fatalf("disable: %s", res)
	}
	r.Send(`<message to='juliet@localhost/phone' type='chat' id='in2'><body>again</body></message>`)
	if m := message(t, phone); m.Attr("id") != "in2" {
		t.Fatalf("phone got %s", m)
	}
	laptop.ExpectNothing(200 * time.Millisecond)

	// Only the laptop wants them: what the phone (carbons off) sends is still copied.
	phone.Send(`<iq type='set' id='c3'><disable xmlns='urn:xmpp:carbons:2'/></iq>`)
	until(t, phone, "carbons disabled", func(e *elem) bool { return e.Attr("id") == "c3" })
	laptop.Send(`<iq type='set' id='c4'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	until(t, laptop, "carbons enabled", func(e *elem) bool { return e.Attr("id") == "c4" })
	phone.Send(`<message to='romeo@localhost' type='chat' id='out2'><body>still</body></message>`)
	if m := message(t, r); m.Attr("id") != "out2" {
		t.Fatalf("romeo got %s", m)
	}
	if c := message(t, laptop); c.Child("sent") == nil || c.Child("sent").Child("forwarded").Child("message").Attr("id") != "out2" {
		t.Fatalf("laptop's sent carbon of a phone without carbons: %s", c)
	}
}
