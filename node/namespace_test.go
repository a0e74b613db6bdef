package node_test

import "testing"

// Each stream gets stanzas in its own namespace: a client gets what a component sent in
// jabber:client, a component gets what a client sent in jabber:component:accept (XEP-0114),
// as Prosody and ejabberd do; a client library that dispatches on the namespace would
// otherwise drop them.
func TestStanzaNamespacePerStream(t *testing.T) {
	s := startNode(t)
	s.addUser("alice", "pw")
	a := s.client("alice", "pw")
	comp, err := s.component("comp.localhost", secret)
	if err != nil {
		t.Fatal(err)
	}
	comp.Send(`<message from='comp.localhost' to='` + a.JID + `' id='x'><body>hi</body></message>`)
	if e := a.Next(wait); e.XMLName.Space != "jabber:client" || e.Child("body") == nil || e.Child("body").XMLName.Space != "jabber:client" {
		t.Fatalf("client got %q: %s", e.XMLName.Space, e)
	}
	a.Send(`<message to='comp.localhost' id='y'><body>yo</body></message>`)
	if e := comp.Next(wait); e.XMLName.Space != "jabber:component:accept" || e.Child("body").XMLName.Space != "jabber:component:accept" {
		t.Fatalf("component got %q: %s", e.XMLName.Space, e)
	}
}
