package testcluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/internal/xmpptest"
	"mellium.im/sasl"
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

	// Client on node 1, component on node 3: the IQ goes there and the answer comes back.
	j.Send(pubsubIQ("x1"))
	f := m.NextForward(wait)
	if f.Inner.Attr("from") != j.JID || !strings.HasPrefix(f.Outer.Attr("id"), "sbd:node1:") {
		t.Fatalf("forward %s", f.Outer)
	}
	m.Answer(f, `<pubsub xmlns='`+nsPubsub+`'/>`)
	if r := j.Next(wait); r.Attr("type") != "result" || r.Attr("id") != "x1" || r.Child("pubsub") == nil {
		t.Fatalf("reply %s", r)
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
			p.Send(`<iq type='get' id='mam' to='localhost'><query xmlns='` + nsMAM + `'/></iq>`)
			select {
			case f := <-m.Forwards:
				m.Answer(f, "")
				return p.Next(wait).Attr("type") == "result"
			case <-time.After(300 * time.Millisecond):
				p.Next(wait)
				return false
			}
		})
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
	a := xmpptest.NewManaging(t, c.Nodes[1].Component, "pubsub.localhost", secret, nil)
	b := xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, nil)
	a.NextAd(wait)
	b.NextAd(wait)
	// Both connections known on node 1: wait until each has received a probe.
	var mu sync.Mutex
	count := map[string]int{}
	answer := func(m *xmpptest.Managing, name string, dropAfter int, stop chan struct{}) {
		for {
			select {
			case f := <-m.Forwards:
				mu.Lock()
				count[name]++
				n := count[name]
				mu.Unlock()
				if dropAfter > 0 && n == dropAfter {
					m.Close() // mid-load: its pending IQs must fail, not vanish
					return
				}
				m.Answer(f, "")
			case <-stop:
				return
			}
		}
	}
	stopAnswering := make(chan struct{})
	go answer(a, "node2", 0, stopAnswering)
	go answer(b, "node3", 0, stopAnswering)
	c.Eventually(10*time.Second, "both connections in use", func() bool {
		j.Send(pubsubIQ("warm"))
		j.Next(wait)
		mu.Lock()
		defer mu.Unlock()
		return count["node2"] > 0 && count["node3"] > 0
	})
	close(stopAnswering)
	mu.Lock()
	count = map[string]int{}
	mu.Unlock()

	// 200 IQs, round-robin: both connections take a fair share.
	stopAnswering = make(chan struct{})
	go answer(a, "node2", 0, stopAnswering)
	go answer(b, "node3", 0, stopAnswering)
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

	// One connection drops mid-load: every IQ still gets exactly one answer.
	stopAnswering = make(chan struct{})
	go answer(a, "node2", 0, stopAnswering)
	go answer(b, "node3", 20, stopAnswering)
	batch.Reset()
	for i := 0; i < n; i++ {
		batch.WriteString(pubsubIQ(fmt.Sprintf("d%d", i)))
	}
	j.SendBatch(batch.String())
	results, failures := 0, 0
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
	close(stopAnswering)
	t.Logf("after dropping one connection mid-load: %d results, %d service-unavailable", results, failures)
	if results == 0 || failures == 0 {
		t.Fatalf("expected both answered and failed IQs: %d/%d", results, failures)
	}
	j.ExpectNothing(300 * time.Millisecond)
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

	// Restarted, node 3 rejoins and serves its component again.
	c.StartNode(2)
	c.WaitReady(2)
	c.WaitMembers(0, 3)
	m2 := xmpptest.NewManaging(t, c.Nodes[2].Component, "pubsub.localhost", secret, nil)
	m2.NextAd(wait)
	untilForwarded(t, c, j, m2)
}
