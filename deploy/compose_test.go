//go:build compose

package deploy

// Fault tests against the three-node compose cluster of docker-compose.yml, from the host,
// through the ports it publishes on 127.0.0.1. deploy/test-compose.sh builds the images,
// starts the cluster, runs
//
//	go test -tags compose -run Compose ./deploy
//
// and tears the cluster down. Environment (test-compose.sh sets it):
//
//	SB_COMPOSE    the compose command ("docker-compose" or "docker compose")
//	SB_PROJECT    the compose project name
//	SB_BIN        the host switchboard binary (the build the image runs)
//	SB_PARTITION  how long node3 stays off the network (default 30s: longer than
//	              memberlist's failure detection, ~5s here, and than its
//	              GossipToTheDeadTime, 15s, so healing relies on the nodes rejoining
//	              their seeds)
//
// The steps depend on each other and run in order; the first failure stops the test.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

// sbNode is a compose service with the host addresses of its published ports.
type sbNode struct{ name, c2s, comp, admin string }

const (
	pubsubNS     = "http://jabber.org/protocol/pubsub" // delegated in compose/switchboard.yaml
	dynNS        = "urn:example:compose:dyn"           // delegated at runtime through etcd
	componentJID = "pubsub.localhost"
	secret       = "change-me"
)

