package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/privileges"
)

const nsPriv = "urn:xmpp:privilege:2"

func perms(ad *elem) map[string]string {
	out := map[string]string{}
	for _, p := range ad.Child("privilege").Nodes {
		v := p.Attr("type")
		if p.Attr("access") == "iq" {
			var nss []string
			for _, n := range p.Nodes {
				nss = append(nss, n.Attr("ns")+"="+n.Attr("type"))
			}
			v = strings.Join(nss, ",")
		}
		if p.Attr("push") != "" {
			v += ",push=" + p.Attr("push")
		}
		out[p.Attr("access")] = v
	}
	return out
}

func privilegedNode(t *testing.T, mutate ...func(*config.Config)) *server {
	return startNode(t, append([]func(*config.Config){func(c *config.Config) {
		c.Hosts[0].Delegations = map[string]config.DelegationRule{nsPubsub: {JID: "comp.localhost"}}
		c.Components[0].Privileges = config.Privileges{
			Roster: "get", Message: "outgoing", Presence: "managed_entity",
			IQ: map[string]string{nsPubsub: "both", "http://jabber.org/protocol/disco#info": "get"},
		}
		c.Components = append(c.Components, config.ComponentConfig{JID: "other.localhost", Secret: secret})
		c.Delegation.Timeout = config.Duration(2 * time.Second)
	}}, mutate...)...)
}

