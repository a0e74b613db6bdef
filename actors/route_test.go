package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/roster"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Unit tests of the routing decision, stage by stage: a real Router and real session
// actors on an in-process actor system, but no etcd and no sockets. Sessions write into
// recording connections; the directory of users and components is this node's own (or,
// for the cross-node cases, a fake membership that gives users to another node and a link
// that records what would cross); accounts and delegation rules are fixed tables.

const (
	tHost    = "example.test"
	tComp    = "pubsub.example.test"
	tOffComp = "archive.example.test" // configured, never connected
	nsDeleg  = "urn:example:delegated"
	nsFilt   = "urn:example:filtered"
	nsPrivd  = "urn:example:privileged"
)

// recConn is a net.Conn that records what is written and blocks reads until closed.
type recConn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	done   chan struct{}
	closed sync.Once
}

func (c *recConn) Read([]byte) (int, error) { <-c.done; return 0, net.ErrClosed }
func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}
func (c *recConn) Close() error                     { c.closed.Do(func() { close(c.done) }); return nil }
func (c *recConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5222} }
func (c *recConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *recConn) SetDeadline(time.Time) error      { return nil }
func (c *recConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recConn) SetWriteDeadline(time.Time) error { return nil }

// take returns what was written since the last take.
func (c *recConn) take() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.buf.String()
	c.buf.Reset()
	return s
}

type accountSet map[string]bool // "local@host"

func (a accountSet) Exists(host, local string) bool { return a[local+"@"+host] }

// ownersCluster gives the users listed in remote to node "n2"; everything else is owned here.
type ownersCluster struct{ remote map[string]bool }

func (f ownersCluster) AddComponent(cluster.ComponentEntry)          {}
func (f ownersCluster) RemoveComponent(cluster.ComponentEntry, bool) {}
func (f ownersCluster) Members() []cluster.Member                    { return nil }
func (f ownersCluster) Owner(key string) cluster.Member {
	if f.remote[key] {
		return cluster.Member{ID: "n2"}
	}
	return cluster.Member{ID: "n1"}
}

// recLink records what the router sends across nodes.
type recLink struct {
	mu   sync.Mutex
	sent []sentMsg
}

type sentMsg struct {
	node string     // to a node's router actor
	pid  *actor.PID // to an actor
	msg  proto.Message
}

func (l *recLink) add(m sentMsg) {
	l.mu.Lock()
	l.sent = append(l.sent, m)
	l.mu.Unlock()
}

func (l *recLink) ToNode(node string, msg proto.Message) { l.add(sentMsg{node: node, msg: msg}) }
func (l *recLink) Request(node string, msg proto.Message, _ time.Duration) (any, error) {
	l.add(sentMsg{node: node, msg: msg})
	return &pb.Ack{}, nil
}
func (l *recLink) Send(pid *actor.PID, msg proto.Message) { l.add(sentMsg{pid: pid, msg: msg}) }
func (l *recLink) Deliver(pid *actor.PID, b []byte) {
	l.add(sentMsg{pid: pid, msg: &pb.Deliver{Data: b}})
}
func (l *recLink) SendAnswers(node string, answers []*pb.DelegationAnswer) {
	l.add(sentMsg{node: node, msg: &pb.DelegationAnswers{Answers: answers}})
}

func (l *recLink) take() []sentMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.sent
	l.sent = nil
	return out
}

type routeEnv struct {
	t     *testing.T
	r     *Router
	link  *recLink
	conns map[*Session]*recConn
}

func newRouteEnv(t *testing.T, remoteUsers ...string) *routeEnv {
	t.Helper()
	return newRouteEnvWith(t, nil, remoteUsers...)
}

