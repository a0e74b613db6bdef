package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/internal/testca"
	"github.com/switchboard-im/switchboard/internal/xmpptest"
	"github.com/switchboard-im/switchboard/xmpp"
)

// federated is a node serving one domain with federation on, on its own loopback address.
type federated struct {
	*server
	domain, s2s string
}

// startFederated starts nodes serving the domains, each with a certificate of ca, routes
// to each other (and the extra routes), and the accounts alice and bob on each.
func startFederated(t *testing.T, ca *testca.CA, extra map[string]string, mutate func(*config.Config), domains ...string) []*federated {
	t.Helper()
	routes := map[string]string{}
	for k, v := range extra {
		routes[k] = v
	}
	var out []*federated
	for i, d := range domains {
		addrs, err := etcdx.FreeAddrs("127.0.0."+strconv.Itoa(31+i), 1)
		if err != nil {
			t.Fatal(err)
		}
		routes[d] = addrs[0]
		out = append(out, &federated{domain: d, s2s: addrs[0]})
	}
	for _, f := range out {
		cert, key := ca.Issue(f.domain, false)
		f.server = startNode(t, func(c *config.Config) {
			c.Hosts = []config.HostConfig{{Domain: f.domain}}
			c.Listen.S2S = f.s2s
			c.TLS.Cert, c.TLS.Key = cert, key
			c.S2S.CAFile = ca.File
			c.S2S.StaticRoutes = routes
			c.S2S.ConnectTimeout = config.Duration(2 * time.Second)
			if mutate != nil {
				mutate(c)
			}
		})
		for _, u := range []string{"alice", "bob"} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := f.store.Add(ctx, f.domain, u, "pw", 4096); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
	}
	return out
}

// login logs user in at the node's domain and sends initial presence.
func (f *federated) login(t *testing.T, user, res string) *peer {
	t.Helper()
	var p *peer
	waitFor(t, wait, user+"@"+f.domain+" logs in", func() bool {
		var err error
		p, err = xmpptest.DialClientAt(t, f.n.Addrs.C2S, user+"@"+f.domain, "pw", res, sasl.ScramSha256)
		return err == nil
	})
	t.Cleanup(p.Close)
	p.Send(`<presence/>`)
	return p
}

// nextOf is the next stanza that is not presence.
func nextOf(t *testing.T, p *peer) *elem {
	t.Helper()
	for {
		if e := p.Next(wait); e.XMLName.Local != "presence" {
			return e
		}
	}
}

