package node_test

import (
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/config"
)

const nsRoster = "jabber:iq:roster"

// items returns a roster query's items as jid → "name|subscription|group,group".
func items(q *elem) map[string]string {
	out := map[string]string{}
	if q == nil {
		return out
	}
	for _, it := range q.Nodes {
		if it.XMLName.Local != "item" {
			continue
		}
		var groups []string
		for _, g := range it.Nodes {
			if g.XMLName.Local == "group" {
				groups = append(groups, g.Text)
			}
		}
		out[it.Attr("jid")] = it.Attr("name") + "|" + it.Attr("subscription") + "|" + strings.Join(groups, ",")
	}
	return out
}

func rosterGet(t *testing.T, p *peer, id string) *elem {
	t.Helper()
	p.Send(`<iq type='get' id='` + id + `'><query xmlns='` + nsRoster + `'/></iq>`)
	r := p.Next(wait)
	if r.Attr("type") != "result" || r.Attr("id") != id {
		t.Fatalf("roster get: %s", r)
	}
	return r.Child("query")
}

// rosterSet changes the roster of p's user and waits for the answer and the push to p.
func rosterSet(t *testing.T, p *peer, id, item string) {
	t.Helper()
	p.Send(`<iq type='set' id='` + id + `'><query xmlns='` + nsRoster + `'>` + item + `</query></iq>`)
	gotResult, gotPush := false, false
	for !gotResult || !gotPush {
		e := p.Next(wait)
		switch {
		case e.Attr("id") == id && e.Attr("type") == "result":
			gotResult = true
		case e.Attr("type") == "set" && e.Child("query") != nil:
			gotPush = true
			p.Send(`<iq type='result' id='` + e.Attr("id") + `'/>`)
		default:
			t.Fatalf("roster set %s: %s", id, e)
		}
	}
}

// RFC 6121 §2: a user's roster is kept in etcd, read and changed with roster get/set,
// pushed to every bound resource, and survives a new login.
func TestRosterGetSetPush(t *testing.T) {
	s := startNode(t, func(c *config.Config) { c.Limits.MaxRosterItems = 3 })
	s.addUser("juliet", "j")
	s.addUser("romeo", "r")
	j1, err := s.dialClient("juliet", "j", "balcony", sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	j2, err := s.dialClient("juliet", "j", "garden", sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := s.dialClient("juliet", "j", "quiet", sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	q := rosterGet(t, j1, "g0")
	if len(items(q)) != 0 || q.Attr("ver") == "" {
		t.Fatalf("new roster %s", q)
	}
	rosterGet(t, j2, "g0")

	j1.Send(`<iq type='set' id='s1'><query xmlns='` + nsRoster + `'><item jid='romeo@localhost' name='Romeo'><group>Friends</group><group>Verona</group></item></query></iq>`)
	var ver string
	for _, p := range []*peer{j1, j2} {
		for range 2 { // j1 gets its result and the push, in either order
			r := p.Next(wait)
			if r.Attr("id") == "s1" {
				if r.Attr("type") != "result" {
					t.Fatalf("set: %s", r)
				}
				continue
			}
			push := r.Child("query")
			if r.Attr("type") != "set" || push == nil || items(push)["romeo@localhost"] != "Romeo|none|Friends,Verona" {
				t.Fatalf("push to %s: %s", p.JID, r)
			}
			if f := r.Attr("from"); f != "" && f != "juliet@localhost" {
				t.Fatalf("push from %q", f)
			}
			ver = push.Attr("ver")
			p.Send(`<iq type='result' id='` + r.Attr("id") + `'/>`)
			if p == j2 {
				break
			}
		}
	}
	quiet.ExpectNothing(200 * time.Millisecond) // never asked for the roster: no pushes (RFC 6121 §2.1.6)
	q = rosterGet(t, j1, "g1")
	if items(q)["romeo@localhost"] != "Romeo|none|Friends,Verona" || q.Attr("ver") != ver {
		t.Fatalf("roster after set %s (push ver %s)", q, ver)
	}
	// The client's copy is current: an empty result (RFC 6121 §2.6.3).
	j1.Send(`<iq type='get' id='g2'><query xmlns='` + nsRoster + `' ver='` + ver + `'/></iq>`)
	if r := j1.Next(wait); r.Attr("type") != "result" || r.Child("query") != nil {
		t.Fatalf("get with current ver: %s", r)
	}

	// Errors (RFC 6121 §2.3.3, §2.5.3), each answered, none changing the roster.
	for _, tc := range []struct{ item, want string }{
		{`<item jid='a@localhost'/><item jid='b@localhost'/>`, "bad-request"},
		{`<item jid='juliet@localhost'/>`, "not-allowed"},
		{`<item jid='a@localhost'><group></group></item>`, "not-acceptable"},
		{`<item jid='a@localhost'><group>x</group><group>x</group></item>`, "bad-request"},
		{`<item jid='@@bad'/>`, "jid-malformed"},
		{`<item jid='nobody@localhost' subscription='remove'/>`, "item-not-found"},
	} {
		j1.Send(`<iq type='set' id='e'><query xmlns='` + nsRoster + `'>` + tc.item + `</query></iq>`)
		if r := j1.Next(wait); r.ErrorCondition() != tc.want {
			t.Errorf("%s: %s, want %s", tc.item, r, tc.want)
		}
	}
	// Another user may not read or change juliet's roster.
	r := s.client("romeo", "r")
	r.Send(`<iq type='get' id='peek' to='juliet@localhost'><query xmlns='` + nsRoster + `'/></iq>`)
	if e := r.Next(wait); e.ErrorCondition() != "forbidden" {
		t.Fatalf("romeo reading juliet's roster: %s", e)
	}

	// The limit: 3 items at most.
	for i, who := range []string{"a@localhost", "b@localhost", "c@localhost"} {
		j2.Send(`<iq type='set' id='l` + who + `'><query xmlns='` + nsRoster + `'><item jid='` + who + `'/></query></iq>`)
		want := "result"
		if i == 2 {
			want = "error"
		}
		for {
			e := j2.Next(wait)
			if e.Attr("id") != "l"+who {
				continue // pushes
			}
			if e.Attr("type") != want || (want == "error" && e.ErrorCondition() != "resource-constraint") {
				t.Fatalf("item %d: %s", i+1, e)
			}
			break
		}
	}

	// Removal, pushed with subscription='remove'; a new login reads what etcd holds.
	j2.Send(`<iq type='set' id='rm'><query xmlns='` + nsRoster + `'><item jid='romeo@localhost' subscription='remove'/></query></iq>`)
	for {
		e := j2.Next(wait)
		if e.Attr("id") == "rm" {
			if e.Attr("type") != "result" {
				t.Fatalf("remove: %s", e)
			}
			break
		}
	}
	for {
		e := j1.Next(wait)
		if q := e.Child("query"); q != nil && items(q)["romeo@localhost"] == "|remove|" {
			break
		}
	}
	j1.Close()
	j2.Close()
	j3 := s.client("juliet", "j")
	got := items(rosterGet(t, j3, "g3"))
	if len(got) != 2 || got["a@localhost"] != "|none|" || got["b@localhost"] != "|none|" {
		t.Fatalf("roster after a new login: %v", got)
	}
}
