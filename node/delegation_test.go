package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
)

const (
	nsPubsub = "http://jabber.org/protocol/pubsub"
	nsMAM    = "urn:xmpp:mam:2"
	nsFilt   = "urn:example:filtered"
	dns2     = "urn:xmpp:delegation:2"
)

func has(m map[string][]string, k string) bool { _, ok := m[k]; return ok }

func delegatedNode(t *testing.T, mutate ...func(*config.Config)) *server {
	return startNode(t, append([]func(*config.Config){func(c *config.Config) {
		c.Hosts[0].Delegations = map[string]config.DelegationRule{
			nsPubsub: {JID: "comp.localhost"},
			nsFilt:   {JID: "comp.localhost", Filtering: []string{"node", "kind"}},
		}
		c.Components = append(c.Components, config.ComponentConfig{JID: "other.localhost", Secret: secret})
	}}, mutate...)...)
}

func TestDelegationHappyPathAndFiltering(t *testing.T) {
	s := delegatedNode(t)
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	// No managing entity connected yet.
	j.Send(`<iq type='get' id='early' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='n'/></pubsub></iq>`)
	if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" || r.Attr("id") != "early" {
		t.Fatalf("no entity: %s", r)
	}
	m := s.managingEntity("comp.localhost", nil)
	if ad := m.NextAd(wait); len(ad) != 2 || len(ad[nsPubsub]) != 0 || strings.Join(ad[nsFilt], ",") != "node,kind" {
		t.Fatalf("advertisement %v", ad)
	}
	for _, tc := range []struct{ name, to, typ string }{{"get to server", "localhost", "get"}, {"set without to", "", "set"}} {
		t.Run(tc.name, func(t *testing.T) {
			to := ""
			if tc.to != "" {
				to = " to='" + tc.to + "'"
			}
			j.Send(`<iq type='` + tc.typ + `' id='pep1'` + to + `><pubsub xmlns='` + nsPubsub + `'><publish node='mood'><item/></publish></pubsub></iq>`)
			f := m.NextForward(wait)
			if f.Outer.Attr("type") != "set" || f.Outer.Attr("from") != "localhost" || f.Outer.Attr("id") == "pep1" {
				t.Fatalf("outer %s", f.Outer)
			}
			if f.Inner == nil || f.Inner.Attr("id") != "pep1" || f.Inner.Attr("from") != j.JID || f.Inner.Attr("to") != tc.to || f.Inner.Attr("type") != tc.typ {
				t.Fatalf("inner %s", f.Outer)
			}
			if f.Inner.XMLName.Space != "jabber:client" {
				t.Fatalf("inner namespace %q", f.Inner.XMLName.Space)
			}
			m.Answer(f, `<pubsub xmlns='`+nsPubsub+`'><publish node='mood'/></pubsub>`)
			r := j.Next(wait)
			if r.Attr("type") != "result" || r.Attr("id") != "pep1" || r.Attr("from") != tc.to || r.Child("pubsub") == nil {
				t.Fatalf("juliet got %s", r)
			}
		})
	}
	// Filtering: every listed attribute present on the first child → forwarded.
	j.Send(`<iq type='get' id='filt' to='localhost'><query xmlns='` + nsFilt + `' node='a' kind='b'/></iq>`)
	f := m.NextForward(wait)
	if f.Inner.Child("query").Attr("node") != "a" {
		t.Fatalf("filtered forward %s", f.Outer)
	}
	m.Answer(f, "")
	if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("id") != "filt" {
		t.Fatalf("filtered reply %s", r)
	}
	// One attribute absent: handled as if nothing were delegated.
	j.Send(`<iq type='get' id='nofilter' to='localhost'><query xmlns='` + nsFilt + `' node='a'/></iq>`)
	if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" || r.Attr("id") != "nofilter" {
		t.Fatalf("unfiltered: %s", r)
	}
	m.NoForward(200 * time.Millisecond)
	// The managing entity's own IQ in the namespace is not forwarded (to itself).
	m.SendAsync(`<iq type='get' id='own' from='comp.localhost' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='x'/></pubsub></iq>`)
	select {
	case e := <-m.Other:
		if e.ErrorCondition() != "service-unavailable" || e.Attr("id") != "own" {
			t.Fatalf("own IQ answered with %s", e)
		}
	case <-time.After(wait):
		t.Fatal("own IQ not answered")
	}
	m.NoForward(200 * time.Millisecond)
}

