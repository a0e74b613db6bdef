package liberviatest

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

// wait bounds every expected answer; the exchanges themselves take milliseconds.
const wait = 10 * time.Second

const (
	nsPubSub      = "http://jabber.org/protocol/pubsub"
	nsPubSubOwner = "http://jabber.org/protocol/pubsub#owner"
	nsPubSubEvent = "http://jabber.org/protocol/pubsub#event"
	nsMAM         = "urn:xmpp:mam:2"
	nsDiscoInfo   = "http://jabber.org/protocol/disco#info"
	nsCaps        = "http://jabber.org/protocol/caps"
	nsRoster      = "jabber:iq:roster"
	nsData        = "jabber:x:data"
	nsForward     = "urn:xmpp:forward:0"
)

type account struct{ local, password string }

func (a account) bare() string { return a.local + "@localhost" }

type setup struct {
	c2s, pubsub string
	alice, bob  account
}

func fromEnv(t *testing.T) setup {
	t.Helper()
	s := setup{c2s: os.Getenv("SWITCHBOARD_LIBERVIA_C2S"), pubsub: os.Getenv("SWITCHBOARD_LIBERVIA_PUBSUB")}
	if s.c2s == "" {
		t.Skip("SWITCHBOARD_LIBERVIA_C2S is not set: needs Switchboard with libervia-pubsub, run deploy/test-libervia.sh")
	}
	if s.pubsub == "" {
		s.pubsub = "pubsub.localhost"
	}
	for i, a := range []*account{&s.alice, &s.bob} {
		name := "SWITCHBOARD_LIBERVIA_USER" + strconv.Itoa(i+1)
		local, pw, ok := strings.Cut(os.Getenv(name), ":")
		if !ok || local == "" {
			t.Fatalf("%s must be localpart:password", name)
		}
		*a = account{local, pw}
	}
	return s
}

// client is a logged-in user as a real client behaves: it answers disco#info queries
// with its features and acknowledges roster pushes while the test waits for something.
type client struct {
	*xmpptest.Peer
	name     string
	features []string
	caps     string          // XEP-0115 ver of features
	queried  map[string]bool // who asked it for disco#info
	ids      int
}

const identity = "client/pc//Switchboard libervia test"

func login(t *testing.T, addr string, a account, features ...string) *client {
	t.Helper()
	p := xmpptest.Client(t, addr, a.local, a.password)
	c := &client{Peer: p, name: a.local, features: append([]string{nsDiscoInfo, nsCaps}, features...), queried: map[string]bool{}}
	sort.Strings(c.features)
	// XEP-0115 §5.1: S = identities, then features, each followed by '<'.
	s := identity + "<" + strings.Join(c.features, "<") + "<"
	h := sha1.Sum([]byte(s))
	c.caps = base64.StdEncoding.EncodeToString(h[:])
	return c
}

func (c *client) id(prefix string) string {
	c.ids++
	return fmt.Sprintf("%s-%s-%d", c.name, prefix, c.ids)
}

func (c *client) send(t *testing.T, raw string) {
	t.Helper()
	if err := c.S.Send(context.Background(), xmpptest.Tokens(raw)); err != nil {
		t.Fatalf("%s: send %s: %v", c.name, raw, err)
	}
}

// next returns the first stanza that ok accepts, within wait. Stanzas before it are
// handled as a client would (disco#info answered, roster pushes acknowledged) and
// otherwise only logged; ok is asked after that handling.
func (c *client) next(t *testing.T, what string, ok func(*xmpptest.Elem) bool) *xmpptest.Elem {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		select {
		case e, open := <-c.In:
			if !open {
				t.Fatalf("%s: stream ended while waiting for %s: %v", c.name, what, <-c.Errc)
			}
			handled := c.handle(t, e)
			if ok(e) {
				return e
			}
			if !handled {
				t.Logf("%s: (while waiting for %s) %s", c.name, what, e)
			}
		case <-deadline.C:
			t.Fatalf("%s: no %s within %v", c.name, what, wait)
		}
	}
}

