package privileges

import (
	"testing"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/xmpp"
)

func TestAdvertisement(t *testing.T) {
	tests := []struct {
		name    string
		p       config.Privileges
		changed bool
		want    string // the <privilege/> element's content; "-" for no advertisement
	}{
		{"nothing", config.Privileges{}, false, "-"},
		{"none is nothing", config.Privileges{Roster: "none", Message: "none", IQ: map[string]string{"urn:x": "none"}}, false, "-"},
		{"withdrawn", config.Privileges{}, true, ""},
		{"roster get pushes", config.Privileges{Roster: "get"}, false, "<perm access='roster' type='get' push='true'/>"},
		{"roster set does not", config.Privileges{Roster: "set"}, false, "<perm access='roster' type='set' push='false'/>"},
		{"everything", config.Privileges{Roster: "both", Message: "outgoing", Presence: "roster",
			IQ: map[string]string{"urn:b": "set", "urn:a": "get", "urn:c": "none"}}, false,
			"<perm access='roster' type='both' push='true'/><perm access='message' type='outgoing'/>" +
				"<perm access='iq'><namespace ns='urn:a' type='get'/><namespace ns='urn:b' type='set'/></perm>" +
				"<perm access='presence' type='roster'/>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := Advertisement("example.test", "comp.example.test", tc.p, tc.changed)
			if tc.want == "-" {
				if b != nil {
					t.Fatalf("advertised %s", b)
				}
				return
			}
			env, err := xmpp.ParseStanza(b)
			if err != nil {
				t.Fatal(err)
			}
			if env.From != "example.test" || env.To != "comp.example.test" {
				t.Fatalf("addressed from %q to %q", env.From, env.To)
			}
			want := "<privilege xmlns='" + NS + "'>" + tc.want + "</privilege>"
			if got := string(env.Content()); got != want {
				t.Fatalf("content\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestPrivilegesPolicy(t *testing.T) {
	p := config.Privileges{Roster: "get", Message: "none", Presence: "managed_entity", IQ: map[string]string{"urn:a": "both", "urn:b": "none"}}
	checks := []struct {
		name string
		got  bool
		want bool
	}{
		{"roster get", p.RosterAllows("get"), true},
		{"roster set", p.RosterAllows("set"), false},
		{"roster push", p.RosterPush(), true},
		{"message", p.MessageOutgoing(), false},
		{"presence", p.ReceivesPresence(), true},
		{"iq a get", p.IQAllows("urn:a", "get"), true},
		{"iq a set", p.IQAllows("urn:a", "set"), true},
		{"iq b none", p.IQAllows("urn:b", "get"), false},
		{"iq unknown", p.IQAllows("urn:c", "get"), false},
		{"none equals absent", config.Privileges{Roster: "none", IQ: map[string]string{"urn:a": "none"}}.Equal(config.Privileges{}), true},
		{"different", p.Equal(config.Privileges{Roster: "get"}), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}