func TestCompose(t *testing.T) {
	top := t // connections live across steps
	e := newEnv(t)
	// The published ports are looked up: test-compose.sh lets Docker pick them, and a
	// container that is started again or reconnected to the network may get new ones, so
	// refresh looks them up again after each.
	node := func(name string) sbNode {
		return sbNode{name, e.port(name, 5222), e.port(name, 5347), e.port(name, 5280)}
	}
	var node1, node2, node3 sbNode
	var all []sbNode
	refresh := func() {
		node1, node2, node3 = node("node1"), node("node2"), node("node3")
		all = []sbNode{node1, node2, node3}
	}
	refresh()
	etcdEndpoint := "http://" + e.port("etcd", 2379)

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("ClusterUp", func(t *testing.T) {
		for _, n := range all {
			eventually(t, 90*time.Second, n.name+" /readyz", func() error { return getOK(n.admin, "/readyz") })
		}
		for _, n := range all {
			waitAlive(t, n, 60*time.Second, "node1", "node2", "node3")
		}
		if out, err := e.sb("", "version"); err != nil {
			t.Fatalf("switchboard version: %v %s", err, out)
		} else {
			t.Logf("host CLI: %s", strings.TrimSpace(out))
		}
	})

	for _, u := range []string{"alice", "bob", "carol"} {
		step("AddUser/"+u, func(t *testing.T) {
			out, err := e.sb(u+"-pw\n", "user", "add", u+"@localhost", "--password-stdin", "--etcd", etcdEndpoint)
			if err != nil && !strings.Contains(out, "exist") {
				t.Fatalf("user add %s: %v\n%s", u, err, out)
			}
		})
	}

	var alice, bob, carol *client
	var comp3 *comp
	step("DelegatedIQAcrossNodes", func(t *testing.T) {
		// The component is on node3, the clients on node1 and node2: every IQ crosses nodes.
		comp3 = dialComp(t, top, node3, "comp@node3", 30*time.Second)
		alice = dial(t, top, node1, "alice", "node1", 30*time.Second)
		bob = dial(t, top, node2, "bob", "node2", 30*time.Second)
		// The component directory reaches node1 and node2 by gossip: wait for it once.
		for _, c := range []*client{alice, bob} {
			eventually(t, 20*time.Second, c.name+" → component on node3", func() error {
				return expectAnswer(c, pubsubNS, "comp@node3")
			})
		}
		for i := range 20 {
			for _, c := range []*client{alice, bob} {
				if err := expectAnswer(c, pubsubNS, "comp@node3"); err != nil {
					t.Fatalf("delegated IQ %d from %s: %v", i, c.name, err)
				}
			}
		}
	})

	step("KillNode", func(t *testing.T) {
		ctr := e.container("node2")
		e.docker(t, "kill", ctr)
		killed := time.Now()
		// bob was on node2: his stream ends (the connection is refused or reset).
		select {
		case <-bob.closed:
			t.Logf("bob's stream on node2 ended %v after the kill", time.Since(killed).Round(time.Millisecond))
		case <-time.After(30 * time.Second):
			t.Logf("bob's stream on node2 still open 30s after the kill (TCP keeps it half-open)")
		}
		bob.close()
		for _, n := range []sbNode{node1, node3} {
			waitAlive(t, n, 30*time.Second, "node1", "node3")
		}
		t.Logf("node1 and node3 see node2 gone %v after the kill", time.Since(killed).Round(time.Millisecond))
		// The survivors keep serving: delegated IQs node1 → node3, a new login on node3,
		// a message across nodes.
		eventually(t, 15*time.Second, "alice → component after the kill", func() error {
			return expectAnswer(alice, pubsubNS, "comp@node3")
		})
		for i := range 10 {
			if err := expectAnswer(alice, pubsubNS, "comp@node3"); err != nil {
				t.Fatalf("delegated IQ %d after the kill: %v", i, err)
			}
		}
		carol = dial(t, top, node3, "carol", "node3", 20*time.Second)
		if err := expectAnswer(carol, pubsubNS, "comp@node3"); err != nil {
			t.Fatalf("carol on node3: %v", err)
		}
		eventually(t, 15*time.Second, "message alice(node1) → carol(node3)", func() error {
			return message(alice, carol)
		})

		// Bring node2 back: it rejoins and serves again.
		e.docker(t, "start", ctr)
		refresh()
		eventually(t, 60*time.Second, "node2 /readyz after restart", func() error { return getOK(node2.admin, "/readyz") })
		for _, n := range all {
			waitAlive(t, n, 60*time.Second, "node1", "node2", "node3")
		}
		bob = dial(t, top, node2, "bob", "node2", 30*time.Second)
		eventually(t, 20*time.Second, "bob on restarted node2 → component on node3", func() error {
			return expectAnswer(bob, pubsubNS, "comp@node3")
		})
		t.Logf("node2 back in the cluster and serving %v after the kill", time.Since(killed).Round(time.Millisecond))
	})

	step("PartitionHeals", func(t *testing.T) {
		ctr := e.container("node3")
		netName, ip := e.network(t, ctr)
		hold := 30 * time.Second
		if v := os.Getenv("SB_PARTITION"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("SB_PARTITION: %v", err)
			}
			hold = d
		}
		e.docker(t, "network", "disconnect", "-f", netName, ctr)
		cut := time.Now()
		reconnected := false
		reconnect := func() {
			if !reconnected {
				reconnected = true
				e.docker(t, "network", "connect", "--ip", ip, "--alias", "node3", netName, ctr)
				refresh()
			}
		}
		defer reconnect() // leave the cluster whole for the next step even if this one fails
		for _, n := range []sbNode{node1, node2} {
			waitAlive(t, n, 30*time.Second, "node1", "node2")
		}
		t.Logf("node1 and node2 see node3 gone %v after the disconnect", time.Since(cut).Round(time.Millisecond))
		// The only component is on node3: a delegated IQ now fails at once instead of hanging.
		eventually(t, 10*time.Second, "service-unavailable during the partition", func() error {
			start := time.Now()
			r, err := alice.iq(pubsubNS, 10*time.Second)
			if err != nil {
				return err
			}
			if r.Attr("type") != "error" {
				return fmt.Errorf("got %s", r)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("error came after %v, not promptly", d)
			}
			return nil
		})
		if rest := hold - time.Since(cut); rest > 0 {
			time.Sleep(rest)
		}
		reconnect()
		healed := time.Now()
		for _, n := range all {
			waitAlive(t, n, 90*time.Second, "node1", "node2", "node3")
		}
		t.Logf("cluster whole again %v after the reconnect (partition held %v)",
			time.Since(healed).Round(time.Millisecond), healed.Sub(cut).Round(time.Millisecond))

		// The component's old connection went through the cut; connect it again, as a real
		// component would, and delegated IQs through node3 work again.
		select {
		case <-comp3.closed:
			t.Logf("the component's old connection to node3 ended")
		default:
			t.Logf("the component's old connection to node3 is still open; closing it")
		}
		comp3.close()
		comp3 = dialComp(t, top, node3, "comp@node3-again", 30*time.Second)
		// carol's connection to node3 went through the cut too (docker's port proxy drops
		// it); she logs in again, as a real client would.
		select {
		case <-carol.closed:
			t.Logf("carol's connection to node3 ended; logging in again")
			carol = dial(t, top, node3, "carol", "node3", 30*time.Second)
		default:
		}
		for _, c := range []*client{alice, bob} {
			eventually(t, 30*time.Second, c.name+" → component on node3 after the heal", func() error {
				return expectAnswer(c, pubsubNS, "comp@node3-again")
			})
		}
		for i := range 10 {
			for _, c := range []*client{alice, bob, carol} {
				if err := expectAnswer(c, pubsubNS, "comp@node3-again"); err != nil {
					t.Fatalf("delegated IQ %d from %s after the heal: %v", i, c.name, err)
				}
			}
		}
		// The directories are reconciled: every node lists the component's one live
		// connection, the same one, on node3; nothing of before the cut, nothing twice.
		eventually(t, 30*time.Second, "the directories to agree after the heal", func() error {
			var first []string
			for _, n := range all {
				keys, err := componentKeys(n.admin, componentJID)
				if err != nil {
					return err
				}
				if len(keys) != 1 || !strings.HasPrefix(keys[0], "node3/") {
					return fmt.Errorf("%s lists %v", n.name, keys)
				}
				if first == nil {
					first = keys
				} else if !slices.Equal(keys, first) {
					return fmt.Errorf("%s lists %v, %s %v", n.name, keys, node1.name, first)
				}
			}
			return nil
		})
	})

	step("DelegationChangeInEtcd", func(t *testing.T) {
		// A second connection of the component, on node1: both must hear of the change.
		comp1 := dialComp(t, top, node1, "comp@node1", 20*time.Second)
		defer comp1.close()
		clients := []*client{alice, bob, carol}
		for _, c := range clients {
			c.stray.Store(0)
		}
		tr := startTraffic(clients, dynNS)

		time.Sleep(time.Second)
		setAt := time.Now()
		if out, err := e.sb("", "delegation", "set", "localhost", dynNS, componentJID, "--etcd", etcdEndpoint); err != nil {
			t.Fatalf("delegation set: %v\n%s", err, out)
		}
		time.Sleep(5 * time.Second)
		rmAt := time.Now()
		if out, err := e.sb("", "delegation", "rm", "localhost", dynNS, "--etcd", etcdEndpoint); err != nil {
			t.Fatalf("delegation rm: %v\n%s", err, out)
		}
		time.Sleep(5 * time.Second)
		samples := tr.stop()

		for _, c := range clients {
			s := samples[c.name]
			if len(s) < 20 {
				t.Fatalf("%s: only %d IQs answered", c.name, len(s))
			}
			// Before the set: errors. Then results from the first one on, then errors again
			// after the rm, each switch within 5s (the rule applies within a second).
			firstOK, firstErrAgain := time.Time{}, time.Time{}
			for _, x := range s {
				switch {
				case x.err != nil:
					t.Errorf("%s: IQ %s: %v", c.name, x.id, x.err)
				case x.sent.Before(setAt):
					if x.ok {
						t.Errorf("%s: IQ %s forwarded before the rule was set", c.name, x.id)
					}
				case x.sent.Before(rmAt):
					if x.ok && firstOK.IsZero() {
						firstOK = x.sent
					} else if !x.ok && !firstOK.IsZero() {
						t.Errorf("%s: IQ %s not forwarded (%s) after earlier ones were", c.name, x.id, x.cond)
					}
				default:
					if !x.ok && firstErrAgain.IsZero() {
						firstErrAgain = x.sent
					} else if x.ok && !firstErrAgain.IsZero() {
						t.Errorf("%s: IQ %s forwarded after the rule was removed and earlier ones were not", c.name, x.id)
					}
				}
			}
			switch {
			case firstOK.IsZero():
				t.Errorf("%s (on %s): no IQ was forwarded after `delegation set`", c.name, c.node)
			case firstOK.Sub(setAt) > 5*time.Second:
				t.Errorf("%s: the new rule applied only after %v", c.name, firstOK.Sub(setAt))
			default:
				t.Logf("%s on %s: rule applied ≤ %v after `delegation set` started", c.name, c.node, firstOK.Sub(setAt).Round(time.Millisecond))
			}
			switch {
			case firstErrAgain.IsZero():
				t.Errorf("%s (on %s): IQs still forwarded after `delegation rm`", c.name, c.node)
			case firstErrAgain.Sub(rmAt) > 5*time.Second:
				t.Errorf("%s: the removal applied only after %v", c.name, firstErrAgain.Sub(rmAt))
			}
			if n := c.stray.Load(); n != 0 {
				t.Errorf("%s: %d answers to no pending IQ (duplicates or late answers)", c.name, n)
			}
			t.Logf("%s: %d IQs, each answered exactly once", c.name, len(s))
		}
		// Both component connections were told: an advertisement with the namespace, then one without.
		for _, m := range []*comp{comp1, comp3} {
			eventually(t, 5*time.Second, m.label+" advertisements", func() error {
				ads := m.adverts()
				i := slices.IndexFunc(ads, func(a map[string]bool) bool { return a[dynNS] })
				if i < 0 {
					return fmt.Errorf("no advertisement with %s in %v", dynNS, ads)
				}
				if !slices.ContainsFunc(ads[i+1:], func(a map[string]bool) bool { return !a[dynNS] }) {
					return fmt.Errorf("no advertisement without %s after the rm in %v", dynNS, ads)
				}
				return nil
			})
		}
		if comp1.forwards.Load() == 0 || comp3.forwards.Load() == 0 {
			t.Errorf("forwarded IQs not shared by the component's two connections: node1 %d, node3 %d",
				comp1.forwards.Load(), comp3.forwards.Load())
		}
	})
}