// RFC 6120 federation between two Switchboard servers, each its own domain on its own
// loopback address, authenticated with certificates of a private CA (SASL EXTERNAL):
// messages both ways, IQs to the other server and to a user there, disco, errors.
func TestS2S(t *testing.T) {
	ca := testca.New(t)
	nodes := startFederated(t, ca, nil, func(c *config.Config) {
		c.Hosts[0].Delegations = map[string]config.DelegationRule{"urn:example:fed": {JID: "comp.localhost"}}
	}, "a.test", "b.test")
	a, b := nodes[0], nodes[1]
	alice := a.login(t, "alice", "phone")
	bob := b.login(t, "bob", "laptop")

	alice.Send(`<message to='bob@b.test/laptop' type='chat' id='m1'><body>hello from a</body></message>`)
	m := nextOf(t, bob)
	if m.Attr("id") != "m1" || m.Attr("from") != "alice@a.test/phone" || m.XMLName.Space != "jabber:client" ||
		!strings.Contains(m.String(), "hello from a") {
		t.Fatalf("bob got %s", m)
	}
	bob.Send(`<message to='alice@a.test/phone' type='chat' id='m2'><body>hello from b</body></message>`)
	if m := nextOf(t, alice); m.Attr("id") != "m2" || m.Attr("from") != "bob@b.test/laptop" {
		t.Fatalf("alice got %s", m)
	}
	// To the bare JID: the available resource gets it.
	alice.Send(`<message to='bob@b.test' type='chat' id='m3'><body>bare</body></message>`)
	if m := nextOf(t, bob); m.Attr("id") != "m3" {
		t.Fatalf("bob got %s", m)
	}

	// IQs: the other server answers ping and disco#info; a user there answers her own.
	alice.Send(`<iq type='get' id='p1' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := nextOf(t, alice); r.Attr("id") != "p1" || r.Attr("type") != "result" || r.Attr("from") != "b.test" {
		t.Fatalf("ping b.test: %s", r)
	}
	alice.Send(`<iq type='get' id='d1' to='b.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if r := nextOf(t, alice); r.Attr("id") != "d1" || r.Attr("type") != "result" || !strings.Contains(r.String(), "urn:xmpp:ping") {
		t.Fatalf("disco#info b.test: %s", r)
	}
	alice.Send(`<iq type='get' id='p2' to='bob@b.test/laptop'><ping xmlns='urn:xmpp:ping'/></iq>`)
	q := nextOf(t, bob)
	if q.Attr("id") != "p2" || q.Attr("from") != "alice@a.test/phone" {
		t.Fatalf("bob got %s", q)
	}
	bob.Send(`<iq type='result' id='p2' to='alice@a.test/phone'/>`)
	if r := nextOf(t, alice); r.Attr("id") != "p2" || r.Attr("type") != "result" || r.Attr("from") != "bob@b.test/laptop" {
		t.Fatalf("bob's answer: %s", r)
	}

	// XEP-0355 across federation: a remote user's IQ to a local bare JID, in a delegated
	// namespace, goes to the managing entity, and its answer back.
	me := b.managingEntity("comp.localhost", nil)
	me.NextAd(wait)
	alice.Send(`<iq type='get' id='dg' to='bob@b.test'><query xmlns='urn:example:fed'/></iq>`)
	f := me.NextForward(wait)
	if f.Inner.Attr("from") != "alice@a.test/phone" || f.Inner.Attr("to") != "bob@b.test" {
		t.Fatalf("forwarded: %s", f.Outer)
	}
	me.Answer(f, `<query xmlns='urn:example:fed'><answered/></query>`)
	if r := nextOf(t, alice); r.Attr("id") != "dg" || r.Attr("type") != "result" || r.Attr("from") != "bob@b.test" ||
		r.Child("query") == nil || r.Child("query").Child("answered") == nil {
		t.Fatalf("delegated answer: %s", r)
	}

	// Errors from the other server: no such user, no such resource (an IQ).
	alice.Send(`<message to='nobody@b.test' type='chat' id='e1'><body>x</body></message>`)
	if r := nextOf(t, alice); r.Attr("id") != "e1" || r.ErrorCondition() != "service-unavailable" || r.Attr("from") != "nobody@b.test" {
		t.Fatalf("to nobody@b.test: %s", r)
	}
	alice.Send(`<iq type='get' id='e2' to='bob@b.test/gone'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := nextOf(t, alice); r.Attr("id") != "e2" || r.ErrorCondition() != "service-unavailable" {
		t.Fatalf("to bob@b.test/gone: %s", r)
	}

	// 200 messages each way arrive complete and in order.
	for i := 0; i < 200; i++ {
		alice.Send(`<message to='bob@b.test/laptop' type='chat' id='a` + strconv.Itoa(i) + `'><body>x</body></message>`)
		bob.Send(`<message to='alice@a.test/phone' type='chat' id='b` + strconv.Itoa(i) + `'><body>y</body></message>`)
	}
	for i := 0; i < 200; i++ {
		if m := nextOf(t, bob); m.Attr("id") != "a"+strconv.Itoa(i) {
			t.Fatalf("bob's message %d: %s", i, m)
		}
		if m := nextOf(t, alice); m.Attr("id") != "b"+strconv.Itoa(i) {
			t.Fatalf("alice's message %d: %s", i, m)
		}
	}
	if !strings.Contains(a.logs.String(), "s2s: stream up") && a.cfg.Log.Level == "debug" {
		t.Log(a.logs.String())
	}
}

// What cannot reach its domain is bounced: remote-server-not-found for a domain with no
// server, remote-server-timeout for one that does not finish the stream in
// s2s.connect_timeout, and no stream for a server whose certificate the CA did not sign.
func TestS2SErrors(t *testing.T) {
	ca := testca.New(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, says nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	refused, _ := etcdx.FreeAddrs("127.0.0.1", 1)
	nodes := startFederated(t, ca, map[string]string{"silent.test": silent.Addr().String(), "closed.test": refused[0]},
		func(c *config.Config) { c.S2S.ConnectTimeout = config.Duration(time.Second) }, "a.test")
	a := nodes[0]
	alice := a.login(t, "alice", "phone")
	alice.Send(`<message to='x@closed.test' type='chat' id='nf'><body>x</body></message>`)
	if r := nextOf(t, alice); r.Attr("id") != "nf" || r.ErrorCondition() != "remote-server-not-found" || r.Attr("from") != "x@closed.test" {
		t.Fatalf("to closed.test: %s", r)
	}
	alice.Send(`<iq type='get' id='to' to='silent.test'><ping xmlns='urn:xmpp:ping'/></iq>`)
	start := time.Now()
	if r := nextOf(t, alice); r.Attr("id") != "to" || r.ErrorCondition() != "remote-server-timeout" {
		t.Fatalf("to silent.test: %s", r)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the timeout took %v (s2s.connect_timeout 1s)", d)
	}

	// A server whose certificate is not from a trusted CA gets no SASL EXTERNAL.
	cert, key := ca.Issue("rogue.test", true)
	if err := dialAs(t, a, "rogue.test", cert, key, ""); err == nil || !strings.Contains(err.Error(), "EXTERNAL") {
		t.Fatalf("a rogue certificate authenticated: %v", err)
	}
	// A trusted server may only send from its own domain.
	cert, key = ca.Issue("c.test", false)
	stanza := `<message from='alice@b.test/x' to='alice@a.test' type='chat' id='spoof'><body>x</body></message>`
	if err := dialAs(t, a, "c.test", cert, key, stanza); err == nil || !strings.Contains(err.Error(), "invalid-from") {
		t.Fatalf("a spoofed from: %v", err)
	}
	alice.ExpectNothing(300 * time.Millisecond)
}

// dialAs opens a stream to node f as domain with the given certificate, sends stanza
// (if any) and returns the negotiation error, or the stream error the node answers with.
func dialAs(t *testing.T, f *federated, domain, certFile, keyFile, stanza string) error {
	return dialAsWith(t, f, domain, certFile, keyFile, stanza, nil)
}

// dialAsWith is dialAs offering dialback with db where certificates do not do.
func dialAsWith(t *testing.T, f *federated, domain, certFile, keyFile, stanza string, db *xmpp.Dialback) error {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.DialTimeout("tcp", f.s2s, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(wait))
	c := xmpp.NewConn(raw, 1<<16, false)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true}
	if err := xmpp.NegotiateS2SOut(ctx, c, domain, f.domain, &xmpp.S2SOutOptions{TLS: cfg, RequireTLS: true, Dialback: db}); err != nil {
		return err
	}
	if err := c.WriteRaw([]byte(stanza)); err != nil {
		return err
	}
	for {
		env, err := c.R.Next()
		if err != nil {
			return err
		}
		if env.Name.Local == "error" {
			return errors.New("stream error: " + string(env.Raw))
		}
	}
}

// skipTo is the next stanza p gets that ok accepts; others are skipped (roster pushes
// answered).
func skipTo(t *testing.T, p *peer, what string, ok func(*elem) bool) *elem {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		e := p.Next(wait)
		if ok(e) {
			return e
		}
		if e.XMLName.Local == "iq" && e.Attr("type") == "set" && e.Child("query") != nil {
			p.Send(`<iq type='result' id='` + e.Attr("id") + `'/>`)
		}
	}
	t.Fatalf("%s: no %s", p.JID, what)
	return nil
}

func presenceFrom(from, typ string) func(*elem) bool {
	return func(e *elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("type") == typ && strings.HasPrefix(e.Attr("from"), from)
	}
}

// RFC 6121 across federation: a subscription handshake between users of two servers
// changes both rosters, presence follows the subscription both ways, a new resource's
// initial presence probes the remote contact, and logging out sends unavailable.
func TestS2SPresence(t *testing.T) {
	ca := testca.New(t)
	nodes := startFederated(t, ca, nil, nil, "a.test", "b.test")
	a, b := nodes[0], nodes[1]
	alice := a.login(t, "alice", "phone")
	bob := b.login(t, "bob", "laptop")
	rosterGet(t, alice, "r1")
	rosterGet(t, bob, "r2")

	alice.Send(`<presence to='bob@b.test' type='subscribe'/>`)
	if e := skipTo(t, bob, "alice's request", presenceFrom("alice@a.test", "subscribe")); e.Attr("from") != "alice@a.test" {
		t.Fatalf("bob got %s", e)
	}
	bob.Send(`<presence to='alice@a.test' type='subscribed'/>`)
	skipTo(t, alice, "bob's approval", presenceFrom("bob@b.test", "subscribed"))
	skipTo(t, alice, "bob's presence after the approval", presenceFrom("bob@b.test/laptop", ""))
	bob.Send(`<presence><show>away</show></presence>`)
	if e := skipTo(t, alice, "bob's new presence", presenceFrom("bob@b.test/laptop", "")); !strings.Contains(e.String(), "away") {
		t.Fatalf("alice got %s", e)
	}
	// Both rosters say so.
	alice.Send(`<iq type='get' id='r3'><query xmlns='jabber:iq:roster'/></iq>`)
	if r := skipTo(t, alice, "her roster", func(e *elem) bool { return e.Attr("id") == "r3" }); !strings.Contains(r.String(), `jid="bob@b.test"`) || !strings.Contains(r.String(), `subscription="to"`) {
		t.Fatalf("alice's roster: %s", r)
	}
	bob.Send(`<iq type='get' id='r4'><query xmlns='jabber:iq:roster'/></iq>`)
	if r := skipTo(t, bob, "his roster", func(e *elem) bool { return e.Attr("id") == "r4" }); !strings.Contains(r.String(), `jid="alice@a.test"`) || !strings.Contains(r.String(), `subscription="from"`) {
		t.Fatalf("bob's roster: %s", r)
	}
	// And the other way: bob subscribes to alice.
	bob.Send(`<presence to='alice@a.test' type='subscribe'/>`)
	skipTo(t, alice, "bob's request", presenceFrom("bob@b.test", "subscribe"))
	alice.Send(`<presence to='bob@b.test' type='subscribed'/>`)
	skipTo(t, bob, "alice's approval", presenceFrom("alice@a.test", "subscribed"))
	skipTo(t, bob, "alice's presence after the approval", presenceFrom("alice@a.test/phone", ""))
	// A new resource of alice's probes bob at its initial presence.
	tablet := a.login(t, "alice", "tablet")
	skipTo(t, tablet, "bob's presence (probe)", presenceFrom("bob@b.test/laptop", ""))
	// Bob logs out: alice's resources get unavailable.
	bob.CloseClean()
	skipTo(t, alice, "bob's unavailable", presenceFrom("bob@b.test/laptop", "unavailable"))
	_ = tablet
}

// An incoming server stream is read at s2s.stanzas_per_second at most (past its burst), and an outgoing
// stream nothing was written to for s2s.idle_timeout closes (the next stanza opens it
// again).
func TestS2SLimits(t *testing.T) {
	ca := testca.New(t)
	nodes := startFederated(t, ca, nil, func(c *config.Config) {
		c.S2S.StanzasPerSecond = 100
		c.Limits.ClientRateBurst = config.Duration(time.Second) // a burst of 100
		c.S2S.IdleTimeout = config.Duration(400 * time.Millisecond)
		c.Log.Level = "info"
	}, "a.test", "b.test")
	a, b := nodes[0], nodes[1]
	alice := a.login(t, "alice", "phone")
	bob := b.login(t, "bob", "laptop")
	alice.Send(`<message to='bob@b.test/laptop' type='chat' id='first'><body>x</body></message>`)
	if m := nextOf(t, bob); m.Attr("id") != "first" {
		t.Fatalf("bob got %s", m)
	}
	start := time.Now()
	for i := 0; i < 200; i++ {
		alice.Send(`<message to='bob@b.test/laptop' type='chat' id='r` + strconv.Itoa(i) + `'><body>x</body></message>`)
	}
	for i := 0; i < 200; i++ {
		if m := nextOf(t, bob); m.Attr("id") != "r"+strconv.Itoa(i) {
			t.Fatalf("bob's message %d: %s", i, m)
		}
	}
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Fatalf("200 stanzas at 100/s with a burst of 100 took %v", d)
	}
	waitFor(t, wait, "the idle outgoing stream closed", func() bool {
		return strings.Contains(a.logs.String(), "s2s: idle stream closed")
	})
	alice.Send(`<message to='bob@b.test/laptop' type='chat' id='again'><body>x</body></message>`)
	if m := nextOf(t, bob); m.Attr("id") != "again" {
		t.Fatalf("after the idle close: %s", m)
	}
}

// XEP-0220 dialback where certificates do not authenticate: a.test's certificate is
// from a CA b.test does not trust, so b.test offers it no SASL EXTERNAL; a.test says who
// it is with a dialback key, which b.test has a.test's server vouch for. A key a.test's
// server did not make is refused.
func TestS2SDialback(t *testing.T) {
	ca := testca.New(t)
	rogueCert, rogueKey := ca.Issue("a.test", true)
	nodes := startFederated(t, ca, nil, func(c *config.Config) {
		if c.Hosts[0].Domain == "a.test" {
			c.TLS.Cert, c.TLS.Key = rogueCert, rogueKey
		}
	}, "a.test", "b.test")
	a, b := nodes[0], nodes[1]
	alice := a.login(t, "alice", "phone")
	bob := b.login(t, "bob", "laptop")
	alice.Send(`<message to='bob@b.test/laptop' type='chat' id='d1'><body>by dialback</body></message>`)
	if m := nextOf(t, bob); m.Attr("id") != "d1" || m.Attr("from") != "alice@a.test/phone" {
		t.Fatalf("bob got %s", m)
	}
	bob.Send(`<message to='alice@a.test/phone' type='chat' id='d2'><body>back</body></message>`)
	if m := nextOf(t, alice); m.Attr("id") != "d2" {
		t.Fatalf("alice got %s", m)
	}

	// Someone else claiming a.test, with a key a.test's server did not give.
	forged := &xmpp.Dialback{Key: func(_, _, _ string) string { return strings.Repeat("ab", 32) }}
	if err := dialAsWith(t, b, "a.test", rogueCert, rogueKey, "", forged); !errors.Is(err, xmpp.ErrS2SAuth) {
		t.Fatalf("a forged dialback key: %v", err)
	}
	bob.ExpectNothing(200 * time.Millisecond)
}

// An incoming server stream silent for half of limits.idle_timeout gets an XEP-0199 ping
// through the outgoing stream to its server, whose answer keeps it open: a quiet link
// stays up as long as the other server answers.
func TestS2SPingsIdleLinks(t *testing.T) {
	ca := testca.New(t)
	nodes := startFederated(t, ca, nil, func(c *config.Config) {
		c.Limits.IdleTimeout = config.Duration(600 * time.Millisecond)
		c.Limits.ParkAfter = config.Duration(100 * time.Millisecond)
		c.Log.Level = "info"
	}, "a.test", "b.test")
	a, b := nodes[0], nodes[1]
	alice := a.login(t, "alice", "phone")
	bob := b.login(t, "bob", "laptop")
	alice.Send(`<message to='bob@b.test/laptop' type='chat' id='p1'><body>x</body></message>`)
	if m := nextOf(t, bob); m.Attr("id") != "p1" {
		t.Fatalf("bob got %s", m)
	}
	incoming := func() int { return strings.Count(b.logs.String(), `s2s: incoming stream" node=test from=a.test`) }
	if incoming() != 1 {
		t.Fatalf("%d incoming streams from a.test", incoming())
	}
	for i := 0; i < 4; i++ { // 2 s, over three idle timeouts; the clients stay active
		time.Sleep(500 * time.Millisecond)
		for _, x := range []struct {
			p      *peer
			domain string
		}{{alice, "a.test"}, {bob, "b.test"}} {
			x.p.Send(`<iq type='get' id='s' to='` + x.domain + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
			if r := nextOf(t, x.p); r.Attr("id") != "s" || r.Attr("type") != "result" {
				t.Fatalf("%s: %s", x.p.JID, r)
			}
		}
	}
	alice.Send(`<message to='bob@b.test/laptop' type='chat' id='p2'><body>x</body></message>`)
	if m := nextOf(t, bob); m.Attr("id") != "p2" {
		t.Fatalf("bob got %s", m)
	}
	if n := incoming(); n != 1 {
		t.Fatalf("the quiet stream was not kept: %d incoming streams from a.test\n%s", n, b.logs.String())
	}
}

// A remote server that does not keep up does not cost silent losses: its senders are held
// back past half of limits.max_send_queue_bytes waiting for its stream, what comes past
// three quarters is bounced resource-constraint, and everything else arrives.
func TestS2SOverloadBounces(t *testing.T) {
	ca := testca.New(t)
	nodes := startFederated(t, ca, nil, func(c *config.Config) {
		if c.Hosts[0].Domain == "a.test" {
			c.Limits.MaxSendQueueBytes = 256 << 10 // what may wait for a.test's stream to b.test
		}
		c.Limits.ClientBytesPerSecond, c.Limits.ClientStanzasPerSecond = 0, 0
		c.S2S.StanzasPerSecond = 300 // b.test reads a.test's stream slowly
	}, "a.test", "b.test")
	a, b := nodes[0], nodes[1]
	alice := a.login(t, "alice", "phone")
	bob := b.login(t, "bob", "laptop")
	alice.Send(`<message to='bob@b.test/laptop' type='chat' id='w'><body>x</body></message>`)
	if m := nextOf(t, bob); m.Attr("id") != "w" {
		t.Fatalf("bob got %s", m)
	}
	const n = 600
	body := strings.Repeat("x", 16<<10)
	go func() {
		for i := 0; i < n; i++ {
			alice.Send(`<message to='bob@b.test/laptop' type='chat' id='o` + strconv.Itoa(i) + `'><body>` + body + `</body></message>`)
		}
	}()
	got, bounced := 0, 0
	deadline := time.Now().Add(20 * time.Second)
	for got+bounced < n && time.Now().Before(deadline) {
		select {
		case e, ok := <-bob.In:
			if !ok {
				t.Fatalf("bob's stream ended: %v", <-bob.Errc)
			}
			if e.XMLName.Local == "message" {
				got++
			}
		case e, ok := <-alice.In:
			if !ok {
				t.Fatalf("alice's stream ended: %v", <-alice.Errc)
			}
			if e.Attr("type") == "error" {
				if e.ErrorCondition() != "resource-constraint" {
					t.Fatalf("alice got %s", e.ErrorCondition())
				}
				bounced++
			}
		case <-time.After(time.Second):
		}
	}
	t.Logf("%d delivered, %d bounced of %d", got, bounced, n)
	if got+bounced != n {
		t.Fatalf("%d delivered and %d bounced of %d: lost %d", got, bounced, n, n-got-bounced)
	}
}
