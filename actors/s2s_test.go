package actors

import "testing"

// Only a stanza whose namespace stampIn wrote first, right after its name, skips the
// parse and rewrite for an s2s stream: an attribute value elsewhere does not count.
func TestInServerNS(t *testing.T) {
	for s, want := range map[string]bool{
		`<message xmlns='jabber:server' to='a'/>`:                     true,
		`<message xmlns='jabber:client' id="xmlns='jabber:server'"/>`: false,
		`<message to="x" xmlns='jabber:server'/>`:                     false,
		`<presence from='a'/>`:                                        false,
	} {
		if inServerNS([]byte(s)) != want {
			t.Errorf("%s: want %v", s, want)
		}
	}
}