func (c *client) handle(t *testing.T, e *xmpptest.Elem) bool {
	t.Helper()
	if e.XMLName.Local != "iq" || len(e.Nodes) == 0 {
		return false
	}
	q := &e.Nodes[0]
	switch {
	case e.Attr("type") == "get" && q.XMLName.Space == nsDiscoInfo:
		var b strings.Builder
		fmt.Fprintf(&b, `<iq type='result' id='%s' to='%s'><query xmlns='%s'`, esc(e.Attr("id")), esc(e.Attr("from")), nsDiscoInfo)
		if n := q.Attr("node"); n != "" {
			fmt.Fprintf(&b, ` node='%s'`, esc(n))
		}
		b.WriteString(`><identity category='client' type='pc' name='Switchboard libervia test'/>`)
		for _, f := range c.features {
			fmt.Fprintf(&b, `<feature var='%s'/>`, esc(f))
		}
		b.WriteString(`</query></iq>`)
		c.send(t, b.String())
		c.queried[e.Attr("from")] = true
		t.Logf("%s: answered disco#info from %s", c.name, e.Attr("from"))
		return true
	case e.Attr("type") == "set" && q.XMLName.Space == nsRoster:
		c.send(t, fmt.Sprintf(`<iq type='result' id='%s'/>`, esc(e.Attr("id"))))
		return true
	}
	return false
}

// iq sends an IQ (its id is added) and returns the answer.
func (c *client) iq(t *testing.T, typ, to, payload string) *xmpptest.Elem {
	t.Helper()
	id := c.id("iq")
	toAttr := ""
	if to != "" {
		toAttr = fmt.Sprintf(` to='%s'`, esc(to))
	}
	c.send(t, fmt.Sprintf(`<iq type='%s' id='%s'%s>%s</iq>`, typ, id, toAttr, payload))
	return c.next(t, "answer to IQ "+id, isIQ(id))
}

func isIQ(id string) func(*xmpptest.Elem) bool {
	return func(e *xmpptest.Elem) bool {
		return e.XMLName.Local == "iq" && e.Attr("id") == id && (e.Attr("type") == "result" || e.Attr("type") == "error")
	}
}

func presence(from, typ string) func(*xmpptest.Elem) bool {
	return func(e *xmpptest.Elem) bool {
		return e.XMLName.Local == "presence" && bareOf(e.Attr("from")) == from && e.Attr("type") == typ
	}
}

func bareOf(j string) string { b, _, _ := strings.Cut(j, "/"); return b }

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), "'", "&#39;")
}

// child follows a path of local names (each with its namespace if given as ns|local).
func child(e *xmpptest.Elem, path ...string) *xmpptest.Elem {
	for _, p := range path {
		if e == nil {
			return nil
		}
		ns, local, hasNS := strings.Cut(p, "|")
		if !hasNS {
			e = e.Child(p)
			continue
		}
		var found *xmpptest.Elem
		for i := range e.Nodes {
			if e.Nodes[i].XMLName.Space == ns && e.Nodes[i].XMLName.Local == local {
				found = &e.Nodes[i]
				break
			}
		}
		e = found
	}
	return e
}

func mustResult(t *testing.T, what string, e *xmpptest.Elem) {
	t.Helper()
	if e.Attr("type") != "result" {
		t.Fatalf("%s: want a result, got %s (%s)", what, e.ErrorCondition(), e)
	}
}

// rosterItem returns the subscription of contact in c's roster ("" if absent).
func rosterItem(t *testing.T, c *client, contact string) string {
	t.Helper()
	r := c.iq(t, "get", "", `<query xmlns='jabber:iq:roster'/>`)
	mustResult(t, c.name+"'s roster", r)
	for _, it := range child(r, nsRoster+"|query").Nodes {
		if it.XMLName.Local == "item" && it.Attr("jid") == contact {
			return it.Attr("subscription")
		}
	}
	return ""
}

// formValue returns the value of field v in a data form.
func formValue(x *xmpptest.Elem, v string) (string, bool) {
	if x == nil {
		return "", false
	}
	for _, f := range x.Nodes {
		if f.XMLName.Local == "field" && f.Attr("var") == v {
			if val := f.Child("value"); val != nil {
				return val.Text, true
			}
			return "", true
		}
	}
	return "", false
}

