package compliance

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

// quiet is how long a check waits to be sure that something does not arrive once what
// would have come before it (in stream order) has come, or after a round trip.
const quiet = 700 * time.Millisecond

type entry struct {
	id string
	fn func(k *check)
}

// checks in the order they run. Stream management is last: a failed resumption can
// leave a session waiting on the server (for minutes), which would receive what the
// offline checks send to alice.
var checks = []entry{
	{"rfc6121.roster-get", rosterGet},
	{"rfc6121.subscription", subscription},
	{"rfc6121.message-full-jid", messageFullJID},
	{"rfc6121.message-bare-jid", messageBareJID},
	{"rfc6121.ping", ping},
	{"rfc6121.disco-info", discoInfo},

	{"xep0160.offline-delay", offlineDelay},
	{"xep0160.headline-not-stored", headlineNotStored},

	{"xep0280.feature", carbonsFeature},
	{"xep0280.enable", carbonsEnable},
	{"xep0280.received-copy", carbonsReceived},
	{"xep0280.sent-copy", carbonsSent},
	{"xep0280.private", carbonsPrivate},

	{"xep0191.feature", blockingFeature},
	{"xep0191.blocklist-get", blocklistGet},
	{"xep0191.block-incoming", blockIncoming},
	{"xep0191.block-outgoing-error", blockOutgoing},
	{"xep0191.push", blockPush},
	{"xep0191.unblock", unblock},

	{"xep0352.feature", csiFeature},
	{"xep0352.inactive-active", csiInactiveActive},
	{"xep0352.message-while-inactive", csiMessage},

	{"xep0198.feature", smFeature},
	{"xep0198.enable", smEnable},
	{"xep0198.ack-count", smAckCount},
	{"xep0198.server-requests-ack", smServerR},
	{"xep0198.resume", smResume},
	{"xep0198.resume-takeover", smResumeTakeover},
	{"xep0198.resume-bogus-id", smResumeBogus},
}

func fromEnv(t *testing.T) {
	srv.addr = os.Getenv("COMPLIANCE_C2S")
	if srv.addr == "" {
		t.Skip("COMPLIANCE_C2S is not set: needs a running XMPP server (deploy/compare-servers.sh)")
	}
	srv.domain = os.Getenv("COMPLIANCE_DOMAIN")
	if srv.domain == "" {
		srv.domain = "localhost"
	}
	srv.name = os.Getenv("COMPLIANCE_NAME")
	if srv.name == "" {
		srv.name = srv.addr
	}
	srv.name = strings.Join(strings.Fields(srv.name), "_")
	us := strings.Split(os.Getenv("COMPLIANCE_USERS"), ",")
	if len(us) != 2 {
		t.Fatal("COMPLIANCE_USERS must be local:password,local:password (two existing accounts)")
	}
	for i, u := range us {
		local, pw, ok := strings.Cut(strings.TrimSpace(u), ":")
		if !ok || local == "" {
			t.Fatal("COMPLIANCE_USERS must be local:password,local:password (two existing accounts)")
		}
		srv.users[i] = account{local, pw}
	}
}

func TestCompliance(t *testing.T) {
	fromEnv(t)
	type result struct {
		id, verdict, reason string
	}
	var results []result
	passed := 0
	for _, c := range checks {
		k := &check{id: c.id}
		start := time.Now()
		t.Run(c.id, func(t *testing.T) {
			k.t, k.ran = t, true
			c.fn(k)
		})
		if !k.ran { // filtered out by -run
			continue
		}
		took := time.Since(start).Round(10 * time.Millisecond)
		r := result{id: c.id, verdict: "PASS", reason: "(" + took.String() + ")"}
		if k.t.Failed() {
			r.verdict = "FAIL"
			r.reason = k.reason
			if r.reason == "" {
				r.reason = "failed (see the test log)"
			}
		} else {
			passed++
		}
		r.reason = strings.Join(strings.Fields(r.reason), " ")
		if len(r.reason) > 240 {
			r.reason = r.reason[:240] + "…"
		}
		results = append(results, r)
	}
	for _, r := range results {
		fmt.Printf("CHECK %s %s %s %s\n", srv.name, r.id, r.verdict, r.reason)
	}
	fmt.Printf("SCORE %s %d/%d\n", srv.name, passed, len(results))
}