func TestDelegationInvalidReplies(t *testing.T) {
	s := delegatedNode(t, func(c *config.Config) { c.Delegation.Timeout = config.Duration(1500 * time.Millisecond) })
	s.addUser("juliet", "j")
	s.addUser("romeo", "r")
	j := s.client("juliet", "j")
	bystander := s.client("romeo", "r")
	m := s.managingEntity("comp.localhost", nil)
	m.NextAd(wait)
	other := s.managingEntity("other.localhost", nil)
	iq := `<iq type='get' id='q1' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='n'/></pubsub></iq>`
	cases := []struct {
		name  string
		reply func(f forwarded)
	}{
		{"wrong inner id", func(f forwarded) {
			m.Reply(f, `<iq xmlns='jabber:client' type='result' id='other' to='`+f.Inner.Attr("from")+`'/>`)
		}},
		{"wrong inner to", func(f forwarded) {
			m.Reply(f, `<iq xmlns='jabber:client' type='result' id='q1' to='romeo@localhost/x'/>`)
		}},
		{"wrong inner from", func(f forwarded) {
			m.Reply(f, `<iq xmlns='jabber:client' type='result' id='q1' from='romeo@localhost' to='`+f.Inner.Attr("from")+`'/>`)
		}},
		{"inner type get", func(f forwarded) {
			m.Reply(f, `<iq xmlns='jabber:client' type='get' id='q1' to='`+f.Inner.Attr("from")+`'><ping xmlns='urn:xmpp:ping'/></iq>`)
		}},
		{"inner without jabber:client", func(f forwarded) {
			m.Reply(f, `<iq type='result' id='q1' to='`+f.Inner.Attr("from")+`'/>`)
		}},
		{"not wrapped", func(f forwarded) {
			m.SendAsync(`<iq type='result' from='comp.localhost' to='localhost' id='` + f.Outer.Attr("id") + `'/>`)
		}},
		{"reply from another component", func(f forwarded) {
			other.SendAsync(fmt.Sprintf(`<iq type='result' from='other.localhost' to='localhost' id='%s'><delegation xmlns='%s'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='q1' to='%s'/></forwarded></delegation></iq>`,
				f.Outer.Attr("id"), dns2, f.Inner.Attr("from")))
		}},
		{"outer error", func(f forwarded) {
			m.SendAsync(`<iq type='error' from='comp.localhost' to='localhost' id='` + f.Outer.Attr("id") + `'><error type='cancel'><feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
		}},
		{"unknown outer id (then timeout)", func(f forwarded) {
			m.Reply(forwarded{Outer: &elem{Attrs: f.Outer.Attrs[:0]}, Inner: f.Inner}, `<iq xmlns='jabber:client' type='result' id='q1' to='`+f.Inner.Attr("from")+`'/>`)
		}},
		{"no reply at all (timeout)", func(f forwarded) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j.Send(iq)
			f := m.NextForward(wait)
			start := time.Now()
			tc.reply(f)
			r := j.Next(wait)
			if r.ErrorCondition() != "service-unavailable" || r.Attr("id") != "q1" || r.Attr("from") != "localhost" {
				t.Fatalf("juliet got %s", r)
			}
			if strings.Contains(tc.name, "timeout") && time.Since(start) < time.Second {
				t.Fatalf("answered after %v, before the timeout", time.Since(start))
			}
			j.ExpectNothing(100 * time.Millisecond)
		})
	}
	// Nothing leaked to anyone else.
	bystander.ExpectNothing(100 * time.Millisecond)
	select {
	case e := <-other.Other:
		t.Fatalf("other component got %s", e)
	default:
	}
	// A late reply to an answered IQ is dropped, not delivered.
	j.Send(iq)
	f := m.NextForward(wait)
	m.SendAsync(`<iq type='error' from='comp.localhost' to='localhost' id='` + f.Outer.Attr("id") + `'/>`)
	j.Next(wait)
	m.Answer(f, "")
	j.ExpectNothing(200 * time.Millisecond)
}

func TestDelegationComponentDisconnectAndPipelining(t *testing.T) {
	// 1000 IQs in flight at once: more than limits.max_inflight_iqs allows by default
	// (TestDelegationInflightCap), so the cap is raised here.
	s := delegatedNode(t, func(c *config.Config) { c.Limits.MaxInflightIQs = 1000 })
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	m := s.managingEntity("comp.localhost", nil)
	m.NextAd(wait)

	// 1000 pipelined IQs, all answered, in any order, each exactly once.
	const n = 1000
	var buf strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&buf, `<iq type='get' id='p%d' to='localhost'><pubsub xmlns='%s'><items node='n%d'/></pubsub></iq>`, i, nsPubsub, i)
	}
	go func() {
		for i := 0; i < n; i++ {
			f := m.NextForward(60 * time.Second)
			m.Answer(f, `<pubsub xmlns='`+nsPubsub+`'><items node='`+f.Inner.Child("pubsub").Child("items").Attr("node")+`'/></pubsub>`)
		}
	}()
	j.SendBatch(buf.String())
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		r := j.Next(60 * time.Second)
		id := r.Attr("id")
		if r.Attr("type") != "result" || seen[id] || "n"+strings.TrimPrefix(id, "p") != r.Child("pubsub").Child("items").Attr("node") {
			t.Fatalf("reply %d: %s", i, r)
		}
		seen[id] = true
	}

	// Disconnect with IQs pending: each gets service-unavailable promptly.
	for i := 0; i < 5; i++ {
		j.Send(fmt.Sprintf(`<iq type='get' id='d%d' to='localhost'><pubsub xmlns='%s'><items node='n'/></pubsub></iq>`, i, nsPubsub))
		m.NextForward(wait)
	}
	start := time.Now()
	m.Close()
	for i := 0; i < 5; i++ {
		if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" || !strings.HasPrefix(r.Attr("id"), "d") {
			t.Fatalf("after disconnect: %s", r)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing pending IQs took %v", d)
	}
	j.ExpectNothing(200 * time.Millisecond)
}

func TestDelegationRulesInEtcdAtRuntime(t *testing.T) {
	s := delegatedNode(t)
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	m := s.managingEntity("comp.localhost", nil)
	if ad := m.NextAd(wait); len(ad) != 2 {
		t.Fatalf("initial ad %v", ad)
	}
	store := delegation.NewStore(s.cli, s.cfg.Etcd.Prefix)
	ctx := context.Background()

	mam := `<iq type='get' id='mam' to='localhost'><query xmlns='` + nsMAM + `'/></iq>`
	j.Send(mam)
	if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" {
		t.Fatalf("before rule: %s", r)
	}
	// Added: applies without a restart; the entity gets a new advertisement.
	if err := store.Set(ctx, "localhost", nsMAM, delegation.Rule{JID: "comp.localhost"}); err != nil {
		t.Fatal(err)
	}
	if ad := m.NextAd(wait); len(ad) != 3 || !has(ad, nsMAM) {
		t.Fatalf("ad after add: %v", ad)
	}
	j.Send(mam)
	f := m.NextForward(wait)
	m.Answer(f, "")
	if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("id") != "mam" {
		t.Fatalf("after add: %s", r)
	}
	// Changed (etcd overrides the config rule): pubsub moves to other.localhost.
	other := s.managingEntity("other.localhost", nil)
	if err := store.Set(ctx, "localhost", nsPubsub, delegation.Rule{JID: "other.localhost"}); err != nil {
		t.Fatal(err)
	}
	if ad := m.NextAd(wait); len(ad) != 2 || !has(ad, nsMAM) || has(ad, nsPubsub) {
		t.Fatalf("comp ad after change: %v", ad)
	}
	if ad := other.NextAd(wait); len(ad) != 1 || !has(ad, nsPubsub) {
		t.Fatalf("other ad after change: %v", ad)
	}
	j.Send(`<iq type='get' id='ps' to='localhost'><pubsub xmlns='` + nsPubsub + `'><subscriptions/></pubsub></iq>`)
	f = other.NextForward(wait)
	other.Answer(f, "")
	if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("id") != "ps" {
		t.Fatalf("after change: %s", r)
	}
	m.NoForward(100 * time.Millisecond)
	// Removed: the config rule applies again for pubsub; mam is no longer delegated.
	if err := store.Remove(ctx, "localhost", nsPubsub); err != nil {
		t.Fatal(err)
	}
	if err := store.Remove(ctx, "localhost", nsMAM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "mam no longer delegated", func() bool {
		j.Send(mam)
		select {
		case f := <-m.Forwards:
			m.Answer(f, "")
			j.Next(wait)
			return false
		case <-time.After(100 * time.Millisecond):
		}
		r := j.Next(wait)
		return r.ErrorCondition() == "service-unavailable"
	})
	// Forbidden namespace stored behind the CLI's back is ignored.
	if _, err := s.cli.Put(ctx, store.Key("localhost", dns2), `{"jid":"comp.localhost"}`); err != nil {
		t.Fatal(err)
	}
	j.Send(`<iq type='get' id='pubsub-again' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='z'/></pubsub></iq>`)
	f = m.NextForward(wait)
	m.Answer(f, "")
	if r := j.Next(wait); r.Attr("id") != "pubsub-again" || r.Attr("type") != "result" {
		t.Fatalf("config rule back: %s", r)
	}
}

func TestDelegationDiscoNestingAndBareJIDs(t *testing.T) {
	s := delegatedNode(t, func(c *config.Config) {
		c.Hosts[0].Delegations[delegation.BareDiscoItemsRemaining] = config.DelegationRule{JID: "comp.localhost"}
		c.Hosts[0].Delegations[delegation.BareDiscoInfoRemaining] = config.DelegationRule{JID: "comp.localhost"}
		c.Hosts[0].Delegations[nsMAM] = config.DelegationRule{JID: "other.localhost"}
	})
	s.addUser("juliet", "j")
	s.addUser("romeo", "r")
	j := s.client("juliet", "j")
	m := s.managingEntity("comp.localhost", map[string][]string{
		dns2 + "::" + nsPubsub:     {nsPubsub, nsPubsub + "#publish"},
		dns2 + ":bare:" + nsPubsub: {nsPubsub + "#auto-create"},
	})
	m.NextAd(wait)
	features := func(to string) map[string]bool {
		j.Send(`<iq type='get' id='di' to='` + to + `'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
		r := j.Next(wait)
		out := map[string]bool{}
		if q := r.Child("query"); q != nil {
			for _, f := range q.Nodes {
				if f.XMLName.Local == "feature" {
					out[f.Attr("var")] = true
				}
			}
		}
		return out
	}
	waitFor(t, wait, "nested server features", func() bool { return features("localhost")[nsPubsub+"#publish"] })
	sf := features("localhost")
	if !sf[nsPubsub] || !sf[dns2] || !sf["urn:xmpp:ping"] || sf[nsPubsub+"#auto-create"] {
		t.Fatalf("server features %v", sf)
	}
	// The entity answers the two nesting queries (server, bare JID) separately: wait for
	// the second too.
	waitFor(t, wait, "nested bare-JID features", func() bool { return features("romeo@localhost")[nsPubsub+"#auto-create"] })
	if bf := features("romeo@localhost"); bf[nsPubsub+"#publish"] {
		t.Fatalf("bare features %v", bf)
	}
	// A second entity's nesting does not wipe the first's, and re-querying the first (it
	// reconnects) does not wipe the second's.
	other := s.managingEntity("other.localhost", map[string][]string{dns2 + "::" + nsMAM: {nsMAM, nsMAM + "#extended"}})
	other.NextAd(wait)
	waitFor(t, wait, "second entity's features", func() bool { return features("localhost")[nsMAM+"#extended"] })
	if !features("localhost")[nsPubsub+"#publish"] {
		t.Fatal("nested features of the first entity lost")
	}
	m.Close()
	m = s.managingEntity("comp.localhost", map[string][]string{
		dns2 + "::" + nsPubsub:     {nsPubsub, nsPubsub + "#publish", nsPubsub + "#retract"},
		dns2 + ":bare:" + nsPubsub: {nsPubsub + "#auto-create"},
	})
	m.NextAd(wait)
	waitFor(t, wait, "re-queried features", func() bool { return features("localhost")[nsPubsub+"#retract"] })
	if !features("localhost")[nsMAM+"#extended"] {
		t.Fatal("re-querying one entity wiped another's features")
	}

	// IQ to a user's bare JID in a delegated namespace is forwarded too.
	j.Send(`<iq type='get' id='bare1' to='romeo@localhost'><pubsub xmlns='` + nsPubsub + `'><items node='urn:xmpp:microblog:0'/></pubsub></iq>`)
	f := m.NextForward(wait)
	if f.Inner.Attr("to") != "romeo@localhost" {
		t.Fatalf("inner %s", f.Outer)
	}
	m.Reply(f, `<iq xmlns='jabber:client' type='result' id='bare1' from='romeo@localhost' to='`+j.JID+`'/>`)
	if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("from") != "romeo@localhost" {
		t.Fatalf("bare reply %s", r)
	}
	// Pseudo-namespace: disco#items on a bare JID goes to the entity.
	j.Send(`<iq type='get' id='items1' to='romeo@localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	f = m.NextForward(wait)
	m.Answer(f, `<query xmlns='http://jabber.org/protocol/disco#items'><item jid='romeo@localhost' node='urn:xmpp:microblog:0'/></query>`)
	if r := j.Next(wait); r.Attr("type") != "result" || r.Child("query").Child("item") == nil {
		t.Fatalf("bare items %s", r)
	}
	// Pseudo-namespace: disco#info with a node on a bare JID goes to the entity; without a
	// node the server answers (tested above).
	j.Send(`<iq type='get' id='info1' to='romeo@localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='urn:xmpp:microblog:0'/></iq>`)
	f = m.NextForward(wait)
	if f.Inner.Child("query").Attr("node") != "urn:xmpp:microblog:0" {
		t.Fatalf("info forward %s", f.Outer)
	}
	m.Answer(f, `<query xmlns='http://jabber.org/protocol/disco#info' node='urn:xmpp:microblog:0'><identity category='pubsub' type='leaf'/></query>`)
	if r := j.Next(wait); r.Attr("type") != "result" || r.Child("query").Child("identity").Attr("type") != "leaf" {
		t.Fatalf("bare info node %s", r)
	}
	// A bare JID that is no account: not delegated.
	j.Send(`<iq type='get' id='ghost' to='ghost@localhost'><pubsub xmlns='` + nsPubsub + `'><items node='x'/></pubsub></iq>`)
	if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" {
		t.Fatalf("ghost: %s", r)
	}
	m.NoForward(100 * time.Millisecond)
}

func TestDelegationV1Compatibility(t *testing.T) {
	s := startNode(t, func(c *config.Config) {
		c.Hosts[0].Delegations = map[string]config.DelegationRule{nsPubsub: {JID: "comp.localhost"}}
		c.Components[0].DelegationNS = "urn:xmpp:delegation:1"
	})
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	p, err := s.component("comp.localhost", secret)
	if err != nil {
		t.Fatal(err)
	}
	ad := p.Next(wait)
	if ad.Child("delegation") == nil || ad.Child("delegation").XMLName.Space != "urn:xmpp:delegation:1" {
		t.Fatalf("v1 advertisement %s", ad)
	}
	j.Send(`<iq type='get' id='v1' to='localhost'><pubsub xmlns='` + nsPubsub + `'/></iq>`)
	var fw *elem
	for fw == nil {
		e := p.Next(wait)
		if d := e.Child("delegation"); d != nil && e.XMLName.Local == "iq" {
			if d.XMLName.Space != "urn:xmpp:delegation:1" {
				t.Fatalf("v1 forward %s", e)
			}
			fw = e
		}
	}
	// go-xmpp style: inner IQ without xmlns='jabber:client'.
	p.Send(fmt.Sprintf(`<iq type='result' from='comp.localhost' to='localhost' id='%s'><delegation xmlns='urn:xmpp:delegation:1'><forwarded xmlns='urn:xmpp:forward:0'><iq type='result' id='v1' to='%s'/></forwarded></delegation></iq>`,
		fw.Attr("id"), j.JID))
	if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("id") != "v1" {
		t.Fatalf("v1 reply %s", r)
	}
}

func TestDelegationMetrics(t *testing.T) {
	s := delegatedNode(t)
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	m := s.managingEntity("comp.localhost", nil)
	m.NextAd(wait)
	j.Send(`<iq type='get' id='m1' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='n'/></pubsub></iq>`)
	m.Answer(m.NextForward(wait), "")
	j.Next(wait)
	body := s.metrics()
	for _, want := range []string{
		`switchboard_delegation_iqs_total{host="localhost",namespace="` + nsPubsub + `",outcome="forwarded"} 1`,
		`switchboard_delegation_iqs_total{host="localhost",namespace="` + nsPubsub + `",outcome="result"} 1`,
		`switchboard_delegation_latency_seconds_count{host="localhost",namespace="` + nsPubsub + `"} 1`,
		`switchboard_connections{kind="component"} 1`,
		`switchboard_connections{kind="c2s"} `, // the login probes of addUser may still be closing
		`switchboard_stanzas_in_total{kind="iq",source="c2s"} 1`,
		`switchboard_stanzas_in_total{kind="iq",source="component"} `, // the reply and the disco nesting answers
		`switchboard_stanzas_out_total `,
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %s:\n%s", want, grepLines(body, "switchboard_"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A local account as managing entity (Prosody's mod_delegation allows jid = "user@host").
func TestDelegationToAccount(t *testing.T) {
	s := startNode(t, func(c *config.Config) {
		c.Hosts[0].Delegations = map[string]config.DelegationRule{nsPubsub: {JID: "bot@localhost"}}
	})
	s.addUser("juliet", "j")
	s.addUser("bot", "b")
	s.addUser("mallory", "m")
	j := s.client("juliet", "j")
	// Not online: service-unavailable.
	j.Send(`<iq type='get' id='off' to='localhost'><pubsub xmlns='` + nsPubsub + `'/></iq>`)
	if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" {
		t.Fatalf("bot offline: %s", r)
	}
	bot, err := s.dialClient("bot", "b", "worker", sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	defer bot.Close()
	bot.Send(`<presence/>`)
	ad := bot.Next(wait)
	if ad.XMLName.Local != "message" || ad.Attr("to") != "bot@localhost/worker" || ad.Child("delegation") == nil ||
		ad.Child("delegation").Child("delegated").Attr("namespace") != nsPubsub {
		t.Fatalf("advertisement %s", ad)
	}
	forwardedTo := func() (*elem, *elem) {
		t.Helper()
		e := bot.Next(wait)
		fw := e.Child("delegation")
		if e.XMLName.Local != "iq" || fw == nil || fw.Child("forwarded") == nil {
			t.Fatalf("bot got %s", e)
		}
		return e, fw.Child("forwarded").Child("iq")
	}
	j.Send(`<iq type='set' id='a1' to='localhost'><pubsub xmlns='` + nsPubsub + `'><publish node='x'/></pubsub></iq>`)
	outer, inner := forwardedTo()
	if outer.Attr("to") != bot.JID || outer.Attr("from") != "localhost" || inner.Attr("from") != j.JID {
		t.Fatalf("forward %s", outer)
	}
	bot.Send(`<iq type='result' to='localhost' id='` + outer.Attr("id") + `'><delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='a1' to='` + j.JID + `'/></forwarded></delegation></iq>`)
	if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("id") != "a1" {
		t.Fatalf("juliet got %s", r)
	}
	// The account's own IQs in the namespace are not forwarded.
	bot.Send(`<iq type='get' id='own' to='localhost'><pubsub xmlns='` + nsPubsub + `'/></iq>`)
	if r := bot.Next(wait); r.Attr("id") != "own" || r.ErrorCondition() != "service-unavailable" {
		t.Fatalf("own IQ: %s", r)
	}
	// A reply from another account is refused: juliet gets service-unavailable.
	m := s.client("mallory", "m")
	j.Send(`<iq type='get' id='a2' to='localhost'><pubsub xmlns='` + nsPubsub + `'/></iq>`)
	outer, _ = forwardedTo()
	m.Send(`<iq type='result' to='localhost' id='` + outer.Attr("id") + `'><delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='a2' to='` + j.JID + `'/></forwarded></delegation></iq>`)
	if r := j.Next(wait); r.Attr("id") != "a2" || r.ErrorCondition() != "service-unavailable" {
		t.Fatalf("reply from another account: %s", r)
	}
	// Last resource goes offline with an IQ pending: service-unavailable at once.
	j.Send(`<iq type='get' id='a3' to='localhost'><pubsub xmlns='` + nsPubsub + `'/></iq>`)
	forwardedTo()
	bot.Send(`<presence type='unavailable'/>`)
	if r := j.Next(wait); r.Attr("id") != "a3" || r.ErrorCondition() != "service-unavailable" {
		t.Fatalf("bot went offline: %s", r)
	}
}

// XEP-0356: a component with the message privilege sends on behalf of a local user; one
// without it, or naming someone else, is refused with forbidden.
func TestPrivilegedMessage(t *testing.T) {
	s := startNode(t, func(c *config.Config) {
		c.Log.Level = "debug"
		c.Components[0].Privileges.Message = "outgoing"
		c.Components = append(c.Components, config.ComponentConfig{JID: "other.localhost", Secret: secret})
	})
	s.addUser("juliet", "j")
	s.addUser("romeo", "r")
	r := s.client("romeo", "r")
	r.Send(`<presence/>`)
	r.Sync()
	c, err := s.component("comp.localhost", secret)
	if err != nil {
		t.Fatal(err)
	}
	ad := c.Next(wait)
	if p := ad.Child("privilege"); p == nil || p.Child("perm").Attr("access") != "message" || p.Child("perm").Attr("type") != "outgoing" {
		t.Fatalf("privilege advertisement %s", ad)
	}
	priv := func(from string) string {
		return `<message from='comp.localhost' to='localhost' id='pm'><privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>` +
			`<message xmlns='jabber:client' from='` + from + `' to='romeo@localhost' type='chat' id='inner'><body>from juliet, via the component</body></message>` +
			`</forwarded></privilege></message>`
	}
	c.Send(priv("juliet@localhost"))
	if m := r.Next(wait); m.Attr("from") != "juliet@localhost" || m.Attr("id") != "inner" || m.Child("body") == nil {
		t.Fatalf("romeo got %s", m)
	}
	// On behalf of the server itself (libervia-pubsub sends MAM results so).
	c.Send(priv("localhost"))
	if m := r.Next(wait); m.Attr("from") != "localhost" || m.Attr("id") != "inner" || m.Child("body") == nil {
		t.Fatalf("romeo got %s", m)
	}
	for _, from := range []string{"ghost@localhost", "juliet@localhost/res", "someone@elsewhere.example", "localhost/res", "other.localhost"} {
		c.Send(priv(from))
		if e := c.Next(wait); e.ErrorCondition() != "forbidden" {
			t.Fatalf("inner from %s: %s", from, e)
		}
	}
	o, err := s.component("other.localhost", secret)
	if err != nil {
		t.Fatal(err)
	}
	o.Send(strings.Replace(priv("juliet@localhost"), "from='comp.localhost'", "from='other.localhost'", 1))
	if e := o.Next(wait); e.ErrorCondition() != "forbidden" {
		t.Fatalf("unprivileged component: %s", e)
	}
	r.ExpectNothing(200 * time.Millisecond)
	// Each refusal is in the debug log, with its condition, sender and first bytes.
	logs := s.logs.String()
	var refusals, fromOther int
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `msg="stanza refused"`) && strings.Contains(line, "condition=forbidden") {
			refusals++
			if strings.Contains(line, "sender=other.localhost") && strings.Contains(line, `stanza="<message`) {
				fromOther++
			}
		}
	}
	if refusals != 6 || fromOther != 1 {
		t.Fatalf("%d refusals logged (%d of other.localhost's with its stanza), want 6 (1):\n%s", refusals, fromOther, logs)
	}
}

// limits.max_inflight_iqs over the wire: a client that pipelines more delegated IQs than
// the cap gets resource-constraint for the ones past it, at once, and every IQ is
// answered exactly once.
func TestDelegationInflightCap(t *testing.T) {
	s := delegatedNode(t, func(c *config.Config) { c.Limits.MaxInflightIQs = 10 })
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	m := s.managingEntity("comp.localhost", nil)
	m.NextAd(wait)
	const n = 30
	var buf strings.Builder
	for i := range n {
		fmt.Fprintf(&buf, `<iq type='get' id='p%d' to='localhost'><pubsub xmlns='%s'><items node='n'/></pubsub></iq>`, i, nsPubsub)
	}
	j.SendBatch(buf.String())
	refused := 0
	for range n - 10 {
		r := j.Next(wait)
		if r.ErrorCondition() != "resource-constraint" {
			t.Fatalf("past the cap: %s", r)
		}
		refused++
	}
	for range 10 {
		m.Answer(m.NextForward(wait), "")
	}
	for range 10 {
		if r := j.Next(wait); r.Attr("type") != "result" {
			t.Fatalf("within the cap: %s", r)
		}
	}
	j.ExpectNothing(200 * time.Millisecond)
	if refused != n-10 {
		t.Fatalf("%d refused", refused)
	}
}

// A component connection that closes its stream cleanly (</stream:stream>) has answered
// what it acted on: the IQs still waiting on it go to another connection of the
// component, and the requester gets that one's answer. One that just drops fails them.
func TestDelegationCleanCloseHandsIQsOn(t *testing.T) {
	s := delegatedNode(t)
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	m1 := s.managingEntity("comp.localhost", nil)
	m1.NextAd(wait)
	m2 := s.managingEntity("comp.localhost", nil)
	m2.NextAd(wait)
	answered := make(chan string, 100)
	go func() {
		for f := range m2.Forwards {
			answered <- f.Inner.Attr("id")
			m2.Answer(f, "")
		}
	}()
	// Round robin: of two IQs one waits at m1, which does not answer.
	j.Send(pubsubGet("a1"))
	j.Send(pubsubGet("a2"))
	held := m1.NextForward(wait)
	first := j.Next(wait)
	if first.Attr("type") != "result" {
		t.Fatalf("from m2: %s", first)
	}
	m1.CloseClean() // the closing tag, the server's, then the connection
	r := j.Next(wait)
	if r.Attr("type") != "result" || r.Attr("id") != held.Inner.Attr("id") {
		t.Fatalf("the IQ m1 held, after its clean close: %s", r)
	}
	for range 2 {
		<-answered
	}

	// A connection that drops without its closing tag: what waits on it fails.
	m3 := s.managingEntity("comp.localhost", nil)
	m3.NextAd(wait)
	var dropped string
	for i := 0; dropped == ""; i++ {
		j.Send(pubsubGet(fmt.Sprint("b", i)))
		select {
		case f := <-m3.Forwards:
			dropped = f.Inner.Attr("id")
		case <-answered:
			if r := j.Next(wait); r.Attr("type") != "result" {
				t.Fatalf("from m2: %s", r)
			}
		}
	}
	_ = m3.S.Conn().Close()
	if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" || r.Attr("id") != dropped {
		t.Fatalf("the IQ m3 held, after it dropped: %s", r)
	}
	j.ExpectNothing(200 * time.Millisecond)
}

func pubsubGet(id string) string {
	return `<iq type='get' id='` + id + `' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='n'/></pubsub></iq>`
}
