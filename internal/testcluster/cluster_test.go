package testcluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/internal/bench"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

func TestMain(m *testing.M) { Main(m) }

const (
	secret   = "s3cret"
	nsPubsub = "http://jabber.org/protocol/pubsub"
	nsMAM    = "urn:xmpp:mam:2"
	wait     = 5 * time.Second
)

func delegating(balance string) func(int, *config.Config) {
	return func(_ int, c *config.Config) {
		c.Hosts[0].Delegations = map[string]config.DelegationRule{nsPubsub: {JID: "pubsub.localhost"}}
		c.Components = []config.ComponentConfig{{JID: "pubsub.localhost", Secret: secret, Balance: balance}}
		c.Delegation.Timeout = config.Duration(20 * time.Second)
	}
}

func pubsubIQ(id string) string {
	return `<iq type='get' id='` + id + `' to='localhost'><pubsub xmlns='` + nsPubsub + `'><items node='n'/></pubsub></iq>`
}

// untilForwarded sends IQs from client until the component (on another node) receives
// one: the directory has converged. Replies of service-unavailable are expected before.
func untilForwarded(t *testing.T, c *Cluster, client *xmpptest.Peer, m *xmpptest.Managing) {
	t.Helper()
	for i := 0; ; i++ {
		client.Send(pubsubIQ(fmt.Sprintf("probe%d", i)))
		select {
		case f := <-m.Forwards:
			m.Answer(f, "")
			if r := client.Next(wait); r.Attr("type") != "result" {
				t.Fatalf("probe reply %s", r)
			}
			return
		case <-time.After(200 * time.Millisecond):
			if r := client.Next(wait); r.ErrorCondition() != "service-unavailable" {
				t.Fatalf("probe reply %s", r)
			}
		}
		if i > 100 {
			t.Fatal("the component never became reachable from the client's node")
		}
	}
}

