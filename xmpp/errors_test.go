package xmpp

import "testing"

// An error reply swaps the addresses, keeps the id, and carries the defined condition,
// the text and an application-specific condition in RFC 6120 §8.3.2's order.
func TestErrorReply(t *testing.T) {
	env, err := ParseStanza([]byte(`<message xmlns='jabber:client' from='a@b/c' to='d@e' id='m1' type='chat'><body>x</body></message>`))
	if err != nil {
		t.Fatal(err)
	}
	e := &StanzaError{Type: ErrCancel, Condition: "not-acceptable", Text: "t", App: "<blocked xmlns='urn:xmpp:blocking:errors'/>"}
	got := string(ErrorReply(env, "d@e", "a@b/c", e))
	want := `<message from='d@e' to='a@b/c' id='m1' type='error'><error type='cancel'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>` +
		`<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>t</text><blocked xmlns='urn:xmpp:blocking:errors'/></error></message>`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	env.Type = "error"
	if ErrorReply(env, "d@e", "a@b/c", e) != nil {
		t.Fatal("an error answered with an error")
	}
}