// --- RFC 6121

func rosterGet(k *check) {
	a := k.dial(0)
	r := a.iqOK("roster get", "get", "", `<query xmlns='`+nsRoster+`'/>`)
	if xmpptest.ChildNS(r, nsRoster, "query") == nil {
		k.fatalf("roster result without <query xmlns='%s'/>: %s", nsRoster, short(r))
	}
}

// removeContact removes jid from c's roster (no item there is fine) and tells jid that
// any subscription request from it is denied.
func removeContact(c *client, j string) error {
	if _, err := c.iqErr("set", "", `<query xmlns='`+nsRoster+`'><item jid='`+j+`' subscription='remove'/></query>`); err != nil {
		return err
	}
	return c.trySend(`<presence to='` + j + `' type='unsubscribed'/>`)
}

// cleanRosters removes alice and bob from each other's rosters on fresh connections.
func cleanRosters(k *check) {
	for u := 0; u < 2; u++ {
		c, err := k.dialErr(u)
		if err != nil {
			continue
		}
		_ = removeContact(c, srv.bare(1-u))
		_, _ = c.iqErr("get", srv.domain, `<ping xmlns='`+nsPing+`'/>`)
		c.closeClean()
	}
}

func subscription(k *check) {
	cleanRosters(k)
	k.t.Cleanup(func() { cleanRosters(k) })
	// As clients do: the roster first (which makes them interested resources, RFC 6121
	// §2.1.6, that get roster pushes and subscription states), then initial presence.
	a, b := k.dial(0), k.dial(1)
	for _, c := range []*client{a, b} {
		c.iqOK("roster get", "get", "", `<query xmlns='`+nsRoster+`'/>`)
		c.send(`<presence/>`)
		c.sync()
	}
	a.send(`<presence to='` + srv.bare(1) + `' type='subscribe'/>`)
	b.expect("subscription request from alice", presenceFrom(srv.bare(0), "subscribe"))
	b.send(`<presence to='` + srv.bare(0) + `' type='subscribed'/>`)
	a.expect("roster push with subscription 'to' for bob", func(e *Elem) bool {
		if e.XMLName.Local != "iq" || e.Attr("type") != "set" {
			return false
		}
		it := xmpptest.ChildNS(e, nsRoster, "query")
		if it == nil || it.Child("item") == nil {
			return false
		}
		i := it.Child("item")
		return i.Attr("jid") == srv.bare(1) && (i.Attr("subscription") == "to" || i.Attr("subscription") == "both")
	})
	a.expect("'subscribed' from bob", presenceFrom(srv.bare(1), "subscribed"))
	a.expect("bob's available presence after the approval", func(e *Elem) bool {
		return presenceFrom(srv.bare(1), "")(e) && e.Attr("from") == b.full
	})
	b.send(`<presence><show>away</show><status>` + token() + `</status></presence>`)
	a.expect("bob's presence change (show away)", func(e *Elem) bool {
		if !presenceFrom(srv.bare(1), "")(e) || e.Attr("from") != b.full {
			return false
		}
		s := e.Child("show")
		return s != nil && s.Text == "away"
	})
}

func messageFullJID(k *check) {
	a, b := k.dial(0), k.online(1)
	b.sync()
	text := token()
	a.send(`<message to='` + b.full + `' type='chat'><body>` + text + `</body></message>`)
	m := b.expect("the message to its full JID", msgBody(text))
	if m.Attr("from") != a.full {
		k.fatalf("message from %q, want alice's full JID %q", m.Attr("from"), a.full)
	}
}

func messageBareJID(k *check) {
	a, b := k.dial(0), k.online(1)
	b.sync()
	text := token()
	a.send(`<message to='` + srv.bare(1) + `' type='chat'><body>` + text + `</body></message>`)
	m := b.expect("the message to its bare JID", msgBody(text))
	if m.Attr("from") != a.full {
		k.fatalf("message from %q, want alice's full JID %q", m.Attr("from"), a.full)
	}
}