// newRouteEnvWith is newRouteEnv with roster storage (nil: none).
func newRouteEnvWith(t *testing.T, rosters Rosters, remoteUsers ...string) *routeEnv {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	tbl := delegation.NewTable(tHost, map[string]delegation.Rule{
		nsDeleg: {JID: tComp},
		nsFilt:  {JID: tComp, Filtering: []string{"node"}},
	})
	e := &routeEnv{t: t, conns: map[*Session]*recConn{}}
	var (
		link Link    // nil: standalone
		cl   Cluster // nil: standalone
	)
	if len(remoteUsers) > 0 {
		fc := ownersCluster{remote: map[string]bool{}}
		for _, u := range remoteUsers {
			fc.remote[u] = true
		}
		e.link = &recLink{}
		link, cl = e.link, fc
	}
	r := NewRouter(Config{
		System:   sys,
		Log:      quiet,
		Link:     link,
		Cluster:  cl,
		Rosters:  rosters,
		Limits:   Limits{MaxSendQueue: 1 << 20, WriteTimeout: time.Minute},
		Accounts: accountSet{"alice@" + tHost: true, "bob@" + tHost: true, "carol@" + tHost: true},
		Hosts:    []string{tHost},
		Components: map[string]ComponentOptions{
			tComp:    {Privileges: config.Privileges{Message: "outgoing", IQ: map[string]string{nsPrivd: "get"}}},
			tOffComp: {},
		},
		Version: "test",
		NodeID:  "n1",
		Delegation: &Delegation{
			Rules:   fixedRules{tbl},
			Disco:   delegation.NewDiscoCache(),
			Metrics: delegation.NewMetrics(prometheus.NewRegistry()),
			Timeout: time.Minute,
		},
	})
	e.r = r
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.Stop(context.Background())
		for _, c := range e.conns {
			_ = c.Close()
		}
		sys.Shutdown()
	})
	return e
}

func (e *routeEnv) session(kind SessionKind, host string) *Session {
	rc := &recConn{done: make(chan struct{})}
	c := xmpp.NewConn(rc, 1<<16, true)
	c.Host = host
	s := e.r.newSession(kind, c)
	e.conns[s] = rc
	return s
}

// client binds local@example.test/res; available ones send initial presence with priority.
func (e *routeEnv) client(local, res string, available bool, priority int) *Session {
	s := e.session(KindC2S, tHost)
	s.Host, s.Local, s.Res = tHost, local, res
	s.Bare = local + "@" + tHost
	s.Full = s.Bare + "/" + res
	e.r.users.bindUser(s)
	if available {
		e.r.Route(s, s.Full, envelope(e.t, xmpp.NSClient, "<presence><priority>"+strconv.Itoa(priority)+"</priority></presence>"))
	}
	return s
}

func (e *routeEnv) component(domain string) *Session {
	s := e.session(KindComponent, domain)
	s.Host, s.Bare, s.Full = domain, domain, domain
	e.r.comps.addComponent(s)
	return s
}

