package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/internal/etcdx"
)

const (
	nsPubsub = "http://jabber.org/protocol/pubsub"
	nsMAM    = "urn:xmpp:mam:2"
	nsFilt   = "urn:example:filtered"
	dns2     = "urn:xmpp:delegation:2"
)

// managing is a test component acting as a managing entity: it records advertisements,
// answers disco nesting queries and hands forwarded IQs to a handler.
type managing struct {
	*peer
	t        *testing.T
	domain   string
	ads      chan *elem
	forwards chan forwarded
	other    chan *elem
	features map[string][]string // nesting node → features it answers with
}

type forwarded struct {
	outer, inner *elem
}

func (s *server) managingEntity(domain string, features map[string][]string) *managing {
	s.t.Helper()
	p, err := s.component(domain, secret)
	if err != nil {
		s.t.Fatal(err)
	}
	m := &managing{peer: p, t: s.t, domain: domain, ads: make(chan *elem, 100), forwards: make(chan forwarded, 5000),
		other: make(chan *elem, 100), features: features}
	go m.loop()
	return m
}

func (m *managing) loop() {
	for e := range m.in {
		switch {
		case e.XMLName.Local == "message" && e.child("delegation") != nil:
			m.ads <- e
		case e.XMLName.Local == "iq" && e.child("delegation") != nil:
			fw := e.child("delegation").child("forwarded")
			var inner *elem
			if fw != nil {
				inner = fw.child("iq")
			}
			m.forwards <- forwarded{outer: e, inner: inner}
		case e.XMLName.Local == "iq" && e.child("query") != nil && e.child("query").attr("node") != "":
			node := e.child("query").attr("node")
			var b strings.Builder
			for _, f := range m.features[node] {
				b.WriteString("<feature var='" + f + "'/>")
			}
			m.sendAsync(fmt.Sprintf(`<iq type='result' from='%s' to='%s' id='%s'><query xmlns='http://jabber.org/protocol/disco#info' node='%s'>%s</query></iq>`,
				m.domain, e.attr("from"), e.attr("id"), node, b.String()))
		default:
			m.other <- e
		}
	}
}

// sendAsync is send usable off the test goroutine.
func (m *managing) sendAsync(raw string) {
	// context.Background on purpose: mellium's Send arms a watcher that, if the context
	// is cancelled just after Send returns, sets a past write deadline on the connection
	// and can fail the next, concurrent Send with an i/o timeout (observed under -race).
	if err := m.s.Send(context.Background(), tokensOf(raw)); err != nil {
		m.t.Errorf("%s: send failed: %v", m.domain, err)
	}
}

func (m *managing) nextForward(d time.Duration) forwarded {
	m.t.Helper()
	select {
	case f := <-m.forwards:
		return f
	case <-time.After(d):
		m.t.Fatalf("%s: no forwarded IQ within %v", m.domain, d)
	}
	return forwarded{}
}

func (m *managing) noForward(d time.Duration) {
	m.t.Helper()
	select {
	case f := <-m.forwards:
		m.t.Fatalf("%s: unexpected forward %s", m.domain, f.outer)
	case <-time.After(d):
	}
}

func (m *managing) nextAd(d time.Duration) map[string][]string {
	m.t.Helper()
	select {
	case e := <-m.ads:
		out := map[string][]string{}
		for _, dl := range e.child("delegation").Nodes {
			if dl.XMLName.Local != "delegated" {
				continue
			}
			var attrs []string
			for _, a := range dl.Nodes {
				attrs = append(attrs, a.attr("name"))
			}
			out[dl.attr("namespace")] = attrs
		}
		return out
	case <-time.After(d):
		m.t.Fatalf("%s: no advertisement within %v", m.domain, d)
	}
	return nil
}