func ping(k *check) {
	a := k.dial(0)
	a.iqOK("ping to the server", "get", srv.domain, `<ping xmlns='`+nsPing+`'/>`)
}

// discoFeatures returns the server's disco#info features (and fails on an error).
func discoFeatures(c *client) (map[string]bool, *Elem) {
	c.k.t.Helper()
	r := c.iqOK("disco#info of the server", "get", srv.domain, `<query xmlns='`+nsDiscoInfo+`'/>`)
	q := xmpptest.ChildNS(r, nsDiscoInfo, "query")
	if q == nil {
		c.k.fatalf("disco#info result without <query/>: %s", short(r))
	}
	fs := map[string]bool{}
	for _, n := range q.Nodes {
		if n.XMLName.Local == "feature" {
			fs[n.Attr("var")] = true
		}
	}
	return fs, q
}

func discoInfo(k *check) {
	a := k.dial(0)
	fs, q := discoFeatures(a)
	server := false
	for _, n := range q.Nodes {
		if n.XMLName.Local == "identity" && n.Attr("category") == "server" && n.Attr("type") == "im" {
			server = true
		}
	}
	if !server {
		k.fatalf("no identity server/im in %s", short(q))
	}
	if !fs[nsDiscoInfo] {
		k.fatalf("disco#info does not list its own feature %s", nsDiscoInfo)
	}
}

// --- XEP-0160 offline messages

// offlineAlice waits until alice's last session (closed cleanly) is gone, then returns
// a client of bob's to send from.
func offlineAlice(k *check) *client {
	time.Sleep(300 * time.Millisecond) // the previous check's streams ended; let the server drop them
	return k.dial(1)
}

func offlineDelay(k *check) {
	b := offlineAlice(k)
	text := token()
	sentAt := time.Now()
	b.send(`<message to='` + srv.bare(0) + `' type='chat'><body>` + text + `</body></message>`)
	b.sync()
	b.expectNone("an error for the message to offline alice", 300*time.Millisecond, msgError(srv.bare(0)))
	a := k.dial(0)
	a.send(`<presence/>`)
	m := a.expect("the offline message after initial presence", msgBody(text))
	if bareOf(m.Attr("from")) != srv.bare(1) {
		k.fatalf("offline message from %q, want bob", m.Attr("from"))
	}
	d := xmpptest.ChildNS(m, nsDelay, "delay")
	if d == nil {
		k.fatalf("offline message without XEP-0203 <delay xmlns='%s'/>: %s", nsDelay, short(m))
	}
	stamp, err := time.Parse(time.RFC3339, d.Attr("stamp"))
	if err != nil {
		k.fatalf("delay stamp %q: %v", d.Attr("stamp"), err)
	}
	if stamp.Before(sentAt.Add(-time.Minute)) || stamp.After(time.Now().Add(time.Minute)) {
		k.fatalf("delay stamp %s, but the message was sent at %s", stamp, sentAt.UTC().Format(time.RFC3339))
	}
}

func headlineNotStored(k *check) {
	b := offlineAlice(k)
	headline, marker := token(), token()
	b.send(`<message to='` + srv.bare(0) + `' type='headline'><body>` + headline + `</body></message>`)
	b.send(`<message to='` + srv.bare(0) + `' type='chat'><body>` + marker + `</body></message>`)
	b.sync()
	a := k.dial(0)
	a.send(`<presence/>`)
	// Offline messages come oldest first: the chat message after the headline.
	if _, err := a.await(wait, msgBody(marker)); err != nil {
		k.fatalf("the chat message sent after the headline was not delivered at login either (%v): offline storage?", err)
	}
	a.expectNone("the headline sent while offline", quiet, msgBody(headline))
}

// --- XEP-0280 message carbons

func carbonsFeature(k *check) {
	a := k.dial(0)
	if fs, _ := discoFeatures(a); !fs[nsCarbons] {
		k.fatalf("server disco#info does not list %s", nsCarbons)
	}
}