// settle waits until what was routed has been written: host actors answer server IQs on
// their own, so the sessions are drained twice around a pause.
func (e *routeEnv) settle() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for round := 0; round < 2; round++ {
		for s := range e.conns {
			for s.queued.Load() != 0 {
				if time.Now().After(deadline) {
					e.t.Fatalf("session %s did not drain", s.Full)
				}
				time.Sleep(time.Millisecond)
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// got returns what s was written since the last call.
func (e *routeEnv) got(s *Session) string { return e.conns[s].take() }

// expect polls until s was written every part of contains (10 s at most) and returns all
// it was written.
func (e *routeEnv) expect(s *Session, contains ...string) string {
	e.t.Helper()
	var all string
	deadline := time.Now().Add(10 * time.Second)
	for {
		all += e.got(s)
		missing := ""
		for _, w := range contains {
			if !strings.Contains(all, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return all
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s was written %q; want it to contain %q", s.Full, all, missing)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stanza parses raw as sender would have sent it, with the address the server vouches for.
func (e *routeEnv) send(sender *Session, raw string) {
	e.t.Helper()
	ns, from := xmpp.NSClient, sender.Full
	if sender.Kind == KindComponent {
		ns = xmpp.NSComponent
	}
	env := envelope(e.t, ns, raw)
	if sender.Kind == KindComponent {
		from = env.From
	}
	e.r.Route(sender, from, env)
}

func routingErrors(r *Router, cond string) float64 {
	var m dto.Metric
	if err := r.metrics.RoutingErrors.WithLabelValues(cond).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// world is the usual cast: alice on two resources (r1 at priority 1, r2 at 0), bob on
// one, carol an account that is offline, and the component pubsub.example.test
// connected (unless noComponent), which is delegated nsDeleg and nsFilt (filtered on
// 'node') and may send messages and nsPrivd get IQs as the host's users.
type world struct {
	*routeEnv
	alice1, alice2, bob, comp *Session
}

func newWorld(t *testing.T, noComponent bool) *world {
	return newWorldWith(t, noComponent, nil)
}

func newWorldWith(t *testing.T, noComponent bool, rosters Rosters) *world {
	e := newRouteEnvWith(t, rosters)
	w := &world{routeEnv: e}
	w.alice1 = e.client("alice", "r1", true, 1)
	w.alice2 = e.client("alice", "r2", true, 0)
	w.bob = e.client("bob", "r1", true, 0)
	if !noComponent {
		w.comp = e.component(tComp)
	}
	e.settle()
	for s := range e.conns {
		e.got(s) // presence exchanged while setting up
	}
	return w
}

func (w *world) who(name string) *Session {
	return map[string]*Session{"alice1": w.alice1, "alice2": w.alice2, "bob": w.bob, "comp": w.comp}[name]
}

// routeCase: sender sends stanza; each session named in got must be written all of its
// parts (and none of notGot's); sessions named in neither must be written nothing. errs
// are the stanza errors routing must have counted.
type routeCase struct {
	name        string
	noComponent bool
	sender      string
	stanza      string
	got         map[string][]string
	notGot      map[string][]string
	errs        map[string]float64
}

func runRouteCases(t *testing.T, cases []routeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.noComponent)
			w.send(w.who(tc.sender), tc.stanza)
			for name, parts := range tc.got {
				all := w.expect(w.who(name), parts...)
				for _, n := range tc.notGot[name] {
					if strings.Contains(all, n) {
						t.Errorf("%s was written %q; want no %q", name, all, n)
					}
				}
			}
			w.settle()
			for _, name := range []string{"alice1", "alice2", "bob", "comp"} {
				s := w.who(name)
				if s == nil {
					continue
				}
				if rest := w.got(s); rest != "" {
					if _, ok := tc.got[name]; !ok {
						t.Errorf("%s was written %q; want nothing", name, rest)
					} else {
						t.Errorf("%s was written more than expected: %q", name, rest)
					}
				}
			}
			for cond, n := range tc.errs {
				if got := routingErrors(w.r, cond); got != n {
					t.Errorf("routing errors %s = %v, want %v", cond, got, n)
				}
			}
		})
	}
}

const wrapped = "<delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'>"

func TestRouteDelegation(t *testing.T) {
	runRouteCases(t, []routeCase{
		{name: "forward an IQ to the server", sender: "alice1",
			stanza: `<iq type='get' to='example.test' id='d1'><query xmlns='` + nsDeleg + `'/></iq>`,
			got: map[string][]string{"comp": {"from='example.test' to='" + tComp + "'", "id='sbd:n1:", wrapped,
				"<iq xmlns='jabber:client' type='get' id='d1' from='alice@example.test/r1' to='example.test'>"}}},
		{name: "forward an IQ without to", sender: "alice1",
			stanza: `<iq type='set' id='d2'><query xmlns='` + nsDeleg + `'/></iq>`,
			got:    map[string][]string{"comp": {wrapped, "id='d2'", "from='alice@example.test/r1'"}}},
		{name: "forward an IQ to an account's bare JID", sender: "alice1",
			stanza: `<iq type='get' to='bob@example.test' id='d3'><query xmlns='` + nsDeleg + `'/></iq>`,
			got:    map[string][]string{"comp": {wrapped, "id='d3' from='alice@example.test/r1' to='bob@example.test'>"}}},
		{name: "filtered: with the attribute", sender: "alice1",
			stanza: `<iq type='get' to='example.test' id='f1'><query xmlns='` + nsFilt + `' node='n'/></iq>`,
			got:    map[string][]string{"comp": {wrapped, "id='f1'"}}},
		{name: "filtered: without the attribute the server answers", sender: "alice1",
			stanza: `<iq type='get' to='example.test' id='f2'><query xmlns='` + nsFilt + `'/></iq>`,
			got:    map[string][]string{"alice1": {"type='error'", "id='f2'", "<service-unavailable"}}},
		{name: "the managing entity's own IQ is not forwarded", sender: "comp",
			stanza: `<iq type='get' from='` + tComp + `' to='example.test' id='m1'><query xmlns='` + nsDeleg + `'/></iq>`,
			got:    map[string][]string{"comp": {"type='error'", "id='m1'", "<service-unavailable"}},
			notGot: map[string][]string{"comp": {"<delegation"}}},
		{name: "results are not delegated", sender: "alice1",
			stanza: `<iq type='result' to='example.test' id='r1'><query xmlns='` + nsDeleg + `'/></iq>`},
		{name: "no component connected", noComponent: true, sender: "alice1",
			stanza: `<iq type='get' to='example.test' id='u1'><query xmlns='` + nsDeleg + `'/></iq>`,
			got:    map[string][]string{"alice1": {"type='error'", "id='u1'", "from='example.test'", "<service-unavailable"}},
			errs:   map[string]float64{"service-unavailable": 1}},
		{name: "not an account: the server answers", sender: "alice1",
			stanza: `<iq type='get' to='dave@example.test' id='n1'><query xmlns='` + nsDeleg + `'/></iq>`,
			got:    map[string][]string{"alice1": {"type='error'", "id='n1'", "<service-unavailable"}}},
	})
}

// The answer to a forwarded IQ goes back to the requester as if the server had answered;
// an answer that does not match (wrong inner id) becomes service-unavailable.
func TestRouteManagingReply(t *testing.T) {
	for _, tc := range []struct {
		name, innerID string
		want          []string
	}{
		{"valid", "d1", []string{"type='result' id='d1' from='example.test' to='alice@example.test/r1'"}},
		{"invalid", "other", []string{"type='error'", "id='d1'", "<service-unavailable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, false)
			w.send(w.alice1, `<iq type='get' to='example.test' id='d1'><query xmlns='`+nsDeleg+`'/></iq>`)
			fwd := w.expect(w.comp, wrapped)
			i := strings.Index(fwd, "id='sbd:")
			outer := fwd[i+4 : i+4+strings.IndexByte(fwd[i+4:], '\'')]
			w.send(w.comp, `<iq type='result' from='`+tComp+`' to='example.test' id='`+outer+`'>`+wrapped+
				`<iq xmlns='jabber:client' type='result' id='`+tc.innerID+`' to='alice@example.test/r1'/></forwarded></delegation></iq>`)
			w.expect(w.alice1, tc.want...)
			if n := w.r.del.tracker.Len(); n != 0 {
				t.Fatalf("%d IQs still pending", n)
			}
		})
	}
}

const privMsg = `<message from='` + tComp + `' to='example.test' id='pm1'><privilege xmlns='urn:xmpp:privilege:2'>` +
	`<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='%s' to='bob@example.test/r1' type='chat' id='in1'>` +
	`<body>hi</body></message></forwarded></privilege></message>`

const privIQ = `<iq type='get' from='` + tComp + `' to='%s' id='pi1'><privileged_iq xmlns='urn:xmpp:privilege:2'>` +
	`<iq xmlns='jabber:client' type='get' id='in2' to='example.test'><query xmlns='%s'/></iq></privileged_iq></iq>`

func TestRoutePrivileges(t *testing.T) {
	runRouteCases(t, []routeCase{
		{name: "message as a user", sender: "comp", stanza: fmt.Sprintf(privMsg, "alice@example.test"),
			got: map[string][]string{"bob": {"from='alice@example.test'", "<body>hi</body>"}}},
		{name: "message as someone who is not a user", sender: "comp", stanza: fmt.Sprintf(privMsg, "mallory@evil.test"),
			got: map[string][]string{"comp": {"type='error'", "id='pm1'", "<forbidden"}}, errs: map[string]float64{"forbidden": 1}},
		{name: "message from a client", sender: "alice1", stanza: strings.Replace(fmt.Sprintf(privMsg, "bob@example.test"), " from='"+tComp+"'", "", 1),
			got: map[string][]string{"alice1": {"type='error'", "<forbidden"}}},
		{name: "IQ as a user, in a granted namespace", sender: "comp", stanza: fmt.Sprintf(privIQ, "bob@example.test", nsPrivd),
			// The server answers the inner IQ (it does not know nsPrivd); the answer comes
			// back to the component wrapped, from the user's bare JID.
			got: map[string][]string{"comp": {"<iq type='result' id='pi1' from='bob@example.test' to='" + tComp + "'>",
				"<privilege xmlns='urn:xmpp:privilege:2'><forwarded", "id='in2'", "<service-unavailable"}}},
		{name: "IQ in a namespace not granted", sender: "comp", stanza: fmt.Sprintf(privIQ, "bob@example.test", "urn:example:other"),
			got: map[string][]string{"comp": {"type='error'", "id='pi1'", "<forbidden"}}},
		{name: "IQ to the server instead of a user", sender: "comp", stanza: fmt.Sprintf(privIQ, "example.test", nsPrivd),
			got: map[string][]string{"comp": {"type='error'", "id='pi1'", "<forbidden"}}},
	})
}

func TestRouteServerIQs(t *testing.T) {
	iq := func(to, id, payload string) string {
		return `<iq type='get' to='` + to + `' id='` + id + `'>` + payload + `</iq>`
	}
	runRouteCases(t, []routeCase{
		{name: "ping", sender: "alice1", stanza: iq("example.test", "p1", "<ping xmlns='urn:xmpp:ping'/>"),
			got: map[string][]string{"alice1": {"type='result'", "id='p1'", "from='example.test'"}}},
		{name: "version", sender: "alice1", stanza: iq("example.test", "v1", "<query xmlns='jabber:iq:version'/>"),
			got: map[string][]string{"alice1": {"<name>Switchboard</name><version>test</version>"}}},
		{name: "disco#info", sender: "alice1", stanza: iq("example.test", "i1", "<query xmlns='http://jabber.org/protocol/disco#info'/>"),
			got: map[string][]string{"alice1": {"category='server'", "var='urn:xmpp:ping'", "var='urn:xmpp:delegation:2'"}}},
		{name: "disco#items lists the components", sender: "alice1", stanza: iq("example.test", "t1", "<query xmlns='http://jabber.org/protocol/disco#items'/>"),
			got: map[string][]string{"alice1": {"<item jid='" + tOffComp + "'/>", "<item jid='" + tComp + "'/>"}}},
		{name: "unknown namespace", sender: "alice1", stanza: iq("example.test", "x1", "<query xmlns='urn:example:unknown'/>"),
			got: map[string][]string{"alice1": {"type='error'", "<service-unavailable"}}},
		{name: "disco#info of an account", sender: "bob", stanza: iq("alice@example.test", "a1", "<query xmlns='http://jabber.org/protocol/disco#info'/>"),
			got: map[string][]string{"bob": {"from='alice@example.test'", "category='account'"}}},
		{name: "own roster without storage", sender: "alice1", stanza: `<iq type='get' id='ro1'><query xmlns='jabber:iq:roster'/></iq>`,
			got: map[string][]string{"alice1": {"type='result'", "<query xmlns='jabber:iq:roster'/>"}}},
		{name: "someone else's roster", sender: "alice1", stanza: iq("bob@example.test", "ro2", "<query xmlns='jabber:iq:roster'/>"),
			got: map[string][]string{"alice1": {"type='error'", "<forbidden"}}},
	})
}

func TestRouteDelivery(t *testing.T) {
	msg := func(to, typ string) string {
		return `<message to='` + to + `' type='` + typ + `' id='m1'><body>b</body></message>`
	}
	runRouteCases(t, []routeCase{
		{name: "full JID", sender: "alice1", stanza: msg("bob@example.test/r1", "chat"),
			got: map[string][]string{"bob": {"from='alice@example.test/r1'", "<body>b</body>"}}},
		{name: "bare JID: the highest priority", sender: "bob", stanza: msg("alice@example.test", "chat"),
			got: map[string][]string{"alice1": {"from='bob@example.test/r1'", "<body>b</body>"}}},
		{name: "bare JID, headline: every resource", sender: "bob", stanza: msg("alice@example.test", "headline"),
			got: map[string][]string{"alice1": {"<body>b</body>"}, "alice2": {"<body>b</body>"}}},
		{name: "message to a resource that is not online: as to the bare JID", sender: "bob", stanza: msg("alice@example.test/gone", "chat"),
			got: map[string][]string{"alice1": {"<body>b</body>"}}},
		{name: "IQ to a resource that is not online", sender: "bob",
			stanza: `<iq type='get' to='alice@example.test/gone' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>`,
			got:    map[string][]string{"bob": {"type='error'", "id='q1'", "<service-unavailable"}}},
		{name: "an account nobody is online for", sender: "alice1", stanza: msg("carol@example.test", "chat"),
			got: map[string][]string{"alice1": {"type='error'", "from='carol@example.test'", "<service-unavailable"}}},
		{name: "directed presence", sender: "alice1", stanza: `<presence to='bob@example.test/r1'/>`,
			got: map[string][]string{"bob": {"<presence", "from='alice@example.test/r1'"}}},
		{name: "without roster storage, a subscription request goes on as presence", sender: "alice1",
			stanza: `<presence type='subscribe' to='bob@example.test'/>`,
			got:    map[string][]string{"bob": {"type='subscribe'", "from='alice@example.test/r1'"}}},
		{name: "a message without to goes to the own bare JID", sender: "alice2", stanza: `<message type='chat' id='s1'><body>note</body></message>`,
			got: map[string][]string{"alice1": {"<body>note</body>"}}},
		{name: "to a connected component", sender: "alice1", stanza: msg(tComp, "chat"),
			got: map[string][]string{"comp": {"from='alice@example.test/r1'", "to='" + tComp + "'"}}},
	})
}

func TestRouteErrors(t *testing.T) {
	runRouteCases(t, []routeCase{
		{name: "malformed to", sender: "alice1", stanza: `<message to='a@b@c' id='e1'/>`,
			got: map[string][]string{"alice1": {"type='error'", "<jid-malformed"}}, errs: map[string]float64{"jid-malformed": 1}},
		{name: "a resource of the domain", sender: "alice1", stanza: `<message to='example.test/x' id='e2'/>`,
			got: map[string][]string{"alice1": {"from='example.test/x'", "<service-unavailable"}}},
		{name: "a remote domain", sender: "alice1", stanza: `<message to='someone@elsewhere.test' id='e3'/>`,
			got:  map[string][]string{"alice1": {"from='someone@elsewhere.test'", "<remote-server-not-found"}},
			errs: map[string]float64{"remote-server-not-found": 1}},
		{name: "a configured component that is not connected", sender: "alice1", stanza: `<message to='` + tOffComp + `' id='e4'/>`,
			got: map[string][]string{"alice1": {"<service-unavailable"}}},
		{name: "presence to a remote domain is dropped", sender: "alice1", stanza: `<presence to='someone@elsewhere.test'/>`,
			errs: map[string]float64{"remote-server-not-found": 0}},
		{name: "a component must address its stanzas", sender: "comp", stanza: `<message from='` + tComp + `' id='e5'/>`,
			got: map[string][]string{"comp": {"type='error'", "<bad-request"}}, errs: map[string]float64{"bad-request": 1}},
		{name: "messages to the bare domain are dropped", sender: "alice1", stanza: `<message to='example.test' id='e6'><body>x</body></message>`},
	})
}

// Across nodes: a user owned by another node is reached through that node's router, and
// a component connected to another node through its session actor there (fake membership,
// recording link).
func TestRouteCrossNode(t *testing.T) {
	e := newRouteEnv(t, "bob@"+tHost)
	alice := e.client("alice", "r1", true, 0)
	e.settle()
	e.link.take()

	e.send(alice, `<message to='bob@example.test' type='chat' id='x1'><body>over there</body></message>`)
	sent := e.link.take()
	if len(sent) != 1 {
		t.Fatalf("sent %d messages to other nodes, want 1: %v", len(sent), sent)
	}
	us, ok := sent[0].msg.(*pb.UserStanza)
	if !ok || sent[0].node != "n2" {
		t.Fatalf("sent %T to node %q, want a UserStanza to n2", sent[0].msg, sent[0].node)
	}
	if us.From != alice.Full || !strings.Contains(string(us.Stanza), "<body>over there</body>") {
		t.Fatalf("UserStanza from %q: %s", us.From, us.Stanza)
	}

	e.r.ComponentsChanged([]cluster.ComponentEntry{{Domain: tComp, Node: "n2", Address: "n2:8946", PID: "comp1"}}, nil)
	e.link.take() // disco nesting queries
	e.send(alice, `<iq type='get' to='example.test' id='d1'><query xmlns='`+nsDeleg+`'/></iq>`)
	sent = e.link.take()
	if len(sent) != 1 || sent[0].pid == nil || sent[0].pid.Id != "comp1" {
		t.Fatalf("sent %v, want one Deliver to the component's session on n2", sent)
	}
	if d, ok := sent[0].msg.(*pb.Deliver); !ok || !strings.Contains(string(d.Data), wrapped) {
		t.Fatalf("sent %v, want the wrapped IQ", sent[0].msg)
	}
	// The component's connection goes away with its node: the requester hears at once.
	e.r.ComponentsChanged(nil, []cluster.ComponentEntry{{Domain: tComp, Node: "n2", Address: "n2:8946", PID: "comp1"}})
	e.expect(alice, "type='error'", "id='d1'", "<service-unavailable")
}

// Every namespace the domain's disco#info advertises is answered (the features come from
// the same handler map that answers).
func TestAdvertisedServerFeaturesAnswer(t *testing.T) {
	if len(serverFeatures) < 4 {
		t.Fatalf("server features: %v", serverFeatures)
	}
	w := newWorld(t, true)
	for i, ns := range serverFeatures {
		id := "f" + strconv.Itoa(i)
		typ, elem := "get", domainIQs[ns].elem
		if !domainIQs[ns].get {
			typ = "set"
		}
		switch {
		case ns == NSBlocking:
			elem = "blocklist" // XEP-0191: blocklist (get), block or unblock (sets)
		case elem == "*":
			elem = "enable" // carbons: enable or disable
		}
		w.send(w.alice1, `<iq type='`+typ+`' to='example.test' id='`+id+`'><`+elem+` xmlns='`+ns+`'/></iq>`)
		got := w.expect(w.alice1, "id='"+id+"'")
		if !strings.Contains(got, "type='result'") {
			t.Errorf("%s: %s", ns, got)
		}
	}
	w.send(w.alice1, `<iq type='get' to='example.test' id='i'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	info := w.expect(w.alice1, "id='i'")
	for _, ns := range serverFeatures {
		if !strings.Contains(info, "var='"+ns+"'") {
			t.Errorf("disco#info does not advertise %s: %s", ns, info)
		}
	}
}

// memRosters is roster storage in memory, with etcd's semantics as the router sees them:
// a version per write, nothing stored for an empty roster.
type memRosters struct {
	mu  sync.Mutex
	m   map[string]roster.Roster
	rev int64
}

func (s *memRosters) copyOf(k string) *roster.Roster {
	r := s.m[k]
	b, _ := json.Marshal(r)
	var c roster.Roster
	_ = json.Unmarshal(b, &c)
	c.Ver = r.Ver
	return &c
}

func (s *memRosters) Get(_ context.Context, host, local string) (*roster.Roster, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.copyOf(local + "@" + host), nil
}

func (s *memRosters) Update(_ context.Context, host, local string, fn func(*roster.Roster) (bool, error)) (*roster.Roster, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := local + "@" + host
	r := s.copyOf(k)
	changed, err := fn(r)
	if err != nil || !changed {
		return r, false, err
	}
	s.rev++
	r.Ver = s.rev
	if s.m == nil {
		s.m = map[string]roster.Roster{}
	}
	s.m[k] = *r
	return r, true, nil
}

func (s *memRosters) item(user, contact string) roster.Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[user]
	if i := r.Find(contact); i >= 0 {
		return r.Items[i]
	}
	return roster.Item{}
}

// A subscription handshake between two users of the host (RFC 6121 §3.1): the request
// reaches the contact and changes both rosters, the approval reaches the user's
// resources, and the contact's presence follows it.
func TestRouteSubscriptions(t *testing.T) {
	ros := &memRosters{}
	w := newWorldWith(t, true, ros)
	w.send(w.alice1, `<presence type='subscribe' to='bob@example.test'/>`)
	w.expect(w.bob, "type='subscribe'", "from='alice@example.test'")
	if it := ros.item("alice@example.test", "bob@example.test"); it.Subscription != roster.SubNone || !it.Ask {
		t.Fatalf("alice's item for bob after subscribe: %+v", it)
	}
	w.send(w.bob, `<presence type='subscribed' to='alice@example.test'/>`)
	for _, s := range []*Session{w.alice1, w.alice2} {
		w.expect(s, "type='subscribed'", "from='bob@example.test'", "<presence from='bob@example.test/r1'")
	}
	if it := ros.item("alice@example.test", "bob@example.test"); it.Subscription != roster.SubTo || it.Ask {
		t.Fatalf("alice's item for bob after approval: %+v", it)
	}
	if it := ros.item("bob@example.test", "alice@example.test"); it.Subscription != roster.SubFrom {
		t.Fatalf("bob's item for alice after approval: %+v", it)
	}
	// Now subscribed to bob, alice gets his presence when it changes; carol, who is not
	// subscribed, would not.
	w.send(w.bob, `<presence><show>away</show></presence>`)
	w.expect(w.alice1, "<show>away</show>", "from='bob@example.test/r1'")
}

// limits.max_inflight_iqs: past the cap a delegated IQ is answered resource-constraint at
// once (it is not forwarded), and an answer frees a place again.
func TestRouteInflightCap(t *testing.T) {
	w := newWorld(t, false)
	w.r.SetSettings(Limits{MaxSendQueue: 1 << 20, WriteTimeout: time.Minute, InflightIQs: 2}, w.r.settings.Load().compOpts)
	iq := func(id string) string {
		return `<iq type='get' to='example.test' id='` + id + `'><query xmlns='` + nsDeleg + `'/></iq>`
	}
	w.send(w.alice1, iq("c1"))
	first := w.expect(w.comp, "id='c1'")
	w.send(w.alice1, iq("c2"))
	w.expect(w.comp, "id='c2'")
	w.send(w.alice1, iq("c3"))
	w.expect(w.alice1, "type='error'", "id='c3'", "<resource-constraint")
	if n := routingErrors(w.r, "resource-constraint"); n != 1 {
		t.Fatalf("resource-constraint counted %v times", n)
	}
	// bob has places of his own.
	w.send(w.bob, iq("b1"))
	w.expect(w.comp, "id='b1'")
	// The component answers c1: alice may send one more.
	i := strings.Index(first, "id='sbd:")
	outer := first[i+4 : i+4+strings.IndexByte(first[i+4:], '\'')]
	w.send(w.comp, `<iq type='result' from='`+tComp+`' to='example.test' id='`+outer+`'>`+wrapped+
		`<iq xmlns='jabber:client' type='result' id='c1' to='alice@example.test/r1'/></forwarded></delegation></iq>`)
	w.expect(w.alice1, "type='result'", "id='c1'")
	w.send(w.alice1, iq("c4"))
	w.expect(w.comp, "id='c4'")
	w.settle()
	if got := w.got(w.alice1); got != "" {
		t.Fatalf("alice got %q", got)
	}
}

// limits.max_sessions_per_user at the bind: the held bind result is dropped, the bind is
// answered resource-constraint and the stream ends; the account's sessions stay.
func TestBindPastSessionCap(t *testing.T) {
	w := newWorld(t, true) // alice has two sessions
	w.r.SetSettings(Limits{MaxSendQueue: 1 << 20, WriteTimeout: time.Minute, SessionsPerUser: 2}, w.r.settings.Load().compOpts)
	rc := &recConn{done: make(chan struct{})}
	t.Cleanup(func() { _ = rc.Close() })
	c := xmpp.NewConn(rc, 1<<16, true)
	c.Host, c.User = tHost, "alice"
	cr := &c2sReader{r: w.r, c: c, out: nodelink.NewOutbox(w.r.link), done: func() {}}
	bind := envelope(t, xmpp.NSClient, `<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>three</resource></bind></iq>`)
	if cr.handle(bind) {
		t.Fatal("a third session was bound")
	}
	cr.finish(nil)
	deadline := time.Now().Add(5 * time.Second)
	var out string
	for !strings.Contains(out, "</stream:stream>") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		out += rc.take()
	}
	for _, want := range []string{"id='b1'", "type='error'", "<resource-constraint", "<policy-violation", "</stream:stream>"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the refused session was written %q; want %q in it", out, want)
		}
	}
	if strings.Contains(out, "<jid>") {
		t.Fatalf("the held bind result went out: %q", out)
	}
	if n := len(w.r.users.sessions.Of("alice@" + tHost)); n != 2 {
		t.Fatalf("alice has %d sessions here, want 2", n)
	}
}
