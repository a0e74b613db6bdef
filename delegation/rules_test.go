package delegation

import (
	"strings"
	"testing"
)

// Rules go into XML that components parse: a namespace or JID that XML cannot carry is
// refused, as are the protocol's own namespaces and malformed filtering attributes.
func TestValidate(t *testing.T) {
	ok := Rule{JID: "pubsub.example.test"}
	for _, tc := range []struct {
		ns   string
		r    Rule
		want string // "" for valid
	}{
		{"http://jabber.org/protocol/pubsub", ok, ""},
		{"urn:xmpp:mam:2", Rule{JID: "pubsub.example.test", Filtering: []string{"node"}}, ""},
		{BareDiscoInfoRemaining, ok, ""},
		{"", ok, "empty namespace"},
		{NS2, ok, "cannot be delegated"},
		{"urn:example:\x01bell", ok, "not valid UTF-8 text for XML"},
		{"urn:example:\xff", ok, "not valid UTF-8 text for XML"},
		{"urn:example:line\nbreak", ok, "not valid UTF-8 text for XML"},
		{"urn:example:a", Rule{JID: "pub\x00sub.example.test"}, "not valid UTF-8 text for XML"},
		{"urn:example:a", Rule{}, "empty jid"},
		{"urn:example:a", Rule{JID: "a.example/res"}, "bare JID"},
		{"urn:example:a", Rule{JID: "a.example", Filtering: []string{"a b"}}, "bad filtering attribute"},
	} {
		err := Validate(tc.ns, tc.r)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(%q, %+v) = %v", tc.ns, tc.r, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate(%q, %+v) = %v, want %q", tc.ns, tc.r, err, tc.want)
		}
	}
}