func enableCarbons(c *client) {
	c.k.t.Helper()
	c.iqOK("enable carbons", "set", "", `<enable xmlns='`+nsCarbons+`'/>`)
}

func carbonsEnable(k *check) {
	a := k.dial(0)
	enableCarbons(a)
	a.iqOK("disable carbons", "set", "", `<disable xmlns='`+nsCarbons+`'/>`)
}

// carbonPair is alice on two resources (carbons enabled, available) and bob.
func carbonPair(k *check) (a1, a2, b *client) {
	a1, a2, b = k.online(0), k.online(0), k.online(1)
	enableCarbons(a1)
	enableCarbons(a2)
	b.sync()
	return
}

func carbonsReceived(k *check) {
	a1, a2, b := carbonPair(k)
	text := token()
	b.send(`<message to='` + a1.full + `' type='chat'><body>` + text + `</body></message>`)
	a1.expect("bob's message", msgBody(text))
	m := a2.expect("a received carbon of bob's message to the other resource", carbon("received", text))
	if m.Attr("from") != srv.bare(0) {
		k.fatalf("carbon from %q, want alice's bare JID", m.Attr("from"))
	}
	inner := xmpptest.ChildNS(xmpptest.ChildNS(m, nsCarbons, "received"), nsForward, "forwarded").Child("message")
	if inner.Attr("to") != a1.full || inner.Attr("from") != b.full {
		k.fatalf("forwarded message from %q to %q, want from %q to %q", inner.Attr("from"), inner.Attr("to"), b.full, a1.full)
	}
}

func carbonsSent(k *check) {
	a1, a2, b := carbonPair(k)
	text := token()
	a1.send(`<message to='` + srv.bare(1) + `' type='chat'><body>` + text + `</body></message>`)
	b.expect("alice's message", msgBody(text))
	m := a2.expect("a sent carbon of the other resource's message", carbon("sent", text))
	if m.Attr("from") != srv.bare(0) {
		k.fatalf("carbon from %q, want alice's bare JID", m.Attr("from"))
	}
	inner := xmpptest.ChildNS(xmpptest.ChildNS(m, nsCarbons, "sent"), nsForward, "forwarded").Child("message")
	if inner.Attr("to") != srv.bare(1) {
		k.fatalf("forwarded message to %q, want %q", inner.Attr("to"), srv.bare(1))
	}
	a1.expectNone("a carbon of its own message", 200*time.Millisecond, carbon("sent", text))
}

func carbonsPrivate(k *check) {
	a1, a2, b := carbonPair(k)
	const priv = `<private xmlns='` + nsCarbons + `'/><no-copy xmlns='urn:xmpp:hints'/>`
	// Sent: a private message, then a normal one whose copy must come alone.
	p1, n1 := token(), token()
	a1.send(`<message to='` + srv.bare(1) + `' type='chat'><body>` + p1 + `</body>` + priv + `</message>`)
	a1.send(`<message to='` + srv.bare(1) + `' type='chat'><body>` + n1 + `</body></message>`)
	b.expect("alice's private message", msgBody(p1))
	a2.expect("the sent carbon of the normal message after the private one", carbon("sent", n1))
	a2.expectNone("a sent carbon of the private message", 100*time.Millisecond, carbon("sent", p1))
	// Received: the same from bob to alice's first resource.
	p2, n2 := token(), token()
	b.send(`<message to='` + a1.full + `' type='chat'><body>` + p2 + `</body>` + priv + `</message>`)
	b.send(`<message to='` + a1.full + `' type='chat'><body>` + n2 + `</body></message>`)
	a1.expect("bob's private message", msgBody(p2))
	a2.expect("the received carbon of the normal message after the private one", carbon("received", n2))
	a2.expectNone("a received carbon of the private message", 100*time.Millisecond, carbon("received", p2))
}

// --- XEP-0191 blocking

func blockingFeature(k *check) {
	a := k.dial(0)
	if fs, _ := discoFeatures(a); !fs[nsBlocking] {
		k.fatalf("server disco#info does not list %s", nsBlocking)
	}
}