// reply answers a forwarded IQ; the inner stanza is given in full.
func (m *managing) reply(f forwarded, innerXML string) {
	m.sendAsync(fmt.Sprintf(`<iq type='result' from='%s' to='%s' id='%s'><delegation xmlns='%s'><forwarded xmlns='urn:xmpp:forward:0'>%s</forwarded></delegation></iq>`,
		m.domain, f.outer.attr("from"), f.outer.attr("id"), dns2, innerXML))
}

// answer replies correctly with a result carrying payload.
func (m *managing) answer(f forwarded, payload string) {
	m.reply(f, fmt.Sprintf(`<iq xmlns='jabber:client' type='result' id='%s' to='%s'>%s</iq>`, f.inner.attr("id"), f.inner.attr("from"), payload))
}

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
	j.send(`<iq type='get' id='early' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='n'/></pubsub></iq>`)
	if r := j.next(wait); r.errorCondition() != "service-unavailable" || r.attr("id") != "early" {
		t.Fatalf("no entity: %s", r)
	}
	m := s.managingEntity("comp.localhost", nil)
	if ad := m.nextAd(wait); len(ad) != 2 || len(ad[nsPubsub]) != 0 || strings.Join(ad[nsFilt], ",") != "node,kind" {
		t.Fatalf("advertisement %v", ad)
	}
	for _, tc := range []struct{ name, to, typ string }{{"get to server", "localhost", "get"}, {"set without to", "", "set"}} {
		t.Run(tc.name, func(t *testing.T) {
			to := ""
			if tc.to != "" {
				to = " to='" + tc.to + "'"
			}
			j.send(`<iq type='` + tc.typ + `' id='pep1'` + to + `><pubsub xmlns='` + nsPubsub + `'><publish node='mood'><item/></publish></pubsub></iq>`)
			f := m.nextForward(wait)
			if f.outer.attr("type") != "set" || f.outer.attr("from") != "localhost" || f.outer.attr("id") == "pep1" {
				t.Fatalf("outer %s", f.outer)
			}
			if f.inner == nil || f.inner.attr("id") != "pep1" || f.inner.attr("from") != j.jid || f.inner.attr("to") != tc.to || f.inner.attr("type") != tc.typ {
				t.Fatalf("inner %s", f.outer)
			}
			if f.inner.XMLName.Space != "jabber:client" {
				t.Fatalf("inner namespace %q", f.inner.XMLName.Space)
			}
			m.answer(f, `<pubsub xmlns='`+nsPubsub+`'><publish node='mood'/></pubsub>`)
			r := j.next(wait)
			if r.attr("type") != "result" || r.attr("id") != "pep1" || r.attr("from") != tc.to || r.child("pubsub") == nil {
				t.Fatalf("juliet got %s", r)
			}
		})
	}
	// Filtering: every listed attribute present on the first child → forwarded.
	j.send(`<iq type='get' id='filt' to='localhost'><query xmlns='` + nsFilt + `' node='a' kind='b'/></iq>`)
	f := m.nextForward(wait)
	if f.inner.child("query").attr("node") != "a" {
		t.Fatalf("filtered forward %s", f.outer)
	}
	m.answer(f, "")
	if r := j.next(wait); r.attr("type") != "result" || r.attr("id") != "filt" {
		t.Fatalf("filtered reply %s", r)
	}
	// One attribute absent: handled as if nothing were delegated.
	j.send(`<iq type='get' id='nofilter' to='localhost'><query xmlns='` + nsFilt + `' node='a'/></iq>`)
	if r := j.next(wait); r.errorCondition() != "service-unavailable" || r.attr("id") != "nofilter" {
		t.Fatalf("unfiltered: %s", r)
	}
	m.noForward(200 * time.Millisecond)
	// The managing entity's own IQ in the namespace is not forwarded (to itself).
	m.sendAsync(`<iq type='get' id='own' from='comp.localhost' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='x'/></pubsub></iq>`)
	select {
	case e := <-m.other:
		if e.errorCondition() != "service-unavailable" || e.attr("id") != "own" {
			t.Fatalf("own IQ answered with %s", e)
		}
	case <-time.After(wait):
		t.Fatal("own IQ not answered")
	}
	m.noForward(200 * time.Millisecond)
}

