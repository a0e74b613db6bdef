package delegation

import (
	"testing"

	"github.com/switchboard-im/switchboard/xmpp"
)

const (
	benchRequest = `<iq type='get' to='localhost' id='q0.123'><query xmlns='urn:example:bench'/></iq>`
	benchReply   = `<iq type='result' from='bench.localhost' to='localhost' id='sbd:node1:0123456789abcdef'><delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='q0.123' to='alice@localhost/r1'/></forwarded></delegation></iq>`
)

func mustParse(b *testing.B, raw string) *xmpp.Envelope {
	b.Helper()
	env, err := xmpp.ParseStanza([]byte(raw))
	if err != nil {
		b.Fatal(err)
	}
	return env
}

// Wrapping a client's IQ for its managing entity, as the router does: the inner stanza
// rewritten with from and xmlns='jabber:client', inside the outer IQ.
func BenchmarkWrap(b *testing.B) {
	env := mustParse(b, benchRequest)
	b.ReportAllocs()
	for b.Loop() {
		_ = Wrap(NS2, "sbd:node1:0123456789abcdef", "localhost", "bench.localhost", env, "alice@localhost/r1", env.To)
	}
}

// What Wrap returns is the outer IQ around exactly what RewriteNS returns.
func TestWrapIsRewriteNSInside(t *testing.T) {
	env, err := xmpp.ParseStanza([]byte(benchRequest))
	if err != nil {
		t.Fatal(err)
	}
	got := string(Wrap(NS2, "sbd:n1:x&y", "localhost", "bench.localhost", env, "alice@localhost/r1", env.To))
	want := "<iq type='set' id='sbd:n1:x&amp;y' from='localhost' to='bench.localhost'><delegation xmlns='" + NS2 +
		"'><forwarded xmlns='" + NSForward + "'>" + string(env.RewriteNS("alice@localhost/r1", env.To, xmpp.NSClient)) +
		"</forwarded></delegation></iq>"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// Unwrapping the managing entity's reply: find the forwarded inner IQ and parse it.
func BenchmarkUnwrap(b *testing.B) {
	env := mustParse(b, benchReply)
	b.ReportAllocs()
	for b.Loop() {
		inner, err := Unwrap(NS2, env, false)
		if err != nil || inner.ID != "q0.123" {
			b.Fatal(inner, err)
		}
	}
}

// ParseStanza alone (part of Unwrap): a fresh Reader for a few bytes.
func BenchmarkParseStanza(b *testing.B) {
	raw := []byte(`<iq xmlns='jabber:client' type='result' id='q0.123' to='alice@localhost/r1'/>`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := xmpp.ParseStanza(raw); err != nil {
			b.Fatal(err)
		}
	}
}