func blocklistGet(k *check) {
	a := k.dial(0)
	r := a.iqOK("blocklist get", "get", "", `<blocklist xmlns='`+nsBlocking+`'/>`)
	if xmpptest.ChildNS(r, nsBlocking, "blocklist") == nil {
		k.fatalf("blocklist result without <blocklist/>: %s", short(r))
	}
}

// block has c block j (and, at cleanup, empties alice's blocklist).
func block(c *client, j string) {
	c.k.t.Helper()
	c.k.t.Cleanup(func() { emptyBlocklist(c.k) })
	c.iqOK("block "+j, "set", "", `<block xmlns='`+nsBlocking+`'><item jid='`+j+`'/></block>`)
}

func emptyBlocklist(k *check) {
	c, err := k.dialErr(0)
	if err != nil {
		return
	}
	_, _ = c.iqErr("set", "", `<unblock xmlns='`+nsBlocking+`'/>`)
	c.closeClean()
}

func chat(to, text string) string {
	return `<message to='` + to + `' type='chat'><body>` + text + `</body></message>`
}

func blockIncoming(k *check) {
	a, b := k.online(0), k.online(1)
	a.sync()
	before := token()
	b.send(chat(srv.bare(0), before))
	a.expect("bob's message before blocking (precondition)", msgBody(before))
	block(a, srv.bare(1))
	toBare, toFull := token(), token()
	b.send(chat(srv.bare(0), toBare))
	b.send(chat(a.full, toFull))
	b.sync()
	a.expectNone("bob's message to its bare JID after blocking him", quiet, msgBody(toBare))
	a.expectNone("bob's message to its full JID after blocking him", 0, msgBody(toFull))
}

func blockOutgoing(k *check) {
	a, b := k.online(0), k.online(1)
	b.sync()
	block(a, srv.bare(1))
	text := token()
	a.send(chat(srv.bare(1), text))
	e := a.expect("an error for its message to the contact it blocked", msgError(srv.bare(1)))
	k.t.Logf("error: %s", e)
	cond := e.ErrorCondition()
	blocked := xmpptest.ChildNS(e.Child("error"), nsBlockErr, "blocked") != nil
	b.expectNone("the message from alice, who blocked him", 300*time.Millisecond, msgBody(text))
	switch {
	case cond != "not-acceptable" && !blocked:
		k.fatalf("error %s without <blocked xmlns='%s'/>, want not-acceptable with it", cond, nsBlockErr)
	case cond != "not-acceptable":
		k.fatalf("error %s, want not-acceptable", cond)
	case !blocked:
		k.fatalf("not-acceptable without <blocked xmlns='%s'/>", nsBlockErr)
	}
}

func blockItem(op, j string) func(*Elem) bool {
	return func(e *Elem) bool {
		if e.XMLName.Local != "iq" || e.Attr("type") != "set" {
			return false
		}
		p := xmpptest.ChildNS(e, nsBlocking, op)
		return p != nil && p.Child("item") != nil && p.Child("item").Attr("jid") == j
	}
}

func blockPush(k *check) {
	a1, a2 := k.dial(0), k.dial(0)
	a2.iqOK("blocklist get", "get", "", `<blocklist xmlns='`+nsBlocking+`'/>`)
	block(a1, srv.bare(1))
	p := a2.expect("a block push on the other resource (which asked for the blocklist)", blockItem("block", srv.bare(1)))
	if f := p.Attr("from"); f != "" && f != srv.bare(0) {
		k.fatalf("block push from %q, want none or alice's bare JID", f)
	}
	a1.iqOK("unblock "+srv.bare(1), "set", "", `<unblock xmlns='`+nsBlocking+`'><item jid='`+srv.bare(1)+`'/></unblock>`)
	a2.expect("an unblock push on the other resource", blockItem("unblock", srv.bare(1)))
}