// A PEP-like service as an external component (XEP-0355 + XEP-0356 on one namespace):
// a client's pubsub IQ to its own bare JID is delegated to the component, which reads
// the client's roster with its roster privilege to decide who may see the node, gets
// roster pushes, sees the user's presence, and sends IQs on the user's behalf.
func TestPrivilegedEntityPEPFlow(t *testing.T) {
	s := privilegedNode(t)
	s.addUser("juliet", "j")
	s.addUser("romeo", "r")
	j, err := s.dialClient("juliet", "j", "balcony", sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	rosterGet(t, j, "g")
	rosterSet(t, j, "add", `<item jid='romeo@localhost' name='Romeo'/>`)
	j.Send(`<presence><status>on the balcony</status></presence>`)
	j.Sync()

	m := s.managingEntity("comp.localhost", nil)
	if ad := m.NextAd(wait); !has(ad, nsPubsub) {
		t.Fatalf("delegation advertisement %v", ad)
	}
	ad := m.NextOther(t, wait, "privilege advertisement", func(e *elem) bool { return e.Child("privilege") != nil })
	want := map[string]string{"roster": "get,push=true", "message": "outgoing", "presence": "managed_entity",
		"iq": "http://jabber.org/protocol/disco#info=get," + nsPubsub + "=both"}
	if got := perms(ad); len(got) != len(want) || got["roster"] != want["roster"] || got["message"] != want["message"] ||
		got["presence"] != want["presence"] || got["iq"] != want["iq"] {
		t.Fatalf("privilege advertisement %s: %v", ad, got)
	}
	// Presence replay: juliet was online before the component connected (XEP-0356 §8).
	p := m.NextOther(t, wait, "replayed presence", func(e *elem) bool { return e.XMLName.Local == "presence" })
	if p.Attr("from") != "juliet@localhost/balcony" || p.Attr("to") != "comp.localhost" || p.Child("status") == nil {
		t.Fatalf("replayed presence %s", p)
	}

	// juliet publishes to her own PEP node: delegated to the component.
	j.Send(`<iq type='get' id='pep' to='juliet@localhost'><pubsub xmlns='` + nsPubsub + `'><items node='mood'/></pubsub></iq>`)
	f := m.NextForward(wait)
	if f.Inner.Attr("from") != "juliet@localhost/balcony" || f.Inner.Attr("to") != "juliet@localhost" {
		t.Fatalf("forwarded %s", f.Outer)
	}
	// The component reads juliet's roster with its privilege (XEP-0356 §4.3).
	m.SendAsync(`<iq type='get' id='r1' from='comp.localhost' to='juliet@localhost'><query xmlns='` + nsRoster + `'/></iq>`)
	res := m.NextOther(t, wait, "roster result", func(e *elem) bool { return e.Attr("id") == "r1" })
	if res.Attr("type") != "result" || res.Attr("from") != "juliet@localhost" || items(res.Child("query"))["romeo@localhost"] != "Romeo|none|" {
		t.Fatalf("privileged roster get: %s", res)
	}
	// ...and answers juliet with what only her contacts may see.
	m.Answer(f, `<pubsub xmlns='`+nsPubsub+`'><items node='mood'><item id='visible-to-romeo@localhost'/></items></pubsub>`)
	if r := j.Next(wait); r.Attr("id") != "pep" || r.Attr("type") != "result" || !strings.Contains(r.String(), "visible-to-romeo@localhost") {
		t.Fatalf("juliet got %s", r)
	}

	// Its own IQs in the delegated namespace are not forwarded back to it: a privileged
	// pubsub IQ on juliet's behalf to her bare JID is answered by the component's own
	// delegation...
	m.SendAsync(`<iq type='set' id='piq' from='comp.localhost' to='juliet@localhost'><privileged_iq xmlns='` + nsPriv + `'>` +
		`<iq xmlns='jabber:client' type='set' id='inner1' to='romeo@localhost'><pubsub xmlns='` + nsPubsub + `'><subscribe node='mood' jid='juliet@localhost'/></pubsub></iq>` +
		`</privileged_iq></iq>`)
	f2 := m.NextForward(wait) // romeo@localhost's bare JID: delegated (PEP of romeo), from juliet
	if f2.Inner.Attr("from") != "juliet@localhost" || f2.Inner.Attr("to") != "romeo@localhost" || f2.Inner.Attr("id") == "inner1" {
		t.Fatalf("privileged IQ forwarded as %s", f2.Inner)
	}
	m.Answer(f2, `<pubsub xmlns='`+nsPubsub+`'><subscription node='mood' jid='juliet@localhost' subscription='subscribed'/></pubsub>`)
	w := m.NextOther(t, wait, "privileged IQ answer", func(e *elem) bool { return e.Attr("id") == "piq" })
	inner := w.Child("privilege")
	if inner != nil && inner.Child("forwarded") != nil {
		inner = inner.Child("forwarded").Child("iq")
	} else {
		inner = nil
	}
	if w.Attr("type") != "result" || w.Attr("from") != "juliet@localhost" || inner == nil ||
		inner.Attr("id") != "inner1" || inner.Attr("from") != "romeo@localhost" || inner.Attr("to") != "juliet@localhost" ||
		inner.Attr("type") != "result" || !strings.Contains(inner.String(), "subscribed") {
		t.Fatalf("privileged IQ answer %s", w)
	}

	// An IQ on juliet's behalf to a client: romeo answers it as if juliet had asked.
	r, err := s.dialClient("romeo", "r", "orchard", sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	m.SendAsync(`<iq type='get' id='piq2' from='comp.localhost' to='juliet@localhost'><privileged_iq xmlns='` + nsPriv + `'>` +
		`<iq xmlns='jabber:client' type='get' id='inner2' to='romeo@localhost/orchard'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>` +
		`</privileged_iq></iq>`)
	q := r.Next(wait)
	if q.Attr("from") != "juliet@localhost" || q.Attr("type") != "get" {
		t.Fatalf("romeo got %s", q)
	}
	r.Send(`<iq type='result' id='` + q.Attr("id") + `' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:example:romeo'/></query></iq>`)
	w = m.NextOther(t, wait, "answer from romeo", func(e *elem) bool { return e.Attr("id") == "piq2" })
	if !strings.Contains(w.String(), "urn:example:romeo") || !strings.Contains(w.String(), `id="inner2"`) {
		t.Fatalf("wrapped answer from romeo %s", w)
	}
	// Nobody answers: the component hears of it after delegation.timeout (2s here).
	m.SendAsync(`<iq type='get' id='piq3' from='comp.localhost' to='juliet@localhost'><privileged_iq xmlns='` + nsPriv + `'>` +
		`<iq xmlns='jabber:client' type='get' id='inner3' to='romeo@localhost/orchard'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>` +
		`</privileged_iq></iq>`)
	_ = r.Next(wait) // romeo stays silent
	if e := m.NextOther(t, wait, "timeout", func(e *elem) bool { return e.Attr("id") == "piq3" }); e.ErrorCondition() != "remote-server-timeout" {
		t.Fatalf("unanswered privileged IQ: %s", e)
	}

	// Roster pushes reach the component (roster: get → push='true').
	rosterSet(t, j, "add2", `<item jid='nurse@localhost'/>`)
	push := m.NextOther(t, wait, "roster push", func(e *elem) bool { return e.Child("query") != nil && e.Attr("type") == "set" })
	if push.Attr("from") != "juliet@localhost" || push.Attr("to") != "comp.localhost" || items(push.Child("query"))["nurse@localhost"] != "|none|" {
		t.Fatalf("roster push to the component %s", push)
	}
	m.SendAsync(`<iq type='result' id='` + push.Attr("id") + `' from='comp.localhost' to='juliet@localhost'/>`)

	// juliet goes offline: the component gets her unavailable presence.
	j.Close()
	p = m.NextOther(t, wait, "unavailable presence", func(e *elem) bool { return e.XMLName.Local == "presence" })
	if p.Attr("type") != "unavailable" || p.Attr("from") != "juliet@localhost/balcony" {
		t.Fatalf("presence after juliet left: %s", p)
	}
}

// Every rule of XEP-0356 the server enforces answers forbidden (or bad-request for a
// malformed wrapper), and nothing is sent on anyone's behalf.
func TestPrivilegeForbidden(t *testing.T) {
	s := privilegedNode(t)
	s.addUser("juliet", "j")
	s.addUser("romeo", "r")
	r, err := s.dialClient("romeo", "r", "orchard", sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	m := s.managingEntity("comp.localhost", nil)
	m.NextAd(wait)
	m.NextOther(t, wait, "privilege advertisement", func(e *elem) bool { return e.Child("privilege") != nil })
	o := s.managingEntity("other.localhost", nil)

	piq := func(from, to, outerType, inner string) string {
		return `<iq type='` + outerType + `' id='x' from='` + from + `' to='` + to + `'><privileged_iq xmlns='` + nsPriv + `'>` + inner + `</privileged_iq></iq>`
	}
	discoGet := `<iq xmlns='jabber:client' type='get' id='i' to='romeo@localhost/orchard'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`
	for _, tc := range []struct {
		name, stanza, want string
		ent                *managing
	}{
		{"to the server, not a user", piq("comp.localhost", "localhost", "get", discoGet), "forbidden", m},
		{"to a user that does not exist", piq("comp.localhost", "ghost@localhost", "get", discoGet), "forbidden", m},
		{"to a full JID", piq("comp.localhost", "juliet@localhost/x", "get", discoGet), "", m},
		{"namespace not granted", piq("comp.localhost", "juliet@localhost", "get",
			`<iq xmlns='jabber:client' type='get' id='i' to='romeo@localhost'><query xmlns='jabber:iq:version'/></iq>`), "forbidden", m},
		{"type not granted", piq("comp.localhost", "juliet@localhost", "set",
			`<iq xmlns='jabber:client' type='set' id='i' to='romeo@localhost/orchard'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`), "forbidden", m},
		{"outer and inner types differ", piq("comp.localhost", "juliet@localhost", "set", discoGet), "forbidden", m},
		{"inner from another user", piq("comp.localhost", "juliet@localhost", "get",
			strings.Replace(discoGet, "type='get'", "type='get' from='romeo@localhost'", 1)), "forbidden", m},
		{"inner not jabber:client", piq("comp.localhost", "juliet@localhost", "get",
			`<iq xmlns='jabber:server' type='get' id='i' to='romeo@localhost/orchard'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`), "forbidden", m},
		{"no inner iq", piq("comp.localhost", "juliet@localhost", "get", ``), "bad-request", m},
		{"component without privileges", piq("other.localhost", "juliet@localhost", "get", discoGet), "forbidden", o},
		{"roster get without the privilege", `<iq type='get' id='x' from='other.localhost' to='juliet@localhost'><query xmlns='` + nsRoster + `'/></iq>`, "forbidden", o},
		{"roster set with get only", `<iq type='set' id='x' from='comp.localhost' to='juliet@localhost'><query xmlns='` + nsRoster + `'><item jid='a@localhost'/></query></iq>`, "forbidden", m},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.ent.SendAsync(tc.stanza)
			e := tc.ent.NextOther(t, wait, "answer", func(e *elem) bool { return e.Attr("id") == "x" })
			if tc.want == "" {
				if e.Attr("type") != "error" {
					t.Fatalf("got %s, want an error", e)
				}
				return
			}
			if e.ErrorCondition() != tc.want {
				t.Fatalf("got %s, want %s", e, tc.want)
			}
		})
	}
	r.ExpectNothing(200 * time.Millisecond) // nothing reached romeo on juliet's behalf
	// The roster is unchanged: juliet reads it empty.
	j := s.client("juliet", "j")
	if got := items(rosterGet(t, j, "g")); len(got) != 0 {
		t.Fatalf("juliet's roster %v", got)
	}
}

// Privileges stored in etcd apply at runtime, per host, over the config file's: the
// connected component gets a new advertisement and its rights change with it.
func TestPrivilegesInEtcdAtRuntime(t *testing.T) {
	s := startNode(t)
	s.addUser("juliet", "j")
	m := s.managingEntity("comp.localhost", nil)
	rosterGet := `<iq type='get' id='rg' from='comp.localhost' to='juliet@localhost'><query xmlns='` + nsRoster + `'/></iq>`
	m.SendAsync(rosterGet)
	if e := m.NextOther(t, wait, "answer", func(e *elem) bool { return e.Attr("id") == "rg" }); e.ErrorCondition() != "forbidden" {
		t.Fatalf("without privileges: %s", e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := privileges.NewStore(s.cli, s.cfg.Etcd.Prefix)
	if err := store.Set(ctx, "localhost", "comp.localhost", config.Privileges{Roster: "get"}); err != nil {
		t.Fatal(err)
	}
	ad := m.NextOther(t, wait, "advertisement", func(e *elem) bool { return e.Child("privilege") != nil })
	if got := perms(ad); len(got) != 1 || got["roster"] != "get,push=true" {
		t.Fatalf("advertisement after the change %s", ad)
	}
	m.SendAsync(rosterGet)
	if e := m.NextOther(t, wait, "answer", func(e *elem) bool { return e.Attr("id") == "rg" }); e.Attr("type") != "result" {
		t.Fatalf("with the roster privilege: %s", e)
	}
	if err := store.Remove(ctx, "localhost", "comp.localhost"); err != nil {
		t.Fatal(err)
	}
	ad = m.NextOther(t, wait, "advertisement", func(e *elem) bool { return e.Child("privilege") != nil })
	if got := perms(ad); len(got) != 0 {
		t.Fatalf("advertisement after the removal %s", ad)
	}
	m.SendAsync(rosterGet)
	if e := m.NextOther(t, wait, "answer", func(e *elem) bool { return e.Attr("id") == "rg" }); e.ErrorCondition() != "forbidden" {
		t.Fatalf("after the removal: %s", e)
	}
}

// privileges.roster_push: false: a component with roster get that does not want the
// users' roster pushes is told push='false' and gets none, while it still reads rosters.
func TestPrivilegeRosterPushOff(t *testing.T) {
	s := privilegedNode(t, func(c *config.Config) {
		no := false
		c.Components[0].Privileges.RosterPushes = &no
	})
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	rosterGet(t, j, "g")
	m := s.managingEntity("comp.localhost", nil)
	m.NextAd(wait)
	ad := m.NextOther(t, wait, "privilege advertisement", func(e *elem) bool { return e.Child("privilege") != nil })
	if got := perms(ad); got["roster"] != "get,push=false" {
		t.Fatalf("privilege advertisement %s: %v", ad, got)
	}
	rosterSet(t, j, "add", `<item jid='romeo@localhost' name='Romeo'/>`)
	m.SendAsync(`<iq type='get' id='r1' from='comp.localhost' to='juliet@localhost'><query xmlns='` + nsRoster + `'/></iq>`)
	res := m.NextOther(t, wait, "roster result", func(e *elem) bool { return e.Attr("id") == "r1" || e.Child("query") != nil })
	if res.Attr("id") != "r1" || res.Attr("type") != "result" || items(res.Child("query"))["romeo@localhost"] != "Romeo|none|" {
		t.Fatalf("got %s: a roster push, or not the roster", res)
	}
	if err := config.ValidatePrivileges(config.Privileges{Roster: "set", RosterPushes: new(true)}); len(err) != 1 {
		t.Fatalf("roster_push: true with roster set: %v", err)
	}
}