// --- the environment: compose, docker, the host CLI ---

type env struct {
	t       *testing.T
	compose []string
	project string
	file    string // the compose file, relative to deploy/
	bin     string
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, compose: strings.Fields(os.Getenv("SB_COMPOSE")), project: os.Getenv("SB_PROJECT"), bin: os.Getenv("SB_BIN")}
	if len(e.compose) == 0 || e.project == "" || e.bin == "" {
		t.Skip("SB_COMPOSE, SB_PROJECT and SB_BIN are not set: run deploy/test-compose.sh")
	}
	e.file = os.Getenv("SB_COMPOSE_FILE")
	if e.file == "" {
		e.file = "docker-compose.yml"
	}
	return e
}

func run(stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (e *env) sb(stdin string, args ...string) (string, error) { return run(stdin, e.bin, args...) }

func (e *env) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run("", "docker", args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("docker %s", strings.Join(args, " "))
	return strings.TrimSpace(out)
}

// container is the id of a compose service's container.
func (e *env) container(service string) string {
	e.t.Helper()
	args := append(append([]string{}, e.compose[1:]...), "-f", e.file, "-p", e.project, "ps", "-q", service)
	out, err := run("", e.compose[0], args...)
	id := strings.TrimSpace(out)
	if err != nil || id == "" || strings.ContainsAny(id, " \n") {
		e.t.Fatalf("%s ps -q %s: %v %q", strings.Join(e.compose, " "), service, err, out)
	}
	return id
}

// port is the host address a service's container port is published on.
func (e *env) port(service string, port int) string {
	e.t.Helper()
	args := append(append([]string{}, e.compose[1:]...), "-f", e.file, "-p", e.project, "port", service, fmt.Sprint(port))
	out, err := run("", e.compose[0], args...)
	addr := strings.TrimSpace(out)
	if err != nil || addr == "" || strings.ContainsAny(addr, " \n") {
		e.t.Fatalf("%s port %s %d: %v %q", strings.Join(e.compose, " "), service, port, err, out)
	}
	return addr
}

// network is the (only) network a container is on and its address there.
func (e *env) network(t *testing.T, ctr string) (name, ip string) {
	out := e.docker(t, "inspect", "-f", "{{json .NetworkSettings.Networks}}", ctr)
	var nets map[string]struct{ IPAddress string }
	if err := json.Unmarshal([]byte(out), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("networks of %s: %v %s", ctr, err, out)
	}
	for n, v := range nets {
		name, ip = n, v.IPAddress
	}
	return name, ip
}

// --- cluster state through the admin API ---

func getOK(admin, path string) error {
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get("http://" + admin + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

// componentKeys is the keys of domain's connections in a node's directory
// (/cluster/components).
func componentKeys(admin, domain string) ([]string, error) {
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get("http://" + admin + "/cluster/components")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var cs []struct{ Domain, Key string }
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil {
		return nil, err
	}
	var keys []string
	for _, c := range cs {
		if c.Domain == domain {
			keys = append(keys, c.Key)
		}
	}
	return keys, nil
}

// alive is the sorted ids of the members a node sees alive.
func alive(admin string) ([]string, error) {
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get("http://" + admin + "/cluster/members")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ms []struct{ ID, State string }
	if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range ms {
		if m.State == "alive" {
			ids = append(ids, m.ID)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func waitAlive(t *testing.T, n sbNode, d time.Duration, want ...string) {
	t.Helper()
	eventually(t, d, fmt.Sprintf("%s to see %v alive", n.name, want), func() error {
		got, err := alive(n.admin)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("sees %v", got)
		}
		return nil
	})
}

// eventually polls f until it returns nil, failing the test after d with f's last error.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// --- an XMPP client that matches answers to IQs by id ---

type client struct {
	name, node string
	p          *xmpptest.Peer
	closed     chan struct{}
	seq        atomic.Int64
	stray      atomic.Int64 // stanzas with an id nobody waits for

	mu    sync.Mutex
	waits map[string]chan *xmpptest.Elem
}

// dial logs a user in, retrying for up to d; t fails, the connection lives as long as top.
func dial(t, top *testing.T, n sbNode, user, resource string, d time.Duration) *client {
	t.Helper()
	var p *xmpptest.Peer
	eventually(t, d, user+" login on "+n.name, func() error {
		var err error
		p, err = xmpptest.DialClient(top, n.c2s, user, user+"-pw", resource, sasl.ScramSha256)
		return err
	})
	c := &client{name: user, node: n.name, p: p, closed: make(chan struct{}), waits: map[string]chan *xmpptest.Elem{}}
	top.Cleanup(c.close)
	go func() {
		defer close(c.closed)
		for e := range p.In {
			c.mu.Lock()
			ch := c.waits[e.Attr("id")]
			delete(c.waits, e.Attr("id"))
			c.mu.Unlock()
			if ch != nil {
				ch <- e
			} else if e.XMLName.Local == "iq" {
				c.stray.Add(1)
			}
		}
	}()
	return c
}

func (c *client) close() { c.p.Close() }

// send writes raw and returns the stanza that comes back with id (or an error after d).
func (c *client) send(raw, id string, d time.Duration) (*xmpptest.Elem, error) {
	ch := make(chan *xmpptest.Elem, 1)
	c.mu.Lock()
	c.waits[id] = ch
	c.mu.Unlock()
	defer func() { c.mu.Lock(); delete(c.waits, id); c.mu.Unlock() }()
	// context.Background: see xmpptest.Managing.SendAsync.
	if err := c.p.S.Send(context.Background(), xmpptest.Tokens(raw)); err != nil {
		return nil, err
	}
	select {
	case e := <-ch:
		return e, nil
	case <-c.closed:
		return nil, errors.New("stream ended")
	case <-time.After(d):
		return nil, fmt.Errorf("no answer to %s within %v", id, d)
	}
}

func (c *client) nextID(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, c.name, c.seq.Add(1))
}

// iq sends an IQ get in ns to the server (delegated if a rule says so).
func (c *client) iq(ns string, d time.Duration) (*xmpptest.Elem, error) {
	id := c.nextID("iq")
	return c.send(fmt.Sprintf(`<iq type='get' id='%s' to='localhost'><query xmlns='%s'/></iq>`, id, ns), id, d)
}

// expectAnswer checks that an IQ in ns is answered by the component connection label.
func expectAnswer(c *client, ns, label string) error {
	r, err := c.iq(ns, 10*time.Second)
	if err != nil {
		return err
	}
	if r.Attr("type") != "result" {
		return fmt.Errorf("%s", r)
	}
	if a := r.Child("answered"); a == nil || a.Attr("by") != label {
		return fmt.Errorf("not answered by %s: %s", label, r)
	}
	return nil
}

// message sends a chat message from a to b's full JID and waits for it at b.
func message(a, b *client) error {
	id := a.nextID("msg")
	ch := make(chan *xmpptest.Elem, 1)
	b.mu.Lock()
	b.waits[id] = ch
	b.mu.Unlock()
	defer func() { b.mu.Lock(); delete(b.waits, id); b.mu.Unlock() }()
	raw := fmt.Sprintf(`<message type='chat' id='%s' to='%s'><body>hello</body></message>`, id, b.p.S.LocalAddr())
	if err := a.p.S.Send(context.Background(), xmpptest.Tokens(raw)); err != nil {
		return err
	}
	select {
	case m := <-ch:
		if m.Attr("type") == "error" {
			return fmt.Errorf("%s", m)
		}
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("message not delivered within 5s")
	}
}

// --- IQ traffic during a change ---

type sample struct {
	id   string
	sent time.Time
	ok   bool   // a result from the component
	cond string // the error condition otherwise
	err  error  // no answer at all
}

type traffic struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	out   map[string][]sample
}

// startTraffic makes every client send IQs in ns, one at a time, every 50ms.
func startTraffic(clients []*client, ns string) *traffic {
	tr := &traffic{stopc: make(chan struct{}), out: map[string][]sample{}}
	for _, c := range clients {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for {
				select {
				case <-tr.stopc:
					return
				case <-time.After(50 * time.Millisecond):
				}
				s := sample{sent: time.Now()}
				r, err := c.iq(ns, 10*time.Second)
				s.id = fmt.Sprintf("#%d", c.seq.Load())
				switch {
				case err != nil:
					s.err = err
				case r.Attr("type") == "result" && r.Child("answered") != nil:
					s.ok = true
				default:
					s.cond = r.ErrorCondition()
				}
				tr.mu.Lock()
				tr.out[c.name] = append(tr.out[c.name], s)
				tr.mu.Unlock()
			}
		}()
	}
	return tr
}

func (tr *traffic) stop() map[string][]sample {
	close(tr.stopc)
	tr.wg.Wait()
	return tr.out
}

// --- a component connection (managing entity) that answers every delegated IQ ---

type comp struct {
	label    string
	p        *xmpptest.Peer
	closed   chan struct{}
	forwards atomic.Int64

	mu  sync.Mutex
	ads []map[string]bool // the namespaces of each advertisement received
}

// dialComp connects the component, retrying for up to d; t fails, the connection lives
// as long as top.
func dialComp(t, top *testing.T, n sbNode, label string, d time.Duration) *comp {
	t.Helper()
	var p *xmpptest.Peer
	eventually(t, d, "component "+label, func() error {
		var err error
		p, err = xmpptest.DialComponent(top, n.comp, componentJID, secret)
		return err
	})
	m := &comp{label: label, p: p, closed: make(chan struct{})}
	go m.loop()
	return m
}

func (m *comp) close() { m.p.Close() }

func (m *comp) adverts() []map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ads)
}