func unblock(k *check) {
	a, b := k.online(0), k.online(1)
	a.sync()
	block(a, srv.bare(1))
	blocked := token()
	b.send(chat(srv.bare(0), blocked))
	b.sync()
	a.iqOK("unblock "+srv.bare(1), "set", "", `<unblock xmlns='`+nsBlocking+`'><item jid='`+srv.bare(1)+`'/></unblock>`)
	text := token()
	b.send(chat(srv.bare(0), text))
	a.expect("bob's message after unblocking him", msgBody(text))
	if e, _ := a.await(0, msgBody(blocked)); e != nil {
		k.fatalf("the message bob sent while blocked was delivered: %s", short(e))
	}
}

// --- XEP-0352 client state indication

func csiFeature(k *check) {
	a := k.dial(0)
	if !a.feature(nsCSI) {
		k.fatalf("no <csi xmlns='%s'/> stream feature after authentication", nsCSI)
	}
}

func csiInactiveActive(k *check) {
	a := k.online(0)
	a.send(`<inactive xmlns='` + nsCSI + `'/>`)
	a.sync()
	a.send(`<active xmlns='` + nsCSI + `'/>`)
	a.sync()
	if e, _ := a.await(0, func(e *Elem) bool { return e.XMLName.Local == "error" }); e != nil {
		k.fatalf("stream error: %s", short(e))
	}
}

func csiMessage(k *check) {
	a, b := k.online(0), k.online(1)
	a.send(`<inactive xmlns='` + nsCSI + `'/>`)
	a.sync()
	b.sync()
	text := token()
	start := time.Now()
	b.send(chat(a.full, text))
	if _, err := a.await(2*time.Second, msgBody(text)); err != nil {
		k.fatalf("message with a body not delivered within 2s while inactive: %v", err)
	}
	took := time.Since(start)
	a.send(`<active xmlns='` + nsCSI + `'/>`)
	a.sync()
	if took > time.Second {
		k.fatalf("message with a body held %v while inactive", took.Round(time.Millisecond))
	}
}

// --- XEP-0198 stream management

func smFeature(k *check) {
	a := k.dial(0)
	if !a.feature(nsSM) {
		k.fatalf("no <sm xmlns='%s'/> stream feature after authentication", nsSM)
	}
}

// enableSM enables stream management (with resumption if asked) and returns <enabled/>.
func enableSM(c *client, resume bool) *Elem {
	c.k.t.Helper()
	req := `<enable xmlns='` + nsSM + `'/>`
	if resume {
		req = `<enable xmlns='` + nsSM + `' resume='true'/>`
	}
	c.send(req)
	c.sm, c.sent, c.handled = true, 0, 0
	e, err := c.await(wait, func(e *Elem) bool {
		return e.XMLName.Space == nsSM && (e.XMLName.Local == "enabled" || e.XMLName.Local == "failed")
	})
	switch {
	case err == errTimeout:
		c.k.fatalf("%s: no <enabled/> within %v", c.who(), wait)
	case err != nil:
		c.k.fatalf("%s: after <enable/>: %v", c.who(), err)
	case e.XMLName.Local == "failed":
		c.k.fatalf("%s: <enable/> answered %s", c.who(), short(e))
	}
	if resume {
		if r := e.Attr("resume"); r != "true" && r != "1" {
			c.k.fatalf("resumption asked for, <enabled/> has resume=%q: %s", r, short(e))
		}
		if e.Attr("id") == "" {
			c.k.fatalf("resumable <enabled/> without an id: %s", short(e))
		}
		c.smID = e.Attr("id")
	}
	return e
}

func smEnable(k *check) {
	a := k.dial(0)
	enableSM(a, false)
	a.sync() // the stream goes on
}

// ackCount asks for an ack and checks that it counts exactly what c sent.
func ackCount(c *client) {
	c.k.t.Helper()
	c.send(`<r xmlns='` + nsSM + `'/>`)
	e := c.expect("<a/> answering <r/>", smElem("a"))
	if e.Attr("h") != strconv.FormatUint(uint64(c.sent), 10) {
		c.k.fatalf("<a h='%s'/> after %d stanzas sent since <enable/>", e.Attr("h"), c.sent)
	}
}