// TestLiberviaPEP: alice publishes to a PEP node of her own; bob, her contact whose
// client announces +notify for it, is notified and finds the node in her disco#items;
// alice reads the node's archive (MAM), configures it and deletes it. Each step is a
// subtest, in that order.
func TestLiberviaPEP(t *testing.T) {
	s := fromEnv(t)
	// A node of its own for every run, so that a run against a server used before
	// starts from nothing.
	node := "urn:xmpp:switchboard:libervia-test:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const itemID = "item-1"
	const title = "hello from alice"

	alice := login(t, s.c2s, s.alice)
	bob := login(t, s.c2s, s.bob, node+"+notify")

	// Both log in as a client does: roster, then initial presence; bob's carries his
	// entity capabilities (XEP-0115), from which the PEP service learns his +notify.
	subscribed := rosterItem(t, alice, s.bob.bare()) == "both"
	rosterItem(t, bob, s.alice.bare())
	alice.send(t, `<presence/>`)
	bob.send(t, fmt.Sprintf(`<presence><c xmlns='%s' hash='sha-1' node='https://switchboard.example/liberviatest' ver='%s'/></presence>`, nsCaps, bob.caps))
	if !subscribed {
		// Mutual presence subscription (RFC 6121 §3): bob is alice's contact.
		bob.send(t, fmt.Sprintf(`<presence type='subscribe' to='%s'/>`, s.alice.bare()))
		alice.next(t, "bob's subscription request", presence(s.bob.bare(), "subscribe"))
		alice.send(t, fmt.Sprintf(`<presence type='subscribed' to='%s'/>`, s.bob.bare()))
		alice.send(t, fmt.Sprintf(`<presence type='subscribe' to='%s'/>`, s.bob.bare()))
		bob.next(t, "alice's approval", presence(s.alice.bare(), "subscribed"))
		bob.next(t, "alice's subscription request", presence(s.alice.bare(), "subscribe"))
		bob.send(t, fmt.Sprintf(`<presence type='subscribed' to='%s'/>`, s.alice.bare()))
		alice.next(t, "bob's approval", presence(s.bob.bare(), "subscribed"))
		if sub := rosterItem(t, alice, s.bob.bare()); sub != "both" {
			t.Fatalf("alice's roster item for bob: subscription %q, want both", sub)
		}
	}
	// The PEP service sees bob's presence (presence privilege), does not know his caps
	// hash yet and asks his client; only then does it know that he wants the node.
	if !bob.queried[s.pubsub] {
		bob.next(t, "libervia's disco#info query (bob's caps)", func(*xmpptest.Elem) bool { return bob.queried[s.pubsub] })
	}
	// A round trip to the component after the answer: it has handled the answer by then.
	mustResult(t, "disco#info of "+s.pubsub, bob.iq(t, "get", s.pubsub, `<query xmlns='`+nsDiscoInfo+`'/>`))

	ok := t.Run("publish", func(t *testing.T) {
		r := alice.iq(t, "set", "", fmt.Sprintf(`<pubsub xmlns='%s'><publish node='%s'><item id='%s'><entry xmlns='urn:example:switchboard:liberviatest'><title>%s</title></entry></item></publish></pubsub>`,
			nsPubSub, esc(node), itemID, title))
		mustResult(t, "publish", r)
		if p := child(r, nsPubSub+"|pubsub", "publish", "item"); p != nil && p.Attr("id") != itemID {
			t.Errorf("publish result names item %q, want %q: %s", p.Attr("id"), itemID, r)
		}
	})
	if !ok {
		return // nothing else can work
	}

	t.Run("notification", func(t *testing.T) {
		m := bob.next(t, "the event notification", func(e *xmpptest.Elem) bool {
			return e.XMLName.Local == "message" && child(e, nsPubSubEvent+"|event") != nil
		})
		if f := m.Attr("from"); f != s.alice.bare() {
			t.Errorf("notification from %q, want alice's bare JID %q: %s", f, s.alice.bare(), m)
		}
		items := child(m, nsPubSubEvent+"|event", "items")
		if items == nil || items.Attr("node") != node {
			t.Fatalf("notification is not for node %s: %s", node, m)
		}
		it := items.Child("item")
		if it == nil || it.Attr("id") != itemID {
			t.Fatalf("notification without item %s: %s", itemID, m)
		}
		if got := child(it, "entry", "title"); got == nil || got.Text != title {
			t.Errorf("notification payload: %s", m)
		}
	})

	t.Run("disco items", func(t *testing.T) {
		// disco#items to a user's bare JID (delegated pseudo-namespace
		// urn:xmpp:delegation:2:bare:disco#items:*): her PEP nodes, as a contact sees them.
		r := bob.iq(t, "get", s.alice.bare(), `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
		mustResult(t, "disco#items of alice", r)
		q := child(r, "http://jabber.org/protocol/disco#items|query")
		found := false
		for _, it := range q.Nodes {
			if it.XMLName.Local == "item" && it.Attr("node") == node {
				found = true
				if it.Attr("jid") != s.alice.bare() {
					t.Errorf("disco#items: node %s with jid %q, want %q", node, it.Attr("jid"), s.alice.bare())
				}
			}
		}
		if !found {
			t.Errorf("disco#items of alice does not list node %s: %s", node, r)
		}
	})

	t.Run("mam", func(t *testing.T) {
		id := alice.id("mam")
		const qid = "q-node"
		// With an RSM page size, as clients send it: libervia-pubsub 0.4.0+hg473 fails
		// a query without one (internal-server-error, mam.py reads mam_request.rsm.max).
		alice.send(t, fmt.Sprintf(`<iq type='set' id='%s' to='%s'><query xmlns='%s' queryid='%s' node='%s'>`+
			`<set xmlns='http://jabber.org/protocol/rsm'><max>20</max></set></query></iq>`,
			id, s.alice.bare(), nsMAM, qid, esc(node)))
		var results []*xmpptest.Elem
		var fin *xmpptest.Elem
		for fin == nil {
			e := alice.next(t, "MAM results and the final IQ", func(e *xmpptest.Elem) bool {
				return isIQ(id)(e) || (e.XMLName.Local == "message" && child(e, nsMAM+"|result") != nil)
			})
			if e.XMLName.Local == "iq" {
				fin = e
			} else {
				results = append(results, e)
			}
		}
		mustResult(t, "MAM query", fin)
		if child(fin, nsMAM+"|fin") == nil {
			t.Errorf("MAM IQ result without <fin/>: %s", fin)
		}
		if len(results) == 0 {
			t.Fatalf("no MAM result message before the IQ result %s", fin)
		}
		found := false
		for _, m := range results {
			r := child(m, nsMAM+"|result")
			if r.Attr("queryid") != qid {
				t.Errorf("result with queryid %q, want %q: %s", r.Attr("queryid"), qid, m)
			}
			// libervia-pubsub sends them as the server (XEP-0356 message privilege).
			if f := m.Attr("from"); f != "localhost" && f != s.alice.bare() {
				t.Errorf("result message from %q: %s", f, m)
			}
			if it := child(r, nsForward+"|forwarded", "message", nsPubSubEvent+"|event", "items", "item"); it != nil && it.Attr("id") == itemID {
				found = true
				if got := child(it, "entry", "title"); got == nil || got.Text != title {
					t.Errorf("archived payload: %s", m)
				}
			}
		}
		if !found {
			t.Errorf("no MAM result holds item %s: %d results", itemID, len(results))
		}
	})

	t.Run("configure", func(t *testing.T) {
		get := func() *xmpptest.Elem {
			r := alice.iq(t, "get", "", fmt.Sprintf(`<pubsub xmlns='%s'><configure node='%s'/></pubsub>`, nsPubSubOwner, esc(node)))
			mustResult(t, "configure get", r)
			x := child(r, nsPubSubOwner+"|pubsub", "configure", nsData+"|x")
			if x == nil {
				t.Fatalf("configure get without a data form: %s", r)
			}
			return x
		}
		x := get()
		before, ok := formValue(x, "pubsub#max_items")
		if !ok {
			t.Fatalf("configuration form without pubsub#max_items: %s", x)
		}
		want := "7"
		if before == want {
			want = "8"
		}
		r := alice.iq(t, "set", s.alice.bare(), fmt.Sprintf(`<pubsub xmlns='%s'><configure node='%s'><x xmlns='%s' type='submit'>`+
			`<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>`+
			`<field var='pubsub#max_items'><value>%s</value></field></x></configure></pubsub>`, nsPubSubOwner, esc(node), nsData, want))
		mustResult(t, "configure set", r)
		if after, _ := formValue(get(), "pubsub#max_items"); after != want {
			t.Errorf("pubsub#max_items is %q after setting %q (was %q)", after, want, before)
		}
	})

	t.Run("delete", func(t *testing.T) {
		items := fmt.Sprintf(`<pubsub xmlns='%s'><items node='%s'/></pubsub>`, nsPubSub, esc(node))
		r := alice.iq(t, "get", s.alice.bare(), items)
		mustResult(t, "items before delete", r)
		if it := child(r, nsPubSub+"|pubsub", "items", "item"); it == nil || it.Attr("id") != itemID {
			t.Errorf("items before delete: want item %s: %s", itemID, r)
		}
		r = alice.iq(t, "set", s.alice.bare(), fmt.Sprintf(`<pubsub xmlns='%s'><delete node='%s'/></pubsub>`, nsPubSubOwner, esc(node)))
		mustResult(t, "delete", r)
		r = alice.iq(t, "get", s.alice.bare(), items)
		if c := r.ErrorCondition(); c != "item-not-found" {
			t.Errorf("items after delete: want item-not-found, got %q: %s", c, r)
		}
	})
}
