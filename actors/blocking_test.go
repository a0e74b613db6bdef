package actors

import (
	"testing"

	"github.com/switchboard-im/switchboard/blocking"
)

// The blocking stage (XEP-0191), with lists set in the node's copy (no etcd): alice
// blocks bob and the component's domain. What she sends them is refused (presence
// dropped), what they send her is dropped (IQ requests answered service-unavailable);
// her own resources and the server are never blocked; an emptied list lets all through.
func TestBlockingStage(t *testing.T) {
	w := newWorld(t, false)
	bl := blocking.NewCache(nil, nil)
	w.r.blocklists = bl
	bl.Set("alice@"+tHost, []string{"bob@" + tHost, tComp})

	nothing := func() {
		t.Helper()
		w.settle()
		for _, s := range []*Session{w.alice1, w.alice2, w.bob, w.comp} {
			if got := w.got(s); got != "" {
				t.Fatalf("%s was written %q", s.Full, got)
			}
		}
	}
	const blockedErr = "<error type='cancel'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><blocked xmlns='urn:xmpp:blocking:errors'/></error>"
	w.send(w.alice1, `<message to='bob@example.test/r1' id='m1' type='chat'><body>x</body></message>`)
	w.expect(w.alice1, "id='m1'", "from='bob@example.test/r1'", blockedErr)
	w.send(w.alice1, `<iq to='bob@example.test/r1' id='i1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`)
	w.expect(w.alice1, "id='i1'", blockedErr)
	w.send(w.alice1, `<message to='`+tComp+`' id='m2'><body>x</body></message>`)
	w.expect(w.alice1, "id='m2'", blockedErr)
	w.send(w.alice1, `<presence to='bob@example.test'/>`)
	w.send(w.alice1, `<iq to='bob@example.test/r1' id='r1' type='result'/>`)
	nothing()

	w.send(w.bob, `<message to='alice@example.test' id='m3' type='chat'><body>x</body></message>`)
	w.send(w.bob, `<message to='alice@example.test/r2' id='m4' type='chat'><body>x</body></message>`)
	w.send(w.bob, `<presence to='alice@example.test/r1'/>`)
	nothing()
	w.send(w.bob, `<iq to='alice@example.test/r1' id='i2' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`)
	w.expect(w.bob, "id='i2'", "type='error'", "<service-unavailable")
	w.send(w.bob, `<iq to='alice@example.test' id='i3' type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	w.expect(w.bob, "id='i3'", "type='error'", "<service-unavailable")
	w.send(w.comp, `<message from='`+tComp+`' to='alice@example.test/r1' id='m5'><body>x</body></message>`)
	nothing()

	// Her own resources, the server, and users she does not block.
	w.send(w.alice1, `<message to='alice@example.test/r2' id='own' type='chat'><body>x</body></message>`)
	w.expect(w.alice2, "id='own'")
	w.send(w.alice1, `<iq to='example.test' id='srv' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`)
	w.expect(w.alice1, "id='srv'", "type='result'")
	if got := routingErrors(w.r, "not-acceptable"); got != 3 {
		t.Fatalf("not-acceptable counted %v times, want 3", got)
	}

	bl.Set("alice@"+tHost, nil)
	w.send(w.bob, `<message to='alice@example.test/r2' id='m6' type='chat'><body>x</body></message>`)
	w.expect(w.alice2, "id='m6'")
	w.send(w.alice1, `<message to='bob@example.test/r1' id='m7' type='chat'><body>x</body></message>`)
	w.expect(w.bob, "id='m7'")
}