func smAckCount(k *check) {
	a := k.dial(0)
	enableSM(a, false)
	a.send(`<presence/>`)
	a.sync()
	a.sync()
	ackCount(a) // 3
	for i := 0; i < 4; i++ {
		a.send(`<iq type='get' id='burst` + strconv.Itoa(i) + `' to='` + srv.domain + `'><ping xmlns='` + nsPing + `'/></iq>`)
	}
	ackCount(a) // 7, before the answers are read
}

func smServerR(k *check) {
	a, b := k.dial(0), k.dial(1)
	enableSM(a, false)
	texts := []string{token(), token(), token()}
	for _, t := range texts {
		b.send(chat(a.full, t))
	}
	for _, t := range texts {
		a.expect("bob's message", msgBody(t))
	}
	a.expect("<r/> from the server after it sent stanzas", smElem("r")) // answered by recv
	a.sync()
	ackCount(a)
	text := token()
	b.send(chat(a.full, text))
	a.expect("bob's message after the ack", msgBody(text))
}

// resumable is alice with resumable stream management, available, and bob; alice has
// received one message from bob (m1), counted in what she handled.
func resumable(k *check) (a, b *client, m1 string) {
	a = k.dial(0)
	enableSM(a, true)
	k.t.Cleanup(func() { endSession(k, a) })
	a.send(`<presence/>`)
	a.sync()
	b = k.dial(1)
	m1 = token()
	b.send(chat(a.full, m1))
	a.expect("bob's first message", msgBody(m1))
	a.drain()
	return a, b, m1
}

// endSession takes over the session a had, if it is still waiting for resumption, and
// ends it cleanly, so that it does not receive what later checks send to alice.
func endSession(k *check, a *client) {
	if a.smID == "" {
		return
	}
	if c, _, err := k.dialResume(a.user, a.full, a.smID, a.handled); err == nil {
		c.closeClean()
	}
}

// resume reconnects as a and resumes its session; it checks <resumed/>'s h and that
// m2 (sent while a was away) comes again and m1 (which a handled) does not.
func resume(k *check, a *client, m1, m2 string) {
	k.t.Helper()
	r, ans, err := k.dialResume(a.user, a.full, a.smID, a.handled)
	if err != nil {
		k.fatalf("resume: %v (answer %s)", err, short(ans))
	}
	a.smID = "" // resumed: the cleanup ends r
	r.sent, r.handled = a.sent, a.handled
	if ans.Attr("h") != strconv.FormatUint(uint64(a.sent), 10) {
		k.fatalf("<resumed h='%s'/>, but the server had handled the %d stanzas alice sent", ans.Attr("h"), a.sent)
	}
	r.expect("the message bob sent while the connection was lost", msgBody(m2))
	if e, _ := r.await(0, msgBody(m1)); e != nil {
		k.fatalf("the message acknowledged with h was sent again: %s", short(e))
	}
	r.sync()
	text := token()
	r.send(`<message to='` + srv.bare(1) + `' type='chat'><body>` + text + `</body></message>`)
	r.sync()
	ackCount(r)
}

func smResume(k *check) {
	a, b, m1 := resumable(k)
	a.drop()
	time.Sleep(300 * time.Millisecond)
	m2 := token()
	b.send(chat(a.full, m2))
	b.sync()
	resume(k, a, m1, m2)
	_ = b
}

func smResumeTakeover(k *check) {
	a, b, m1 := resumable(k)
	// The old connection stays open (a dead network path the server has not noticed):
	// what bob sends now goes to it, and alice never handles it.
	m2 := token()
	b.send(chat(a.full, m2))
	b.sync()
	time.Sleep(100 * time.Millisecond)
	a.ended = fmt.Errorf("abandoned")
	resume(k, a, m1, m2)
}

func smResumeBogus(k *check) {
	_, ans, err := k.dialResume(0, "", "bogus-"+token(), 0)
	if err == nil {
		k.fatalf("resuming an unknown id: %s", short(ans))
	}
	if ans.XMLName.Local != "failed" {
		k.fatalf("resuming an unknown id: %v (no <sm/> stream feature?)", err)
	}
	if xmpptest.ChildNS(ans, nsStanzas, "item-not-found") == nil {
		k.fatalf("<failed/> without item-not-found: %s", short(ans))
	}
}