func (m *comp) send(raw string) {
	// Errors are not the test's: the connection may be cut on purpose.
	_ = m.p.S.Send(context.Background(), xmpptest.Tokens(raw))
}

func (m *comp) loop() {
	defer close(m.closed)
	for e := range m.p.In {
		switch {
		case e.XMLName.Local == "message" && e.Child("delegation") != nil:
			ad := map[string]bool{}
			for _, d := range e.Child("delegation").Nodes {
				if d.XMLName.Local == "delegated" {
					ad[d.Attr("namespace")] = true
				}
			}
			m.mu.Lock()
			m.ads = append(m.ads, ad)
			m.mu.Unlock()
		case e.XMLName.Local == "iq" && e.Child("delegation") != nil:
			var inner *xmpptest.Elem
			if fw := e.Child("delegation").Child("forwarded"); fw != nil {
				inner = fw.Child("iq")
			}
			if inner == nil {
				continue
			}
			m.forwards.Add(1)
			m.send(fmt.Sprintf(`<iq type='result' from='%s' to='%s' id='%s'><delegation xmlns='urn:xmpp:delegation:2'>`+
				`<forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='%s' to='%s'>`+
				`<answered xmlns='urn:example:compose' by='%s'/></iq></forwarded></delegation></iq>`,
				componentJID, e.Attr("from"), e.Attr("id"), inner.Attr("id"), inner.Attr("from"), m.label))
		case e.XMLName.Local == "iq" && e.Attr("type") == "get" && e.Child("query") != nil:
			// disco#info on a delegation nesting node: no extra features.
			m.send(fmt.Sprintf(`<iq type='result' from='%s' to='%s' id='%s'><query xmlns='http://jabber.org/protocol/disco#info' node='%s'/></iq>`,
				componentJID, e.Attr("from"), e.Attr("id"), e.Child("query").Attr("node")))
		}
	}
}