func TestCrossNodeDelegation(t *testing.T) {
	c := Start(t, 3, delegating("round-robin"))
	c.AddUser("juliet", "j")
	var j *xmpptest.Peer
	c.Eventually(wait, "login on node1", func() bool {
		p, err := xmpptest.DialClient(t, c.Nodes[0].C2S, "juliet", "j", "", sasl.ScramSha256)
		if err == nil {
			j = p
		}
		return err == nil
	})
	t.Cleanup(j.Close)
	m := xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, map[string][]string{
		"urn:xmpp:delegation:2::" + nsPubsub: {nsPubsub, nsPubsub + "#publish"},
	})
	m.NextAd(wait)
	untilForwarded(t, c, j, m)
	// Every node tells the others which cross-node messages it understands.
	ms, err := c.Members(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range ms {
		if mb.Proto != cluster.ProtoVersion {
			t.Fatalf("member %s: proto %d, want %d", mb.ID, mb.Proto, cluster.ProtoVersion)
		}
	}

	// Client on node 1, component on node 3: the IQ goes there and the answer comes back.
	j.Send(pubsubIQ("x1"))
	f := m.NextForward(wait)
	if f.Inner.Attr("from") != j.JID || !strings.HasPrefix(f.Outer.Attr("id"), "sbd:node1:") {
		t.Fatalf("forward %s", f.Outer)
	}
	m.Answer(f, `<pubsub xmlns='`+nsPubsub+`'/>`)
	if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("id") != "x1" || r.Child("pubsub") == nil ||
		r.Attr("from") != "localhost" || r.Attr("to") != j.JID {
		t.Fatalf("reply %s", r)
	}
	// Answers are unwrapped on node 3 and checked on node 1: bad ones still fail there.
	for i, inner := range []string{
		`<iq xmlns='jabber:client' type='result' id='wrong' to='%s'/>`,         // not the original id
		`<iq xmlns='jabber:client' type='result' id='x2' to='eve@localhost'/>`, // not the requester
		`<iq type='result' id='x2' to='%s'/>`,                                  // no xmlns='jabber:client'
	} {
		j.Send(pubsubIQ("x2"))
		f := m.NextForward(wait)
		if strings.Contains(inner, "%s") {
			inner = fmt.Sprintf(inner, j.JID)
		}
		m.Reply(f, inner)
		if r := j.Next(wait); r.Attr("id") != "x2" || r.ErrorCondition() != "service-unavailable" {
			t.Fatalf("bad answer %d: %s", i, r)
		}
	}
	// A burst in one write crosses in order both ways (node 1 gathers what one read
	// routes to node 3 into one message, node 3 the answers of one read for node 1).
	const burst = 100
	var b strings.Builder
	for i := range burst {
		b.WriteString(pubsubIQ(fmt.Sprintf("b%d", i)))
	}
	j.SendBatch(b.String())
	fs := make([]xmpptest.Forwarded, burst)
	for i := range burst {
		fs[i] = m.NextForward(wait)
		if id := fs[i].Inner.Attr("id"); id != fmt.Sprintf("b%d", i) {
			t.Fatalf("forward %d of the burst is %s", i, id)
		}
	}
	for _, f := range fs {
		m.Answer(f, "")
	}
	for i := range burst {
		if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("id") != fmt.Sprintf("b%d", i) {
			t.Fatalf("answer %d of the burst: %s", i, r)
		}
	}
	// Disco nesting answers are known on node 1 too.
	c.Eventually(wait, "nested features on node1", func() bool {
		j.Send(`<iq type='get' id='di' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
		r := j.Next(wait)
		return strings.Contains(r.String(), nsPubsub+"#publish")
	})

	// A rule changed in etcd applies on every node: a client on node 2 gets MAM delegated.
	cli, err := etcdx.Connect(context.Background(), Etcd(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := delegation.NewStore(cli, c.Prefix).Set(context.Background(), "localhost", nsMAM, delegation.Rule{JID: "pubsub.localhost"}); err != nil {
		t.Fatal(err)
	}
	if ad := m.NextAd(wait); len(ad) != 2 {
		t.Fatalf("advertisement after the change %v", ad)
	}
	for i := 0; i < 3; i++ {
		p := xmpptest.Client(t, c.Nodes[i].C2S, "juliet", "j")
		c.Eventually(wait, fmt.Sprintf("MAM delegated on node%d", i+1), func() bool {
			return mamForwarded(p, m)
		})
	}
}

// mamForwarded sends one MAM query from p and reports whether it reached m (which
// answers it) rather than failing on the way (the rule or the directory not there yet).
func mamForwarded(p *xmpptest.Peer, m *xmpptest.Managing) bool {
	p.Send(`<iq type='get' id='mam' to='localhost'><query xmlns='` + nsMAM + `'/></iq>`)
	select {
	case f := <-m.Forwards:
		m.Answer(f, "")
		return p.Next(wait).Attr("type") == "result"
	case <-time.After(300 * time.Millisecond):
		p.Next(wait)
		return false
	}
}

func TestComponentOnTwoNodesSharesLoad(t *testing.T) {
	c := Start(t, 3, delegating("round-robin"))
	c.AddUser("juliet", "j")
	var j *xmpptest.Peer
	c.Eventually(wait, "login", func() bool {
		p, err := xmpptest.DialClient(t, c.Nodes[0].C2S, "juliet", "j", "", sasl.ScramSha256)
		j = p
		return err == nil
	})
	t.Cleanup(j.Close)
	a, b := onNodes2and3(t, c)
	// Both connections known on node 1: wait until each has received a probe.
	var mu sync.Mutex
	count := map[string]int{}
	// answer answers m's IQs; after dropAfter of them (0: never) it leaves with the IQs
	// it got since: cleanly (</stream:stream>) or by dropping the connection.
	answer := func(m *xmpptest.Managing, name string, dropAfter int, clean bool, stop chan struct{}) {
		for {
			select {
			case f := <-m.Forwards:
				mu.Lock()
				count[name]++
				n := count[name]
				mu.Unlock()
				if dropAfter > 0 && n == dropAfter {
					if clean {
						m.CloseClean()
					} else {
						_ = m.S.Conn().Close()
					}
					return
				}
				m.Answer(f, "")
			case <-stop:
				return
			}
		}
	}
	// warm waits until node 1 uses both connections, then starts the count afresh.
	warm := func() {
		stop := make(chan struct{})
		go answer(a, "node2", 0, false, stop)
		go answer(b, "node3", 0, false, stop)
		untilBothUsed(c, j, &mu, count)
		close(stop)
		mu.Lock()
		count = map[string]int{}
		mu.Unlock()
	}
	warm()

	// 200 IQs, round-robin: both connections take a fair share.
	stopAnswering := make(chan struct{})
	go answer(a, "node2", 0, false, stopAnswering)
	go answer(b, "node3", 0, false, stopAnswering)
	const n = 200
	var batch strings.Builder
	for i := 0; i < n; i++ {
		batch.WriteString(pubsubIQ(fmt.Sprintf("l%d", i)))
	}
	j.SendBatch(batch.String())
	for i := 0; i < n; i++ {
		if r := j.Next(10 * time.Second); r.Attr("type") != "result" {
			t.Fatalf("reply %d: %s", i, r)
		}
	}
	mu.Lock()
	t.Logf("IQs per connection: %v", count)
	if count["node2"] < n/4 || count["node3"] < n/4 {
		t.Fatalf("load not shared: %v", count)
	}
	count = map[string]int{}
	mu.Unlock()
	close(stopAnswering)

	// mid sends n IQs while one connection leaves after 20; every IQ gets exactly one
	// answer: it returns how many results and how many service-unavailable.
	mid := func(prefix string) (results, failures int) {
		var batch strings.Builder
		for i := 0; i < n; i++ {
			batch.WriteString(pubsubIQ(fmt.Sprintf("%s%d", prefix, i)))
		}
		j.SendBatch(batch.String())
		seen := map[string]bool{}
		for i := 0; i < n; i++ {
			r := j.Next(15 * time.Second)
			if seen[r.Attr("id")] {
				t.Fatalf("two answers for %s", r.Attr("id"))
			}
			seen[r.Attr("id")] = true
			switch {
			case r.Attr("type") == "result":
				results++
			case r.ErrorCondition() == "service-unavailable":
				failures++
			default:
				t.Fatalf("reply %s", r)
			}
		}
		j.ExpectNothing(300 * time.Millisecond)
		return results, failures
	}

	// One connection closes its stream cleanly mid-load: what waited on it goes to the
	// other, and every IQ is answered.
	stopAnswering = make(chan struct{})
	go answer(a, "node2", 0, false, stopAnswering)
	go answer(b, "node3", 20, true, stopAnswering)
	results, failures := mid("c")
	close(stopAnswering)
	t.Logf("after one connection closed cleanly mid-load: %d results, %d service-unavailable", results, failures)
	if failures != 0 {
		t.Fatalf("IQs failed at a clean close: %d/%d", results, failures)
	}

	// One connection drops mid-load: what waited on it fails, the rest is answered.
	b = xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, nil)
	b.NextAd(wait)
	mu.Lock()
	count = map[string]int{}
	mu.Unlock()
	warm()
	stopAnswering = make(chan struct{})
	go answer(a, "node2", 20, false, stopAnswering)
	go answer(b, "node3", 0, false, stopAnswering)
	results, failures = mid("d")
	close(stopAnswering)
	t.Logf("after dropping one connection mid-load: %d results, %d service-unavailable", results, failures)
	if results == 0 || failures == 0 {
		t.Fatalf("expected both answered and failed IQs: %d/%d", results, failures)
	}
}

func TestNodeKilledAndRestarted(t *testing.T) {
	c := Start(t, 3, delegating("round-robin"))
	c.AddUser("juliet", "j")
	var j *xmpptest.Peer
	c.Eventually(wait, "login", func() bool {
		p, err := xmpptest.DialClient(t, c.Nodes[0].C2S, "juliet", "j", "", sasl.ScramSha256)
		j = p
		return err == nil
	})
	t.Cleanup(j.Close)
	m := xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, nil)
	m.NextAd(wait)
	untilForwarded(t, c, j, m)

	// Users on every node, so that some are owned by node 3.
	type user struct {
		name string
		node int
		p    *xmpptest.Peer
	}
	var users []user
	for i := 0; i < 9; i++ {
		name := fmt.Sprintf("u%d", i)
		c.AddUser(name, "pw")
		u := user{name: name, node: i % 3}
		u.p = login(t, c, u.node, name, "pw", "")
		u.p.Send(`<presence/>`)
		u.p.Sync()
		users = append(users, u)
	}

	// IQs pending at node 3's component when node 3 dies.
	for i := 0; i < 5; i++ {
		j.Send(pubsubIQ(fmt.Sprintf("k%d", i)))
		m.NextForward(wait)
	}
	start := time.Now()
	c.Kill(2)
	for i := 0; i < 5; i++ {
		if r := j.Next(15 * time.Second); r.ErrorCondition() != "service-unavailable" {
			t.Fatalf("after kill: %s", r)
		}
	}
	detect := time.Since(start)
	t.Logf("pending IQs failed %v after kill -9 (probe_interval 200ms, suspicion_mult 2)", detect)
	if detect > 10*time.Second {
		t.Fatalf("took %v", detect)
	}
	// The other nodes keep serving: a client on node 2 logs in and pings.
	p := xmpptest.Client(t, c.Nodes[1].C2S, "juliet", "j")
	p.Sync()
	c.WaitMembers(0, 2)
	// Users whose owner was node 3 are re-registered with the new owners: every
	// message between the survivors arrives; the user that was on node 3 is gone.
	for _, u := range users {
		if u.node == 2 {
			continue
		}
		c.Eventually(wait, "message to "+u.name+" after the kill", func() bool {
			j.Send(`<message to='` + u.name + `@localhost' type='chat' id='after'><body>x</body></message>`)
			select {
			case m := <-u.p.In:
				return m.Attr("id") == "after"
			case <-time.After(300 * time.Millisecond):
				// While the directory converges the owner may not know the session: the
				// message is bounced, or kept offline (XEP-0160) with no answer.
				select {
				case <-j.In:
				case <-time.After(300 * time.Millisecond):
				}
				return false
			}
		})
	}
	// (A headline: a chat message would be kept for u2's next session, XEP-0160.)
	j.Send(`<message to='u2@localhost' type='headline' id='gone'><body>x</body></message>`)
	if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" {
		t.Fatalf("to the user of the dead node: %s", r)
	}

	// Restarted, node 3 rejoins and serves its component again.
	c.StartNode(2)
	c.WaitReady(2)
	c.WaitMembers(0, 3)
	m2 := xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, nil)
	m2.NextAd(wait)
	untilForwarded(t, c, j, m2)
}

func login(t *testing.T, c *Cluster, i int, user, pw, res string) *xmpptest.Peer {
	t.Helper()
	var p *xmpptest.Peer
	c.Eventually(wait, user+" logs in on node"+fmt.Sprint(i+1), func() bool {
		q, err := xmpptest.DialClient(t, c.Nodes[i].C2S, user, pw, res, sasl.ScramSha256)
		p = q
		return err == nil
	})
	t.Cleanup(p.Close)
	return p
}

func TestCrossNodeUsers(t *testing.T) {
	c := Start(t, 3, nil)
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		c.AddUser(u, "pw")
	}
	a := login(t, c, 0, "alice", "pw", "")
	b := login(t, c, 1, "bob", "pw", "")
	b.Send(`<presence/>`)
	b.Sync()

	// Full JID and bare JID across nodes, both ways.
	a.Send(`<message to='` + b.JID + `' id='m1' type='chat'><body>hi</body></message>`)
	if m := b.Next(wait); m.Attr("id") != "m1" || m.Attr("from") != a.JID {
		t.Fatalf("bob got %s", m)
	}
	a.Send(`<message to='bob@localhost' id='m2' type='chat'><body>bare</body></message>`)
	if m := b.Next(wait); m.Attr("id") != "m2" || m.Attr("to") != "bob@localhost" {
		t.Fatalf("bob got %s", m)
	}
	b.Send(`<iq to='` + a.JID + `' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>`)
	if q := a.Next(wait); q.Attr("id") != "v" || q.Attr("from") != b.JID {
		t.Fatalf("alice got %s", q)
	}
	a.Send(`<iq to='` + b.JID + `' type='result' id='v'/>`)
	if r := b.Next(wait); r.Attr("id") != "v" || r.Attr("type") != "result" {
		t.Fatalf("bob got %s", r)
	}
	// Offline and unknown users, from another node: service-unavailable.
	for _, to := range []string{"carol@localhost", "nobody@localhost", "bob@localhost/gone"} {
		a.Send(`<iq to='` + to + `' type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>`)
		if to == "bob@localhost/gone" {
			if r := a.Next(wait); r.ErrorCondition() != "service-unavailable" {
				t.Fatalf("iq to %s: %s", to, r)
			}
			continue
		}
		// A headline: a chat message for carol would be kept (XEP-0160).
		a.Send(`<message to='` + to + `' type='headline' id='x'><body>?</body></message>`)
		r1, r2 := a.Next(wait), a.Next(wait)
		if r1.ErrorCondition() != "service-unavailable" || r2.ErrorCondition() != "service-unavailable" {
			t.Fatalf("to %s: %s / %s", to, r1, r2)
		}
	}

	// Two resources of one user on different nodes see each other's presence; a message
	// to the bare JID goes to the higher priority one.
	d1 := login(t, c, 0, "dave", "pw", "one")
	d1.Send(`<presence><priority>1</priority></presence>`)
	d1.Sync()
	d2 := login(t, c, 2, "dave", "pw", "two")
	d2.Send(`<presence><priority>5</priority></presence>`)
	if p := d1.Next(wait); p.XMLName.Local != "presence" || p.Attr("from") != "dave@localhost/two" {
		t.Fatalf("dave/one got %s", p)
	}
	if p := d2.Next(wait); p.XMLName.Local != "presence" || p.Attr("from") != "dave@localhost/one" {
		t.Fatalf("dave/two got %s", p)
	}
	b.Send(`<message to='dave@localhost' id='hp' type='chat'><body>x</body></message>`)
	if m := d2.Next(wait); m.Attr("id") != "hp" {
		t.Fatalf("dave/two got %s", m)
	}
	d1.ExpectNothing(200 * time.Millisecond)

	// Directed presence across nodes, and unavailable when the sender disconnects.
	e := login(t, c, 2, "erin", "pw", "")
	e.Send(`<presence to='dave@localhost/one'/>`)
	if p := d1.Next(wait); p.Attr("from") != e.JID || p.Attr("type") != "" {
		t.Fatalf("directed: %s", p)
	}
	e.Close()
	if p := d1.Next(wait); p.Attr("from") != e.JID || p.Attr("type") != "unavailable" {
		t.Fatalf("after disconnect: %s", p)
	}

	// Resource conflict across nodes: the old session (node 3) gets a conflict error.
	f1 := login(t, c, 2, "frank", "pw", "desk")
	login(t, c, 0, "frank", "pw", "desk")
	select {
	case x, ok := <-f1.In:
		if ok {
			t.Fatalf("old session got %s", x)
		}
		if err := <-f1.Errc; err == nil || !strings.Contains(err.Error(), "conflict") {
			t.Fatalf("old session ended with %v", err)
		}
	case <-time.After(wait):
		t.Fatal("old session not replaced")
	}
	// Logins asked other nodes (requests and their answers) and stanzas crossed: all of
	// it was counted out of the transport's queues again.
	for i := range c.Nodes {
		c.Eventually(wait, "nothing waiting in node"+fmt.Sprint(i+1)+"'s transport", func() bool {
			return c.Metric(i, "switchboard_node_link_queued_bytes") == "0"
		})
	}
}

// TestEtcdOutage: with etcd down the nodes keep their rules and accounts and keep routing;
// once it is back, a rule changed there applies on every node.
func TestEtcdOutage(t *testing.T) {
	c := Start(t, 3, delegating("round-robin"))
	c.AddUser("juliet", "j")
	c.AddUser("romeo", "r")
	j := login(t, c, 0, "juliet", "j", "")
	r := login(t, c, 2, "romeo", "r", "")
	m := xmpptest.NewManaging(t, c.Nodes[1].Component, "pubsub.localhost", secret, nil)
	m.NextAd(wait)
	untilForwarded(t, c, j, m)

	StopEtcd()
	t.Cleanup(func() { _ = StartEtcd() })
	// Delegation, messages and logins go on.
	for i := 0; i < 3; i++ {
		j.Send(pubsubIQ(fmt.Sprintf("o%d", i)))
		m.Answer(m.NextForward(wait), "")
		if res := j.Next(wait); res.Attr("type") != "result" {
			t.Fatalf("during the outage: %s", res)
		}
	}
	j.Send(`<message to='` + r.JID + `' id='om'><body>etcd is down</body></message>`)
	if msg := r.Next(wait); msg.Attr("id") != "om" {
		t.Fatalf("romeo got %s", msg)
	}
	login(t, c, 1, "romeo", "r", "second")
	c.Eventually(10*time.Second, "the outage logged", func() bool {
		return strings.Contains(c.Logs(0), "etcd unreachable")
	})

	if err := StartEtcd(); err != nil {
		t.Fatal(err)
	}
	cli, err := etcdx.Connect(context.Background(), Etcd(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := delegation.NewStore(cli, c.Prefix).Set(context.Background(), "localhost", nsMAM, delegation.Rule{JID: "pubsub.localhost"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		p := login(t, c, i, "romeo", "r", fmt.Sprintf("after%d", i))
		c.Eventually(20*time.Second, fmt.Sprintf("node%d caught up", i+1), func() bool {
			return mamForwarded(p, m)
		})
	}
}

// A local account as managing entity, across nodes: the bot's resource is on node 3, the
// requester on node 1; the IQ goes there and the answer comes back.
func TestCrossNodeDelegationToAccount(t *testing.T) {
	c := Start(t, 3, func(_ int, cfg *config.Config) {
		cfg.Hosts[0].Delegations = map[string]config.DelegationRule{nsPubsub: {JID: "bot@localhost"}}
	})
	c.AddUser("juliet", "j")
	c.AddUser("bot", "b")
	j := login(t, c, 0, "juliet", "j", "")
	bot := login(t, c, 2, "bot", "b", "worker")
	bot.Send(`<presence/>`)
	if ad := bot.Next(wait); ad.Child("delegation") == nil {
		t.Fatalf("advertisement %s", ad)
	}
	var outer *xmpptest.Elem
	c.Eventually(10*time.Second, "the bot reachable from node 1", func() bool {
		j.Send(pubsubIQ("acc"))
		select {
		case e := <-bot.In:
			outer = e
			return true
		case <-time.After(300 * time.Millisecond):
			j.Next(wait) // service-unavailable while the directory converges
			return false
		}
	})
	if outer.Attr("to") != bot.JID || outer.Child("delegation") == nil {
		t.Fatalf("bot got %s", outer)
	}
	bot.Send(`<iq type='result' to='localhost' id='` + outer.Attr("id") + `'><delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='acc' to='` + j.JID + `'/></forwarded></delegation></iq>`)
	if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("id") != "acc" {
		t.Fatalf("juliet got %s", r)
	}
	// The bot goes offline with an IQ pending: juliet, on another node, gets an error.
	j.Send(pubsubIQ("acc2"))
	bot.Next(wait)
	bot.Close()
	if r := j.Next(wait); r.Attr("id") != "acc2" || r.ErrorCondition() != "service-unavailable" {
		t.Fatalf("after the bot left: %s", r)
	}
}

// XEP-0356 across the cluster: the component is on node 3, juliet on node 1, romeo on
// node 2. The component sees juliet's presence (replayed from whichever node owns her),
// changes her roster (pushed to her session on node 1), and sends an IQ on her behalf to
// romeo, whose answer comes back from node 2 to node 3.
func TestCrossNodePrivileges(t *testing.T) {
	c := Start(t, 3, func(_ int, cfg *config.Config) {
		cfg.Components = []config.ComponentConfig{{JID: "pubsub.localhost", Secret: secret, Privileges: config.Privileges{
			Roster: "both", Presence: "managed_entity", IQ: map[string]string{"http://jabber.org/protocol/disco#info": "get"},
		}}}
	})
	c.AddUser("juliet", "j")
	c.AddUser("romeo", "r")
	j := login(t, c, 0, "juliet", "j", "balcony")
	r := login(t, c, 1, "romeo", "r", "orchard")
	j.Send(`<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>`) // roster pushes come to her from now on
	if g := j.Next(wait); g.Attr("type") != "result" {
		t.Fatalf("roster get %s", g)
	}
	j.Send(`<presence/>`)
	j.Sync()
	time.Sleep(300 * time.Millisecond) // the owner node has her presence

	m := xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, nil)
	next := func(what string, ok func(*xmpptest.Elem) bool) *xmpptest.Elem {
		t.Helper()
		return m.NextOther(t, 10*time.Second, what, ok)
	}
	if p := next("replayed presence", func(e *xmpptest.Elem) bool { return e.XMLName.Local == "presence" }); p.Attr("from") != "juliet@localhost/balcony" {
		t.Fatalf("replayed presence %s", p)
	}

	// A roster set from node 3 is pushed to juliet on node 1.
	m.SendAsync(`<iq type='set' id='rs' from='pubsub.localhost' to='juliet@localhost'><query xmlns='jabber:iq:roster'><item jid='romeo@localhost' name='R'/></query></iq>`)
	if res := next("roster set result", func(e *xmpptest.Elem) bool { return e.Attr("id") == "rs" }); res.Attr("type") != "result" {
		t.Fatalf("roster set %s", res)
	}
	if p := j.Next(wait); p.Attr("type") != "set" || !strings.Contains(p.String(), "romeo@localhost") {
		t.Fatalf("juliet's push %s", p)
	}
	if p := next("roster push", func(e *xmpptest.Elem) bool { return e.Attr("type") == "set" }); !strings.Contains(p.String(), "romeo@localhost") {
		t.Fatalf("component's push %s", p)
	}

	// An IQ on juliet's behalf to romeo on node 2; his answer returns to node 3.
	m.SendAsync(`<iq type='get' id='piq' from='pubsub.localhost' to='juliet@localhost'><privileged_iq xmlns='urn:xmpp:privilege:2'>` +
		`<iq xmlns='jabber:client' type='get' id='in' to='romeo@localhost/orchard'><query xmlns='http://jabber.org/protocol/disco#info'/></iq></privileged_iq></iq>`)
	q := r.Next(wait)
	if q.Attr("from") != "juliet@localhost" || !strings.HasPrefix(q.Attr("id"), "sbp:node3:") {
		t.Fatalf("romeo got %s", q)
	}
	r.Send(`<iq type='result' id='` + q.Attr("id") + `' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:example:r'/></query></iq>`)
	w := next("privileged answer", func(e *xmpptest.Elem) bool { return e.Attr("id") == "piq" })
	if w.Attr("type") != "result" || !strings.Contains(w.String(), "urn:example:r") || !strings.Contains(w.String(), `id="in"`) {
		t.Fatalf("wrapped answer %s", w)
	}

	// juliet leaves node 1: the component on node 3 hears of it.
	j.Close()
	if p := next("unavailable", func(e *xmpptest.Elem) bool { return e.XMLName.Local == "presence" }); p.Attr("type") != "unavailable" || p.Attr("from") != "juliet@localhost/balcony" {
		t.Fatalf("presence %s", p)
	}
}

// TestCrossNodeBurstOfBigStanzas: a burst of large messages to a user on another node
// arrives whole and in order. The nodes batch what they send each other; a batch over
// gRPC's default 4 MiB receive limit used to end the connection between the nodes and
// lose every message in it.
func TestCrossNodeBurstOfBigStanzas(t *testing.T) {
	c := Start(t, 2, func(_ int, c *config.Config) { c.Limits.MaxSendQueueBytes = 256 << 20 })
	c.AddUser("alice", "pw")
	c.AddUser("bob", "pw")
	b := login(t, c, 1, "bob", "pw", "")
	b.Send(`<presence/>`)
	b.Sync()
	const senders, each = 4, 100
	body := strings.Repeat("x", 50_000)
	var peers []*xmpptest.Peer
	for s := range senders {
		peers = append(peers, login(t, c, 0, "alice", "pw", fmt.Sprint("r", s)))
	}
	sent := make(chan error, senders)
	for s, p := range peers {
		var batch strings.Builder
		for i := range each {
			fmt.Fprintf(&batch, `<message to='%s' id='%d-%d' type='chat'><body>%s</body></message>`, b.JID, s, i, body)
		}
		// Written meanwhile from goroutines (t.Fatal belongs to the test's own).
		go func() { _, err := io.WriteString(p.S.Conn(), batch.String()); sent <- err }()
	}
	next := make([]int, senders)
	for range senders * each {
		m := b.Next(4 * wait)
		var s, i int
		if _, err := fmt.Sscanf(m.Attr("id"), "%d-%d", &s, &i); err != nil || m.Child("body") == nil {
			t.Fatalf("bob got %s", m)
		}
		if i != next[s] {
			t.Fatalf("from sender %d: message %d, want %d", s, i, next[s])
		}
		next[s]++
	}
	for range senders {
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	}
	// Everything sent between the nodes was counted out of the transport's queues again
	// (a drift would end with a node dropping everything for a healthy peer).
	for i := range c.Nodes {
		c.Eventually(wait, "nothing waiting in node"+fmt.Sprint(i+1)+"'s transport", func() bool {
			return c.Metric(i, "switchboard_node_link_queued_bytes") == "0"
		})
	}
}

// The cluster plane is authenticated (issue 17, finding 1): a node without the gossip key,
// or with a key and certificates of another cluster, never becomes a member, and the
// remote port takes no connection without a certificate the cluster's CA signed.
func TestOutsidersCannotJoin(t *testing.T) {
	c := Start(t, 2, nil)
	noSecrets := c.StartOutsider(nil)
	other := filepath.Join(t.TempDir(), "other")
	if err := cluster.WriteSecrets(other, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	otherSecrets := c.StartOutsider(func(cfg *config.Config) {
		cfg.Cluster.SecretKeyFile = filepath.Join(other, "gossip.key")
		cfg.Cluster.TLS = config.ClusterTLS{Cert: filepath.Join(other, "x.pem"), Key: filepath.Join(other, "x.key"),
			CA: filepath.Join(other, "ca.pem")}
	})
	// Long enough for several join attempts and probe rounds (200 ms).
	time.Sleep(3 * time.Second)
	for i := range 2 {
		ms, err := c.Members(i)
		if err != nil || len(ms) != 2 {
			t.Fatalf("%s sees %v (%v), want its 2 members only", c.Nodes[i].ID, ms, err)
		}
	}
	for _, o := range []int{noSecrets, otherSecrets} {
		if ms, err := c.Members(o); err != nil || len(ms) != 1 {
			t.Errorf("%s sees %v (%v), want itself only", c.Nodes[o].ID, ms, err)
		}
	}
	// The remote port: no TLS, TLS without a client certificate, and a certificate of
	// another CA all fail before any actor message could pass.
	remote := c.Nodes[0].Remote
	otherCert, err := tls.LoadX509KeyPair(filepath.Join(other, "x.pem"), filepath.Join(other, "x.key"))
	if err != nil {
		t.Fatal(err)
	}
	for name, conf := range map[string]*tls.Config{
		"no certificate":                {InsecureSkipVerify: true, NextProtos: []string{"h2"}},
		"another cluster's certificate": {InsecureSkipVerify: true, NextProtos: []string{"h2"}, Certificates: []tls.Certificate{otherCert}},
	} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", remote, conf)
		if err == nil {
			// TLS 1.3: the server's verdict on the client certificate comes with the first read.
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil {
			t.Errorf("%s: the remote port took the connection", name)
		}
	}
	plain, err := net.DialTimeout("tcp", remote, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = plain.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = plain.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	// A plain gRPC server answers the preface with a SETTINGS frame (type 4); a TLS one
	// closes or sends an alert.
	hdr := make([]byte, 9)
	if n, _ := io.ReadFull(plain, hdr); n == 9 && hdr[3] == 0x04 {
		t.Error("the remote port spoke plain HTTP/2")
	}
	plain.Close()
}

// A client that stops reading is disconnected once limits.max_send_queue_bytes of
// stanzas wait for it, when they come from another node too (issue 17, backpressure):
// stanzas from other nodes used to go into its session's mailbox uncounted, growing it
// until the write timeout. The sender and other users are not disturbed.
func TestCrossNodeSlowReaderDisconnected(t *testing.T) {
	c := Start(t, 2, func(_ int, c *config.Config) {
		c.Limits.MaxSendQueueBytes = 1 << 20
		c.Limits.WriteTimeout = config.Duration(10 * time.Minute) // only the byte bound can act
		c.Limits.ClientBytesPerSecond = 0                         // the sender fills kernel buffers fast
	})
	c.AddUser("fast", "pw")
	c.AddUser("slow", "pw")
	c.AddUser("other", "pw")
	fast := login(t, c, 0, "fast", "pw", "")
	other := login(t, c, 0, "other", "pw", "")
	login(t, c, 1, "other", "pw", "b").Close() // both nodes know the accounts
	var slow *bench.Client
	c.Eventually(wait, "slow logs in on node2", func() bool {
		s, err := bench.Login(context.Background(), &bench.ClientConfig{Addr: c.Nodes[1].C2S, Domain: "localhost",
			Insecure: true, Timeout: wait}, "slow", "pw", "r", time.Now())
		slow = s
		return err == nil
	})
	defer slow.Close() // and never read again
	if got := c.Metric(1, `switchboard_connections{kind="c2s"}`); got != "1" {
		t.Fatalf("node2 has %s client connections, want slow's", got)
	}
	body := strings.Repeat("x", 8000)
	deadline := time.Now().Add(60 * time.Second)
	for c.Metric(1, `switchboard_connections{kind="c2s"}`) != "0" {
		if time.Now().After(deadline) {
			t.Fatal("the slow reader on the other node was never disconnected")
		}
		var burst strings.Builder
		for range 16 {
			burst.WriteString(`<message to='slow@localhost/r' type='chat'><body>` + body + `</body></message>`)
		}
		fast.SendBatch(burst.String())
		fast.Send(`<message to='` + other.JID + `' id='still'><body>ok</body></message>`)
		for {
			m := other.Next(wait)
			if m.Attr("id") == "still" {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// What waits in the transport for a node that hangs is bounded (cluster.max_queued_bytes):
// while node 2 is stopped, node 1 drops what its users send there past the bound, instead
// of queueing it in protoactor's endpoint writer without limit, and stays responsive;
// once node 2 continues, stanzas reach it again (issue 17: no unbounded queue between
// sockets).
func TestHungNodeQueueBounded(t *testing.T) {
	c := Start(t, 2, func(_ int, c *config.Config) {
		c.Cluster.MaxQueuedBytes = 1 << 20
		c.Cluster.ProbeInterval = config.Duration(2 * time.Second) // node 2 stays a member while paused
		c.Cluster.SuspicionMult = 10
		c.Limits.ClientBytesPerSecond, c.Limits.ClientStanzasPerSecond = 0, 0
	})
	c.AddUser("alice", "pw")
	c.AddUser("bob", "pw")
	a := login(t, c, 0, "alice", "pw", "")
	b := login(t, c, 1, "bob", "pw", "")
	b.Send(`<presence/>`)
	b.Sync()
	a.Send(`<message to='` + b.JID + `' id='before' type='chat'><body>hi</body></message>`)
	if m := b.Next(wait); m.Attr("id") != "before" {
		t.Fatalf("bob got %s", m)
	}
	c.Pause(1)
	resumed := false
	defer func() {
		if !resumed {
			c.Resume(1)
		}
	}()
	body := strings.Repeat("x", 4000)
	var burst strings.Builder
	for i := range 64 {
		fmt.Fprintf(&burst, `<message to='%s' id='f%d' type='chat'><body>%s</body></message>`, b.JID, i, body)
	}
	if got := c.Metric(0, "switchboard_node_link_dropped_total"); got != "0" {
		t.Fatalf("node 1 dropped %q before the test", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.Metric(0, "switchboard_node_link_dropped_total") == "0" {
		if time.Now().After(deadline) {
			t.Fatal("node 1 never dropped what it could not send to the paused node")
		}
		a.SendBatch(burst.String())
		a.Sync() // node 1 still answers alice at once
	}
	t.Logf("node 1 dropped %s messages for the paused node", c.Metric(0, "switchboard_node_link_dropped_total"))
	c.Resume(1)
	resumed = true
	// Node 2 drains what node 1 had queued, then takes new stanzas again.
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("nothing reached bob after node 2 continued")
		}
		id := fmt.Sprint("after", i)
		a.Send(`<message to='` + b.JID + `' id='` + id + `' type='chat'><body>back</body></message>`)
		got := false
		for !got {
			select {
			case m := <-b.In:
				got = m.Attr("id") == id
				continue
			case <-time.After(200 * time.Millisecond):
			}
			break
		}
		if got {
			return
		}
	}
}

// A node killed while a component has a connection on it and on another node: the
// client's node notices at the transport (its connection to the dead node is reset) and
// stops sending there at once, long before the membership declares the node dead (issue
// 18: errors stop within 1 s of a kill, not after memberlist's detection).
func TestKilledNodeStopsGettingIQsAtOnce(t *testing.T) {
	c := Start(t, 3, func(i int, cfg *config.Config) {
		delegating("round-robin")(i, cfg)
		cfg.Cluster.ProbeInterval = config.Duration(time.Second) // memberlist: ~5 s to call it dead
		cfg.Cluster.SuspicionMult = 4
	})
	c.AddUser("juliet", "j")
	j := login(t, c, 0, "juliet", "j", "")
	a, b := onNodes2and3(t, c)
	var mu sync.Mutex
	count := map[string]int{}
	var holding atomic.Bool // node 3's component stops answering (IQs wait there)
	answer := func(m *xmpptest.Managing, name string) {
		for f := range m.Forwards {
			mu.Lock()
			count[name]++
			mu.Unlock()
			if name == "node3" && holding.Load() {
				continue
			}
			m.Answer(f, "")
		}
	}
	go answer(a, "node2")
	go answer(b, "node3")
	untilBothUsed(c, j, &mu, count)
	onNode3 := availableOn(t, c, 2, "k", "r") // some of them owned by node 3
	// Four IQs round-robin: two are answered, two wait at node 3's component.
	holding.Store(true)
	for i := range 4 {
		j.Send(pubsubIQ(fmt.Sprint("w", i)))
	}
	for range 2 {
		if r := j.Next(wait); r.Attr("type") != "result" {
			t.Fatalf("before the kill: %s", r)
		}
	}

	killed := time.Now()
	c.Kill(2)
	// The two that waited get service-unavailable at once, each once.
	for range 2 {
		if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" {
			t.Fatalf("an IQ waiting at the killed node: %s", r)
		}
	}
	if d := time.Since(killed); d > time.Second {
		t.Fatalf("the IQs waiting at the killed node failed %v after the kill", d)
	} else {
		t.Logf("the IQs waiting at the killed node failed %v after the kill", d)
	}
	// A message to a user whose session (or owner) was on the killed node is bounced at
	// once, long before the membership calls the node dead, instead of being lost (a
	// headline: a chat message would be kept for the user's next session, XEP-0160, by
	// the owners still alive).
	for _, u := range onNode3 {
		j.Send(`<message to='` + u + `@localhost/r' type='headline' id='m-` + u + `'><body>x</body></message>`)
		if r := j.Next(time.Second); r.Attr("id") != "m-"+u || r.ErrorCondition() != "service-unavailable" {
			t.Fatalf("a message to %s on the killed node: %s", u, r)
		}
	}
	t.Logf("messages to the killed node's users bounced by %v after the kill", time.Since(killed))
	var failed int
	var lastError time.Duration
	for i := 0; time.Since(killed) < 3*time.Second; i++ {
		j.Send(pubsubIQ(fmt.Sprint("k", i)))
		r := j.Next(10 * time.Second)
		if r.Attr("type") != "result" {
			failed++
			lastError = time.Since(killed)
		}
	}
	j.ExpectNothing(300 * time.Millisecond) // no IQ was answered twice
	members, _ := c.Members(0)
	t.Logf("after kill -9: %d IQs failed, the last %v after the kill; node 1 still lists %d members", failed, lastError, len(members))
	if lastError > time.Second {
		t.Fatalf("IQs kept failing for %v after the kill", lastError)
	}
}

// onNodes2and3 connects pubsub.localhost's managing entity on nodes 2 and 3 (a and b) and
// waits for their advertisements.
func onNodes2and3(t *testing.T, c *Cluster) (a, b *xmpptest.Managing) {
	t.Helper()
	a = xmpptest.NewManaging(t, c.Nodes[1].Component, "pubsub.localhost", secret, nil)
	b = xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, nil)
	a.NextAd(wait)
	b.NextAd(wait)
	return a, b
}

// untilBothUsed sends IQs from j until the answerers have counted one on node 2 and one
// on node 3: node 1 knows both connections.
func untilBothUsed(c *Cluster, j *xmpptest.Peer, mu *sync.Mutex, count map[string]int) {
	c.Eventually(10*time.Second, "both connections in use", func() bool {
		j.Send(pubsubIQ("warm"))
		j.Next(wait)
		mu.Lock()
		defer mu.Unlock()
		return count["node2"] > 0 && count["node3"] > 0
	})
}

// answerAfter answers m's forwarded IQs, each delay after it arrived (so that some are
// always in flight), counting them under name, until m's stream ends.
func answerAfter(m *xmpptest.Managing, delay time.Duration, name string, mu *sync.Mutex, count map[string]int) {
	type arrived struct {
		f  xmpptest.Forwarded
		at time.Time
	}
	q := make(chan arrived, 5000)
	go func() {
		for f := range m.Forwards {
			q <- arrived{f, time.Now()}
		}
	}()
	go func() {
		for a := range q {
			time.Sleep(time.Until(a.at.Add(delay)))
			if m.TryAnswer(a.f, "") != nil {
				return
			}
			mu.Lock()
			count[name]++
			mu.Unlock()
		}
	}()
}

// iqLoad keeps window delegated IQs in flight from p until stop is closed, then waits for
// the answers still due. It counts results, errors (each logged) and answers to an id
// answered before; it ends early if p's stream ends (unanswered: sent but not answered).
type iqLoad struct {
	sent, results, errors, twice, unanswered int
	streamEnded                              bool
	lastError                                time.Time
}

func runIQLoad(t *testing.T, p *xmpptest.Peer, prefix string, window int, stop <-chan struct{}) *iqLoad {
	l := &iqLoad{}
	answered := map[string]bool{}
	outstanding := 0
	stopping := false
	for {
		for !stopping && outstanding < window {
			if _, err := io.WriteString(p.S.Conn(), pubsubIQ(fmt.Sprintf("%s%d", prefix, l.sent))); err != nil {
				stopping = true // the stream is closing: what was answered is counted below
				break
			}
			l.sent++
			outstanding++
		}
		if stopping && outstanding == 0 {
			return l
		}
		select {
		case <-stop:
			stop, stopping = nil, true
			continue
		case e, ok := <-p.In:
			if !ok {
				l.streamEnded, l.unanswered = true, outstanding
				return l
			}
			id := e.Attr("id")
			if !strings.HasPrefix(id, prefix) {
				continue
			}
			if answered[id] {
				l.twice++
				continue
			}
			answered[id] = true
			outstanding--
			if e.Attr("type") == "result" {
				l.results++
			} else {
				l.errors++
				l.lastError = time.Now()
				t.Logf("%s: %s", prefix, e)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s: %d IQs unanswered for 30 s", prefix, outstanding)
			l.unanswered = outstanding
			return l
		}
	}
}

// A node stopped with SIGTERM drains: IQs already sent to its component connection are
// answered (the other nodes pick only the survivor from the moment it withdraws), its
// own clients' IQs are answered before their streams close with system-shutdown, and no
// IQ fails or is answered twice.
func TestGracefulStopFailsNoIQ(t *testing.T) {
	c := Start(t, 3, func(i int, cfg *config.Config) {
		delegating("round-robin")(i, cfg)
		if os.Getenv("NODRAIN") != "" {
			cfg.Node.DrainTimeout = 0
		}
	})
	c.AddUser("juliet", "j")
	c.AddUser("romeo", "r")
	j := login(t, c, 0, "juliet", "j", "")
	k := login(t, c, 2, "romeo", "r", "")
	a, b := onNodes2and3(t, c)
	var mu sync.Mutex
	count := map[string]int{}
	answerAfter(a, 20*time.Millisecond, "node2", &mu, count)
	answerAfter(b, 20*time.Millisecond, "node3", &mu, count)
	untilBothUsed(c, j, &mu, count)
	c.Eventually(10*time.Second, "node 3 forwards to both connections", func() bool {
		mu.Lock()
		before := count["node2"]
		mu.Unlock()
		k.Send(pubsubIQ("warm"))
		k.Next(wait)
		mu.Lock()
		defer mu.Unlock()
		return count["node2"] > before
	})

	stop := make(chan struct{})
	var loads [2]*iqLoad
	var wg sync.WaitGroup
	for i, p := range []*xmpptest.Peer{j, k} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loads[i] = runIQLoad(t, p, fmt.Sprintf("load%d-", i), 8, stop)
		}()
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	atStop := count["node3"]
	mu.Unlock()
	stopped := time.Now()
	c.Stop(2)
	took := time.Since(stopped)
	time.Sleep(300 * time.Millisecond) // the survivors go on alone
	close(stop)
	wg.Wait()
	j.ExpectNothing(300 * time.Millisecond) // nothing answered twice
	t.Logf("SIGTERM to exit: %v; node 3's component answered %d IQs before the stop", took, atStop)
	for i, l := range loads {
		t.Logf("client on node %d: %d sent, %d results, %d errors, %d answered twice, %d unanswered when its stream ended (%v)",
			[]int{1, 3}[i], l.sent, l.results, l.errors, l.twice, l.unanswered, l.streamEnded)
	}
	if atStop == 0 {
		t.Fatal("node 3's component had no share of the load")
	}
	if l := loads[0]; l.errors+l.twice+l.unanswered > 0 || l.streamEnded {
		t.Fatalf("the client on a surviving node saw IQs fail or repeat")
	}
	if l := loads[1]; l.errors+l.twice > 0 || !l.streamEnded {
		t.Fatalf("the client on the stopped node saw IQs fail or repeat, or its stream did not end")
	}
	if !strings.Contains(c.Logs(2), "msg=drained") {
		t.Fatalf("node 3 did not drain:\n%s", c.Logs(2))
	}
}

// A node killed and restarted at once under the same name, before the membership could
// see it die: the other nodes drop what its earlier run announced as soon as they hear
// of the new run (its incarnation, in its memberlist metadata), so no IQ goes to a
// component connection of the dead run and no stanza to a session of it; only the IQs
// waiting at the killed node fail. The client is on node 2, which is not the seed the
// restarted node joins through.
func TestRestartedNodeGetsNoStaleTraffic(t *testing.T) {
	c := Start(t, 3, func(i int, cfg *config.Config) {
		delegating("round-robin")(i, cfg)
		cfg.Cluster.ProbeInterval = config.Duration(time.Second) // memberlist: ~5 s to call it dead
		cfg.Cluster.SuspicionMult = 4
	})
	c.AddUser("juliet", "j")
	j := login(t, c, 1, "juliet", "j", "")
	// Users on node 3, some of them owned by node 1 or 2 (whose tables keep their sessions).
	users := availableOn(t, c, 2, "r", "old")
	a := xmpptest.NewManaging(t, c.Nodes[0].Component, "pubsub.localhost", secret, nil)
	b := xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, nil)
	a.NextAd(wait)
	b.NextAd(wait)
	var mu sync.Mutex
	count := map[string]int{}
	answerAfter(a, 5*time.Millisecond, "node1", &mu, count)
	answerAfter(b, 5*time.Millisecond, "node3", &mu, count)
	c.Eventually(10*time.Second, "both connections in use", func() bool {
		j.Send(pubsubIQ("warm"))
		j.Next(wait)
		mu.Lock()
		defer mu.Unlock()
		return count["node1"] > 0 && count["node3"] > 0
	})

	stop := make(chan struct{})
	done := make(chan *iqLoad)
	go func() { done <- runIQLoad(t, j, "load-", 4, stop) }()
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	c.Kill(2)
	c.StartNode(2)
	c.WaitReady(2)
	ready := time.Now()
	b2 := xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, nil)
	b2.NextAd(wait)
	answerAfter(b2, 5*time.Millisecond, "node3 again", &mu, count)
	// Past the transport's mark on the dead run's address (probe × (mult + 3) = 7 s).
	time.Sleep(time.Until(killed.Add(9 * time.Second)))
	close(stop)
	l := <-done
	mu.Lock()
	again := count["node3 again"]
	mu.Unlock()
	var last time.Duration
	if !l.lastError.IsZero() {
		last = l.lastError.Sub(killed)
	}
	t.Logf("restarted and ready %v after the kill; %d IQs sent, %d results, %d errors (the last %v after the kill), %d answered twice; the new connection answered %d",
		ready.Sub(killed).Round(time.Millisecond), l.sent, l.results, l.errors, last.Round(time.Millisecond), l.twice, again)
	if l.twice+l.unanswered > 0 || l.streamEnded {
		t.Fatal("IQs answered twice or not at all")
	}
	if l.errors > 4 {
		t.Fatalf("%d IQs failed: more than the 4 that can have been waiting at the killed node", l.errors)
	}
	if l.lastError.After(ready) {
		t.Fatal("IQs failed after the node was back")
	}
	if again == 0 {
		t.Fatal("the component's new connection on the restarted node got no IQ")
	}
	// The users' sessions died with the earlier run: a message to one is refused, not
	// delivered to whatever the new run holds under the same actor name.
	for _, u := range users {
		// A headline: a chat message would be kept for the user's next session (XEP-0160).
		j.Send(`<message to='` + u + `@localhost/old' type='headline' id='m-` + u + `'><body>x</body></message>`)
		if r := j.Next(wait); r.ErrorCondition() != "service-unavailable" {
			t.Fatalf("to %s's session of the dead run: %s", u, r)
		}
	}
	// Every node lists the two live connections, the same two, and nothing of the dead run.
	c.Eventually(wait, "the directories agree", func() bool {
		var first string
		for i := range c.Nodes {
			cs, err := c.Components(i)
			if err != nil || len(cs) != 2 {
				return false
			}
			keys := cs[0].Key + " " + cs[1].Key
			if i == 0 {
				first = keys
			} else if keys != first {
				return false
			}
		}
		return true
	})
	cs, _ := c.Components(0)
	t.Logf("node 1's directory: %+v", cs)
	b2.NoForward(100 * time.Millisecond)
	if e := func() *xmpptest.Elem {
		select {
		case e := <-b2.Other:
			return e
		default:
			return nil
		}
	}(); e != nil {
		t.Fatalf("the new run's component connection got %s", e)
	}
}

// A component connection on another node that closes its stream cleanly: the IQs of this
// node still waiting on it go to the component's other connection (after its last
// answers, which come first), and none fails.
func TestCleanCloseOnAnotherNodeHandsIQsOn(t *testing.T) {
	c := Start(t, 3, delegating("round-robin"))
	c.AddUser("juliet", "j")
	j := login(t, c, 0, "juliet", "j", "")
	a, b := onNodes2and3(t, c)
	var mu sync.Mutex
	count := map[string]int{}
	go func() {
		for f := range a.Forwards {
			mu.Lock()
			count["node2"]++
			mu.Unlock()
			a.Answer(f, "")
		}
	}()
	var held []xmpptest.Forwarded
	var holding atomic.Bool
	heldc := make(chan xmpptest.Forwarded, 100)
	go func() {
		for f := range b.Forwards {
			mu.Lock()
			count["node3"]++
			mu.Unlock()
			if holding.Load() {
				heldc <- f
				continue
			}
			b.Answer(f, "")
		}
	}()
	untilBothUsed(c, j, &mu, count)
	holding.Store(true)
	// Eight IQs: four answered by node 2's connection, four held at node 3's, of which
	// node 3's component answers two before it closes cleanly.
	for i := range 8 {
		j.Send(pubsubIQ(fmt.Sprint("c", i)))
	}
	for range 4 {
		held = append(held, <-heldc)
	}
	b.Answer(held[0], "")
	b.Answer(held[1], "")
	b.CloseClean()
	got := map[string]bool{}
	for range 8 {
		r := j.Next(wait)
		if r.Attr("type") != "result" || got[r.Attr("id")] {
			t.Fatalf("reply %s (so far %v)", r, got)
		}
		got[r.Attr("id")] = true
	}
	j.ExpectNothing(300 * time.Millisecond)
	if !strings.Contains(c.Logs(2), "clean=true") {
		t.Fatal("node 3 did not see a clean close")
	}
}

// availableOn logs six new users (prefix0..prefix5, password "pw") in on node i with
// resource res and makes them available; with three nodes, some are owned by each.
func availableOn(t *testing.T, c *Cluster, i int, prefix, res string) []string {
	var names []string
	for k := range 6 {
		name := fmt.Sprintf("%s%d", prefix, k)
		c.AddUser(name, "pw")
		u := login(t, c, i, name, "pw", res)
		u.Send(`<presence/>`)
		u.Sync()
		names = append(names, name)
	}
	return names
}

// XEP-0352 across nodes: what another node delivers to an inactive client's session is
// held the same way (each sender's latest presence) until something urgent comes.
func TestCSIAcrossNodes(t *testing.T) {
	c := Start(t, 2, nil)
	c.AddUser("juliet", "j")
	c.AddUser("romeo", "r")
	j := login(t, c, 0, "juliet", "j", "phone")
	r := login(t, c, 1, "romeo", "r", "")
	j.SendBatch(`<inactive xmlns='urn:xmpp:csi:0'/>`)
	j.Sync()
	for _, st := range []string{"one", "two"} {
		r.Send(`<presence to='juliet@localhost/phone'><status>` + st + `</status></presence>`)
	}
	r.Sync()
	j.ExpectNothing(300 * time.Millisecond)
	r.Send(`<message to='juliet@localhost/phone' type='chat' id='hi'><body>hi</body></message>`)
	if p := j.Next(wait); p.XMLName.Local != "presence" || !strings.Contains(p.String(), "two") {
		t.Fatalf("first: %s", p)
	}
	if m := j.Next(wait); m.Attr("id") != "hi" {
		t.Fatalf("then: %s", m)
	}
	j.ExpectNothing(200 * time.Millisecond)
}

// Offline messages across nodes: sent from one node while the user is offline (stored by
// the user's owner, wherever it is), given on another node after the initial presence.
func TestOfflineMessagesAcrossNodes(t *testing.T) {
	c := Start(t, 3, nil)
	c.AddUser("juliet", "j")
	c.AddUser("romeo", "r")
	r := login(t, c, 1, "romeo", "r", "")
	for _, id := range []string{"o1", "o2"} {
		r.Send(`<message to='juliet@localhost' type='chat' id='` + id + `'><body>` + id + `</body></message>`)
	}
	r.Sync()
	r.ExpectNothing(300 * time.Millisecond) // stored, not bounced
	j := login(t, c, 2, "juliet", "j", "")
	j.Send(`<presence/>`)
	for _, id := range []string{"o1", "o2"} {
		if m := j.Next(wait); m.Attr("id") != id || m.Child("delay") == nil {
			t.Fatalf("offline message %s: %s", id, m)
		}
	}
}

// XEP-0280 across nodes: the phone on node 1 and the laptop on node 2 both enabled
// carbons; what romeo (node 3) sends the phone, and what the phone sends romeo, the
// laptop gets a copy of.
func TestCarbonsAcrossNodes(t *testing.T) {
	c := Start(t, 3, nil)
	c.AddUser("juliet", "j")
	c.AddUser("romeo", "r")
	phone := login(t, c, 0, "juliet", "j", "phone")
	laptop := login(t, c, 1, "juliet", "j", "laptop")
	r := login(t, c, 2, "romeo", "r", "")
	r.Send(`<presence/>`) // available: a chat to his bare JID is delivered, not kept
	for _, p := range []*xmpptest.Peer{phone, laptop} {
		p.Send(`<presence/>`)
		p.Send(`<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	}
	next := func(p *xmpptest.Peer, what string, ok func(*xmpptest.Elem) bool) *xmpptest.Elem {
		t.Helper()
		for {
			e := p.Next(wait)
			if ok(e) {
				return e
			}
			if e.XMLName.Local == "iq" && e.Attr("type") == "error" {
				t.Fatalf("%s: %s", what, e)
			}
		}
	}
	isMsg := func(e *xmpptest.Elem) bool { return e.XMLName.Local == "message" }
	for _, p := range []*xmpptest.Peer{phone, laptop} {
		next(p, "carbons enabled", func(e *xmpptest.Elem) bool { return e.Attr("id") == "c1" })
	}
	c.Eventually(wait, "a received carbon on the laptop", func() bool {
		r.Send(`<message to='juliet@localhost/phone' type='chat' id='in'><body>hi</body></message>`)
		next(phone, "the message", isMsg)
		select {
		case e := <-laptop.In:
			return e.Child("received") != nil && strings.Contains(e.String(), "id=\"in\"")
		case <-time.After(500 * time.Millisecond):
			return false
		}
	})
	phone.Send(`<message to='romeo@localhost' type='chat' id='out'><body>yo</body></message>`)
	next(r, "the message", isMsg)
	// (Received carbons of the probes above may come first.)
	sent := func(e *xmpptest.Elem) bool { return isMsg(e) && e.Child("sent") != nil }
	if e := next(laptop, "the sent carbon", sent); !strings.Contains(e.String(), "juliet@localhost/phone") || !strings.Contains(e.String(), "id=\"out\"") {
		t.Fatalf("laptop: %s", e)
	}
}

// XEP-0198 across nodes: juliet's phone enables stream management on node 1 and loses
// its connection; it resumes through node 2 (a load balancer sent it there). Node 2 finds
// the session through juliet's owner, node 1 hands it over, and the phone gets what it had
// not acknowledged, what came while it was away, and what comes after, in order, on node
// 2. Once node 2 dies, the session is gone: resuming fails and a new login works.
func TestStreamResumedOnAnotherNode(t *testing.T) {
	c := Start(t, 3, nil)
	c.AddUser("juliet", "j")
	c.AddUser("romeo", "r")
	j := login(t, c, 0, "juliet", "j", "phone")
	r := login(t, c, 2, "romeo", "r", "orchard")
	j.Send(`<presence/>`)
	j.Send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	var h uint32 // what the phone handled since enable
	next := func(p *xmpptest.Peer) *xmpptest.Elem {
		t.Helper()
		e := skipAckRequests(t, p)
		if p == j && e.XMLName.Space != "urn:xmpp:sm:3" {
			h++
		}
		return e
	}
	enabled := next(j)
	if enabled.XMLName.Local != "enabled" || enabled.Attr("id") == "" {
		t.Fatalf("enable: %s", enabled)
	}
	msg := chatToPhone
	j.Send(`<message to='romeo@localhost/orchard' type='chat' id='j1'><body>hi</body></message>`)
	if m := next(r); m.Attr("id") != "j1" {
		t.Fatalf("romeo got %s", m)
	}
	r.Send(msg("m1"))
	if m := next(j); m.Attr("id") != "m1" {
		t.Fatalf("juliet got %s", m)
	}
	j.Send(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
	r.Send(msg("m2"))
	if m := next(j); m.Attr("id") != "m2" {
		t.Fatalf("juliet got %s", m)
	}
	h-- // lost with the connection
	_ = j.S.Conn().Close()
	time.Sleep(300 * time.Millisecond)
	r.Send(msg("m3"))
	r.Send(`<iq type='get' id='q1' to='juliet@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>`)

	var p *xmpptest.Peer
	var ans *xmpptest.Elem
	p, ans, err := xmpptest.DialResume(t, c.Nodes[1].C2S, "juliet", "j", "juliet@localhost/phone", enabled.Attr("id"), h)
	if err != nil {
		t.Fatalf("resume on node 2: %v", err)
	}
	if ans.Attr("h") != "1" {
		t.Fatalf("resumed: %s, want h='1' (j1)", ans)
	}
	j = p
	for _, want := range []string{"m2", "m3", "q1"} {
		if e := next(j); e.Attr("id") != want {
			t.Fatalf("after resumption got %s, want %s", e, want)
		}
	}
	j.Send(`<iq type='result' id='q1' to='romeo@localhost/orchard'/>`)
	if e := next(r); e.Attr("id") != "q1" || e.Attr("type") != "result" {
		t.Fatalf("romeo's IQ: %s", e)
	}
	r.Send(msg("m4"))
	if e := next(j); e.Attr("id") != "m4" {
		t.Fatalf("after resumption: %s", e)
	}
	j.Send(`<r xmlns='urn:xmpp:sm:3'/>`)
	if e := j.Next(wait); e.XMLName.Local != "a" || e.Attr("h") != "2" {
		t.Fatalf("count after resumption: %s, want h='2' (j1, q1)", e)
	}
	j.Send(`<message to='romeo@localhost/orchard' type='chat' id='j2'><body>back</body></message>`)
	if e := next(r); e.Attr("id") != "j2" {
		t.Fatalf("romeo got %s", e)
	}

	// Node 2 dies with the session: it cannot be resumed anywhere.
	c.Kill(1)
	if _, ans, err := xmpptest.DialResume(t, c.Nodes[2].C2S, "juliet", "j", "juliet@localhost/phone", enabled.Attr("id"), h); err == nil {
		t.Fatalf("resumed a session of a dead node: %s", ans)
	}
	login(t, c, 2, "juliet", "j", "phone").Sync()
}

// A graceful stop lets stream-management sessions go to other nodes: juliet's phone on
// node 1 gets system-shutdown, resumes through node 2 while node 1 drains, and gets what
// it had not acknowledged and what came after; node 1 then stops.
func TestDrainHandsResumableSessionsOn(t *testing.T) {
	c := Start(t, 3, nil)
	c.AddUser("juliet", "j")
	c.AddUser("romeo", "r")
	j := login(t, c, 0, "juliet", "j", "phone")
	r := login(t, c, 2, "romeo", "r", "orchard")
	j.Send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	skipR := func(p *xmpptest.Peer) *xmpptest.Elem { t.Helper(); return skipAckRequests(t, p) }
	enabled := skipR(j)
	if enabled.XMLName.Local != "enabled" {
		t.Fatalf("enable: %s", enabled)
	}
	msg := chatToPhone
	r.Send(msg("m1"))
	if m := skipR(j); m.Attr("id") != "m1" {
		t.Fatalf("juliet got %s", m)
	}
	j.Send(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
	r.Send(msg("m2"))
	if m := skipR(j); m.Attr("id") != "m2" {
		t.Fatalf("juliet got %s", m)
	}

	stopped := make(chan struct{})
	go func() { c.Stop(0); close(stopped) }()
	for range j.In { // to the end of the stream (system-shutdown)
	}
	p, ans, err := xmpptest.DialResume(t, c.Nodes[1].C2S, "juliet", "j", "juliet@localhost/phone", enabled.Attr("id"), 1)
	if err != nil {
		t.Fatalf("resume on node 2 while node 1 drains: %v", err)
	}
	if ans.Attr("h") != "0" {
		t.Fatalf("resumed: %s", ans)
	}
	if m := skipR(p); m.Attr("id") != "m2" {
		t.Fatalf("after resumption: %s, want m2 again", m)
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("node 1 did not stop")
	}
	if !strings.Contains(c.Logs(0), "stream-management sessions to resume elsewhere") {
		t.Fatalf("node 1 did not hand its sessions on:\n%s", c.Logs(0))
	}
	c.WaitMembers(1, 2)
	c.WaitMembers(2, 2)
	// Node 1 owned juliet: her session registers with its new owner once the others
	// see node 1 gone, asynchronously (what reaches the new owner first finds no
	// resource: a message then goes to offline storage).
	time.Sleep(time.Second)
	r.Send(msg("m3"))
	if m := skipR(p); m.Attr("id") != "m3" {
		t.Fatalf("after node 1 stopped: %s", m)
	}
}

// XEP-0191 across nodes: juliet's phone (node 1) and laptop (node 2) both asked for the
// blocklist; romeo is on node 3. A block made on node 1 is in force on node 3 as soon as
// the phone has its result: romeo's messages are not delivered, his IQ is answered
// service-unavailable; both resources get the push, and the laptop (node 2) is refused
// what it sends him. The laptop unblocks him, the phone gets that push, and his messages
// are delivered again at once.
func TestBlockingAcrossNodes(t *testing.T) {
	c := Start(t, 3, nil)
	c.AddUser("juliet", "j")
	c.AddUser("romeo", "r")
	phone := login(t, c, 0, "juliet", "j", "phone")
	laptop := login(t, c, 1, "juliet", "j", "laptop")
	r := login(t, c, 2, "romeo", "r", "orchard")
	isMsg := func(e *xmpptest.Elem) bool { return e.XMLName.Local == "message" }
	// next skips presence (juliet's resources see each other's) and the extra hellos.
	next := func(p *xmpptest.Peer, what string, ok func(*xmpptest.Elem) bool) *xmpptest.Elem {
		t.Helper()
		for {
			e := p.Next(wait)
			if ok(e) {
				return e
			}
			if e.XMLName.Local != "presence" && e.Attr("id") != "hello" {
				t.Fatalf("%s: waiting for %s, got %s", p.JID, what, e)
			}
		}
	}
	byID := func(id string) func(*xmpptest.Elem) bool {
		return func(e *xmpptest.Elem) bool { return e.Attr("id") == id }
	}
	push := func(p *xmpptest.Peer, op string) {
		t.Helper()
		e := next(p, "a "+op+" push", func(e *xmpptest.Elem) bool { return e.XMLName.Local == "iq" && e.Attr("type") == "set" })
		if e.Child(op) == nil || e.Child(op).XMLName.Space != "urn:xmpp:blocking" || e.Attr("from") != "juliet@localhost" ||
			e.Attr("to") != p.JID || !strings.Contains(e.String(), `jid="romeo@localhost"`) {
			t.Fatalf("%s: want a %s push of romeo, got %s", p.JID, op, e)
		}
		p.Send(`<iq type='result' id='` + e.Attr("id") + `' to='juliet@localhost'/>`)
	}
	for _, p := range []*xmpptest.Peer{phone, laptop} {
		p.Send(`<presence/>`)
		p.Send(`<iq type='get' id='g'><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
		if e := next(p, "the blocklist", byID("g")); e.Attr("type") != "result" || e.Child("blocklist") == nil {
			t.Fatalf("%s: blocklist %s", p.JID, e)
		}
	}
	c.Eventually(wait, "romeo's message on the phone", func() bool {
		r.Send(`<message to='juliet@localhost/phone' type='chat' id='hello'><body>hi</body></message>`)
		select {
		case e := <-phone.In:
			return isMsg(e) && e.Attr("id") == "hello"
		case <-time.After(300 * time.Millisecond):
			return false
		}
	})

	phone.Send(`<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block></iq>`)
	if e := next(phone, "the block's result", byID("b")); e.Attr("type") != "result" {
		t.Fatalf("block: %s", e)
	}
	// At once, on romeo's node.
	r.Send(`<message to='juliet@localhost/phone' type='chat' id='m1'><body>1</body></message>`)
	r.Send(`<message to='juliet@localhost/laptop' type='chat' id='m2'><body>2</body></message>`)
	r.Send(`<message to='juliet@localhost' type='chat' id='m3'><body>3</body></message>`)
	r.Send(`<iq type='get' id='ping' to='juliet@localhost/laptop'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if e := next(r, "the ping's answer", byID("ping")); e.ErrorCondition() != "service-unavailable" {
		t.Fatalf("romeo's ping: %s", e)
	}
	push(phone, "block")
	push(laptop, "block")
	laptop.Send(`<message to='romeo@localhost' type='chat' id='m4'><body>4</body></message>`)
	if e := next(laptop, "the refusal", byID("m4")); e.ErrorCondition() != "not-acceptable" || e.Child("error").Child("blocked") == nil {
		t.Fatalf("laptop to romeo: %s", e)
	}
	for _, p := range []*xmpptest.Peer{phone, laptop, r} {
		for done := time.After(300 * time.Millisecond); ; {
			select {
			case e := <-p.In:
				if e.XMLName.Local != "presence" && e.Attr("id") != "hello" {
					t.Fatalf("%s got %s", p.JID, e)
				}
				continue
			case <-done:
			}
			break
		}
	}

	laptop.Send(`<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></unblock></iq>`)
	if e := next(laptop, "the unblock's result", byID("u")); e.Attr("type") != "result" {
		t.Fatalf("unblock: %s", e)
	}
	r.Send(`<message to='juliet@localhost/phone' type='chat' id='m5'><body>5</body></message>`)
	// The push comes after the result, through juliet's owner: romeo's message may
	// overtake it.
	var pushed, got bool
	for !pushed || !got {
		e := next(phone, "the unblock push and romeo's message", func(e *xmpptest.Elem) bool { return isMsg(e) || e.XMLName.Local == "iq" })
		if isMsg(e) {
			if e.Attr("id") != "m5" || got {
				t.Fatalf("phone got %s", e)
			}
			got = true
			continue
		}
		if e.Child("unblock") == nil || pushed {
			t.Fatalf("phone got %s", e)
		}
		pushed = true
	}
	push(laptop, "unblock")
}

// skipAckRequests is the next element p gets that is not a stream-management ack
// request (<r/>, XEP-0198).
func skipAckRequests(t *testing.T, p *xmpptest.Peer) *xmpptest.Elem {
	t.Helper()
	for {
		if e := p.Next(wait); e.XMLName.Space != "urn:xmpp:sm:3" || e.XMLName.Local != "r" {
			return e
		}
	}
}

// chatToPhone is a chat message to juliet's phone whose id and body are id.
func chatToPhone(id string) string {
	return `<message to='juliet@localhost/phone' type='chat' id='` + id + `'><body>` + id + `</body></message>`
}