func TestDelegationInvalidReplies(t *testing.T) {
	s := delegatedNode(t, func(c *config.Config) { c.Delegation.Timeout = config.Duration(1500 * time.Millisecond) })
	s.addUser("juliet", "j")
	s.addUser("romeo", "r")
	j := s.client("juliet", "j")
	bystander := s.client("romeo", "r")
	m := s.managingEntity("comp.localhost", nil)
	m.nextAd(wait)
	other := s.managingEntity("other.localhost", nil)
	iq := `<iq type='get' id='q1' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='n'/></pubsub></iq>`
	cases := []struct {
		name  string
		reply func(f forwarded)
	}{
		{"wrong inner id", func(f forwarded) {
			m.reply(f, `<iq xmlns='jabber:client' type='result' id='other' to='`+f.inner.attr("from")+`'/>`)
		}},
		{"wrong inner to", func(f forwarded) {
			m.reply(f, `<iq xmlns='jabber:client' type='result' id='q1' to='romeo@localhost/x'/>`)
		}},
		{"wrong inner from", func(f forwarded) {
			m.reply(f, `<iq xmlns='jabber:client' type='result' id='q1' from='romeo@localhost' to='`+f.inner.attr("from")+`'/>`)
		}},
		{"inner type get", func(f forwarded) {
			m.reply(f, `<iq xmlns='jabber:client' type='get' id='q1' to='`+f.inner.attr("from")+`'><ping xmlns='urn:xmpp:ping'/></iq>`)
		}},
		{"inner without jabber:client", func(f forwarded) {
			m.reply(f, `<iq type='result' id='q1' to='`+f.inner.attr("from")+`'/>`)
		}},
		{"not wrapped", func(f forwarded) {
			m.sendAsync(`<iq type='result' from='comp.localhost' to='localhost' id='` + f.outer.attr("id") + `'/>`)
		}},
		{"reply from another component", func(f forwarded) {
			other.sendAsync(fmt.Sprintf(`<iq type='result' from='other.localhost' to='localhost' id='%s'><delegation xmlns='%s'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='q1' to='%s'/></forwarded></delegation></iq>`,
				f.outer.attr("id"), dns2, f.inner.attr("from")))
		}},
		{"outer error", func(f forwarded) {
			m.sendAsync(`<iq type='error' from='comp.localhost' to='localhost' id='` + f.outer.attr("id") + `'><error type='cancel'><feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
		}},
		{"unknown outer id (then timeout)", func(f forwarded) {
			m.reply(forwarded{outer: &elem{Attrs: f.outer.Attrs[:0]}, inner: f.inner}, `<iq xmlns='jabber:client' type='result' id='q1' to='`+f.inner.attr("from")+`'/>`)
		}},
		{"no reply at all (timeout)", func(f forwarded) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j.send(iq)
			f := m.nextForward(wait)
			start := time.Now()
			tc.reply(f)
			r := j.next(wait)
			if r.errorCondition() != "service-unavailable" || r.attr("id") != "q1" || r.attr("from") != "localhost" {
				t.Fatalf("juliet got %s", r)
			}
			if strings.Contains(tc.name, "timeout") && time.Since(start) < time.Second {
				t.Fatalf("answered after %v, before the timeout", time.Since(start))
			}
			j.expectNothing(100 * time.Millisecond)
		})
	}
	// Nothing leaked to anyone else.
	bystander.expectNothing(100 * time.Millisecond)
	select {
	case e := <-other.other:
		t.Fatalf("other component got %s", e)
	default:
	}
	// A late reply to an answered IQ is dropped, not delivered.
	j.send(iq)
	f := m.nextForward(wait)
	m.sendAsync(`<iq type='error' from='comp.localhost' to='localhost' id='` + f.outer.attr("id") + `'/>`)
	j.next(wait)
	m.answer(f, "")
	j.expectNothing(200 * time.Millisecond)
}

func TestDelegationComponentDisconnectAndPipelining(t *testing.T) {
	s := delegatedNode(t)
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	m := s.managingEntity("comp.localhost", nil)
	m.nextAd(wait)

	// 1000 pipelined IQs, all answered, in any order, each exactly once.
	const n = 1000
	var buf strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&buf, `<iq type='get' id='p%d' to='localhost'><pubsub xmlns='%s'><items node='n%d'/></pubsub></iq>`, i, nsPubsub, i)
	}
	go func() {
		for i := 0; i < n; i++ {
			f := m.nextForward(60 * time.Second)
			m.answer(f, `<pubsub xmlns='`+nsPubsub+`'><items node='`+f.inner.child("pubsub").child("items").attr("node")+`'/></pubsub>`)
		}
	}()
	j.sendBatch(buf.String())
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		r := j.next(60 * time.Second)
		id := r.attr("id")
		if r.attr("type") != "result" || seen[id] || "n"+strings.TrimPrefix(id, "p") != r.child("pubsub").child("items").attr("node") {
			t.Fatalf("reply %d: %s", i, r)
		}
		seen[id] = true
	}

	// Disconnect with IQs pending: each gets service-unavailable promptly.
	for i := 0; i < 5; i++ {
		j.send(fmt.Sprintf(`<iq type='get' id='d%d' to='localhost'><pubsub xmlns='%s'><items node='n'/></pubsub></iq>`, i, nsPubsub))
		m.nextForward(wait)
	}
	start := time.Now()
	m.close()
	for i := 0; i < 5; i++ {
		if r := j.next(wait); r.errorCondition() != "service-unavailable" || !strings.HasPrefix(r.attr("id"), "d") {
			t.Fatalf("after disconnect: %s", r)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing pending IQs took %v", d)
	}
	j.expectNothing(200 * time.Millisecond)
}

func TestDelegationRulesInEtcdAtRuntime(t *testing.T) {
	s := delegatedNode(t)
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	m := s.managingEntity("comp.localhost", nil)
	if ad := m.nextAd(wait); len(ad) != 2 {
		t.Fatalf("initial ad %v", ad)
	}
	cli, err := etcdx.Connect(context.Background(), etcdEndpoints, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := delegation.NewStore(cli, s.cfg.Etcd.Prefix)
	ctx := context.Background()

	mam := `<iq type='get' id='mam' to='localhost'><query xmlns='` + nsMAM + `'/></iq>`
	j.send(mam)
	if r := j.next(wait); r.errorCondition() != "service-unavailable" {
		t.Fatalf("before rule: %s", r)
	}
	// Added: applies without a restart; the entity gets a new advertisement.
	if err := store.Set(ctx, "localhost", nsMAM, delegation.Rule{JID: "comp.localhost"}); err != nil {
		t.Fatal(err)
	}
	if ad := m.nextAd(wait); len(ad) != 3 || !has(ad, nsMAM) {
		t.Fatalf("ad after add: %v", ad)
	}
	j.send(mam)
	f := m.nextForward(wait)
	m.answer(f, "")
	if r := j.next(wait); r.attr("type") != "result" || r.attr("id") != "mam" {
		t.Fatalf("after add: %s", r)
	}
	// Changed (etcd overrides the config rule): pubsub moves to other.localhost.
	other := s.managingEntity("other.localhost", nil)
	if err := store.Set(ctx, "localhost", nsPubsub, delegation.Rule{JID: "other.localhost"}); err != nil {
		t.Fatal(err)
	}
	if ad := m.nextAd(wait); len(ad) != 2 || !has(ad, nsMAM) || has(ad, nsPubsub) {
		t.Fatalf("comp ad after change: %v", ad)
	}
	if ad := other.nextAd(wait); len(ad) != 1 || !has(ad, nsPubsub) {
		t.Fatalf("other ad after change: %v", ad)
	}
	j.send(`<iq type='get' id='ps' to='localhost'><pubsub xmlns='` + nsPubsub + `'><subscriptions/></pubsub></iq>`)
	f = other.nextForward(wait)
	other.answer(f, "")
	if r := j.next(wait); r.attr("type") != "result" || r.attr("id") != "ps" {
		t.Fatalf("after change: %s", r)
	}
	m.noForward(100 * time.Millisecond)
	// Removed: the config rule applies again for pubsub; mam is no longer delegated.
	if err := store.Remove(ctx, "localhost", nsPubsub); err != nil {
		t.Fatal(err)
	}
	if err := store.Remove(ctx, "localhost", nsMAM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "mam no longer delegated", func() bool {
		j.send(mam)
		select {
		case f := <-m.forwards:
			m.answer(f, "")
			j.next(wait)
			return false
		case <-time.After(100 * time.Millisecond):
		}
		r := j.next(wait)
		return r.errorCondition() == "service-unavailable"
	})
	// Forbidden namespace stored behind the CLI's back is ignored.
	if _, err := cli.Put(ctx, store.Key("localhost", dns2), `{"jid":"comp.localhost"}`); err != nil {
		t.Fatal(err)
	}
	j.send(`<iq type='get' id='pubsub-again' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='z'/></pubsub></iq>`)
	f = m.nextForward(wait)
	m.answer(f, "")
	if r := j.next(wait); r.attr("id") != "pubsub-again" || r.attr("type") != "result" {
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
	m.nextAd(wait)
	features := func(to string) map[string]bool {
		j.send(`<iq type='get' id='di' to='` + to + `'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
		r := j.next(wait)
		out := map[string]bool{}
		if q := r.child("query"); q != nil {
			for _, f := range q.Nodes {
				if f.XMLName.Local == "feature" {
					out[f.attr("var")] = true
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
	bf := features("romeo@localhost")
	if !bf[nsPubsub+"#auto-create"] || bf[nsPubsub+"#publish"] {
		t.Fatalf("bare features %v", bf)
	}
	// A second entity's nesting does not wipe the first's, and re-querying the first (it
	// reconnects) does not wipe the second's.
	other := s.managingEntity("other.localhost", map[string][]string{dns2 + "::" + nsMAM: {nsMAM, nsMAM + "#extended"}})
	other.nextAd(wait)
	waitFor(t, wait, "second entity's features", func() bool { return features("localhost")[nsMAM+"#extended"] })
	if !features("localhost")[nsPubsub+"#publish"] {
		t.Fatal("nested features of the first entity lost")
	}
	m.close()
	m = s.managingEntity("comp.localhost", map[string][]string{
		dns2 + "::" + nsPubsub:     {nsPubsub, nsPubsub + "#publish", nsPubsub + "#retract"},
		dns2 + ":bare:" + nsPubsub: {nsPubsub + "#auto-create"},
	})
	m.nextAd(wait)
	waitFor(t, wait, "re-queried features", func() bool { return features("localhost")[nsPubsub+"#retract"] })
	if !features("localhost")[nsMAM+"#extended"] {
		t.Fatal("re-querying one entity wiped another's features")
	}

	// IQ to a user's bare JID in a delegated namespace is forwarded too.
	j.send(`<iq type='get' id='bare1' to='romeo@localhost'><pubsub xmlns='` + nsPubsub + `'><items node='urn:xmpp:microblog:0'/></pubsub></iq>`)
	f := m.nextForward(wait)
	if f.inner.attr("to") != "romeo@localhost" {
		t.Fatalf("inner %s", f.outer)
	}
	m.reply(f, `<iq xmlns='jabber:client' type='result' id='bare1' from='romeo@localhost' to='`+j.jid+`'/>`)
	if r := j.next(wait); r.attr("type") != "result" || r.attr("from") != "romeo@localhost" {
		t.Fatalf("bare reply %s", r)
	}
	// Pseudo-namespace: disco#items on a bare JID goes to the entity.
	j.send(`<iq type='get' id='items1' to='romeo@localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	f = m.nextForward(wait)
	m.answer(f, `<query xmlns='http://jabber.org/protocol/disco#items'><item jid='romeo@localhost' node='urn:xmpp:microblog:0'/></query>`)
	if r := j.next(wait); r.attr("type") != "result" || r.child("query").child("item") == nil {
		t.Fatalf("bare items %s", r)
	}
	// Pseudo-namespace: disco#info with a node on a bare JID goes to the entity; without a
	// node the server answers (tested above).
	j.send(`<iq type='get' id='info1' to='romeo@localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='urn:xmpp:microblog:0'/></iq>`)
	f = m.nextForward(wait)
	if f.inner.child("query").attr("node") != "urn:xmpp:microblog:0" {
		t.Fatalf("info forward %s", f.outer)
	}
	m.answer(f, `<query xmlns='http://jabber.org/protocol/disco#info' node='urn:xmpp:microblog:0'><identity category='pubsub' type='leaf'/></query>`)
	if r := j.next(wait); r.attr("type") != "result" || r.child("query").child("identity").attr("type") != "leaf" {
		t.Fatalf("bare info node %s", r)
	}
	// A bare JID that is no account: not delegated.
	j.send(`<iq type='get' id='ghost' to='ghost@localhost'><pubsub xmlns='` + nsPubsub + `'><items node='x'/></pubsub></iq>`)
	if r := j.next(wait); r.errorCondition() != "service-unavailable" {
		t.Fatalf("ghost: %s", r)
	}
	m.noForward(100 * time.Millisecond)
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
	ad := p.next(wait)
	if ad.child("delegation") == nil || ad.child("delegation").XMLName.Space != "urn:xmpp:delegation:1" {
		t.Fatalf("v1 advertisement %s", ad)
	}
	j.send(`<iq type='get' id='v1' to='localhost'><pubsub xmlns='` + nsPubsub + `'/></iq>`)
	var fw *elem
	for fw == nil {
		e := p.next(wait)
		if d := e.child("delegation"); d != nil && e.XMLName.Local == "iq" {
			if d.XMLName.Space != "urn:xmpp:delegation:1" {
				t.Fatalf("v1 forward %s", e)
			}
			fw = e
		}
	}
	// go-xmpp style: inner IQ without xmlns='jabber:client'.
	p.send(fmt.Sprintf(`<iq type='result' from='comp.localhost' to='localhost' id='%s'><delegation xmlns='urn:xmpp:delegation:1'><forwarded xmlns='urn:xmpp:forward:0'><iq type='result' id='v1' to='%s'/></forwarded></delegation></iq>`,
		fw.attr("id"), j.jid))
	if r := j.next(wait); r.attr("type") != "result" || r.attr("id") != "v1" {
		t.Fatalf("v1 reply %s", r)
	}
}

func TestDelegationMetrics(t *testing.T) {
	s := delegatedNode(t)
	s.addUser("juliet", "j")
	j := s.client("juliet", "j")
	m := s.managingEntity("comp.localhost", nil)
	m.nextAd(wait)
	j.send(`<iq type='get' id='m1' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='n'/></pubsub></iq>`)
	m.answer(m.nextForward(wait), "")
	j.next(wait)
	resp, err := http.Get("http://" + s.n.Addrs.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`switchboard_delegation_iqs_total{host="localhost",namespace="` + nsPubsub + `",outcome="forwarded"} 1`,
		`switchboard_delegation_iqs_total{host="localhost",namespace="` + nsPubsub + `",outcome="result"} 1`,
		`switchboard_delegation_latency_seconds_count{host="localhost",namespace="` + nsPubsub + `"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}
