package actors

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-im/switchboard/blocking"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Hot-path benchmarks: the routing decision as a reader goroutine makes it, and the
// session actor's writing. A real protoactor system; connections are in-memory sinks, so
// no etcd and no sockets are involved.

const (
	benchNS     = "urn:example:bench"
	benchDomain = "bench.localhost"
)

// sinkConn is a net.Conn that swallows writes and blocks reads until closed.
type sinkConn struct {
	written atomic.Int64
	writes  atomic.Int64
	done    chan struct{}
	closed  atomic.Bool
}

func newSink() *sinkConn { return &sinkConn{done: make(chan struct{})} }

func (c *sinkConn) Read([]byte) (int, error) { <-c.done; return 0, net.ErrClosed }
func (c *sinkConn) Write(p []byte) (int, error) {
	c.written.Add(int64(len(p)))
	c.writes.Add(1)
	return len(p), nil
}
func (c *sinkConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		close(c.done)
	}
	return nil
}
func (c *sinkConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5222} }
func (c *sinkConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *sinkConn) SetDeadline(time.Time) error      { return nil }
func (c *sinkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *sinkConn) SetWriteDeadline(time.Time) error { return nil }

type everyAccount struct{}

func (everyAccount) Exists(string, string) bool { return true }

type fixedRules struct{ t *delegation.Table }

func (f fixedRules) Table(host string) *delegation.Table {
	if host == f.t.Host {
		return f.t
	}
	return nil
}

type benchEnv struct {
	r     *Router
	sys   *actor.ActorSystem
	conns []*sinkConn
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	quiet := slog.New(slog.DiscardHandler)
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	tbl := delegation.NewTable("localhost", map[string]delegation.Rule{benchNS: {JID: benchDomain}})
	// Some users have blocklists (XEP-0191), as in a real deployment; the benchmarked
	// ones have none, as most users: the blocking stage looks them up and lets them pass.
	blocks := blocking.NewCache(nil, nil)
	for i := range 1000 {
		blocks.Set(fmt.Sprintf("user%d@localhost", i), []string{"spam@example.org", "example.net"})
	}
	r := NewRouter(Config{
		System:   sys,
		Log:      quiet,
		Limits:   Limits{MaxSendQueue: 1 << 40, WriteTimeout: time.Minute},
		Accounts: everyAccount{},
		Hosts:    []string{"localhost"},
		Components: map[string]ComponentOptions{
			benchDomain: {DelegationNS: delegation.NS2, Balance: "round-robin"},
		},
		NodeID:     "bench",
		Blocklists: blocks,
		Delegation: &Delegation{
			Rules:   fixedRules{tbl},
			Disco:   delegation.NewDiscoCache(),
			Metrics: delegation.NewMetrics(prometheus.NewRegistry()),
			Timeout: time.Hour,
		},
	})
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{r: r, sys: sys}
	b.Cleanup(func() {
		for _, c := range e.conns {
			_ = c.Close()
		}
		sys.Shutdown()
	})
	return e
}

func (e *benchEnv) conn() *xmpp.Conn {
	sc := newSink()
	e.conns = append(e.conns, sc)
	return xmpp.NewConn(sc, 1<<16, true)
}

func (e *benchEnv) client(local, res string) *Session {
	c := e.conn()
	c.Host, c.User = "localhost", local
	s := e.r.newSession(KindC2S, c)
	s.Host, s.Local, s.Res = "localhost", local, res
	s.Bare = local + "@localhost"
	s.Full = s.Bare + "/" + res
	e.r.users.bindUser(s)
	return s
}

func (e *benchEnv) component(domain string) *Session {
	c := e.conn()
	c.Host = domain
	s := e.r.newSession(KindComponent, c)
	s.Host, s.Bare, s.Full = domain, domain, domain
	e.r.comps.addComponent(s)
	return s
}

// drain waits until the session actors have written everything queued.
func drain(b *testing.B, ss ...*Session) {
	deadline := time.Now().Add(time.Minute)
	for _, s := range ss {
		for s.queued.Load() != 0 {
			if time.Now().After(deadline) {
				b.Fatalf("session %s did not drain", s.Full)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func envelope(b testing.TB, ns, raw string) *xmpp.Envelope {
	b.Helper()
	rd := xmpp.NewReader(strings.NewReader("<stream:stream xmlns='"+ns+"' xmlns:stream='"+xmpp.NSStream+"'>"+raw), 1<<16)
	if _, err := rd.ReadHeader(); err != nil {
		b.Fatal(err)
	}
	env, err := rd.Next()
	if err != nil {
		b.Fatal(err)
	}
	return env
}

// A chat message from one local user to another's full JID: stamp from, look up the
// session, queue the bytes on its actor.
func BenchmarkRouteMessageFullJID(b *testing.B) {
	e := newBenchEnv(b)
	alice, bob := e.client("alice", "r1"), e.client("bob", "r2")
	env := envelope(b, xmpp.NSClient, `<message to='bob@localhost/r2' id='m1' type='chat'><body>Hello, this is a typical short chat message.</body></message>`)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.r.Route(alice, alice.Full, env)
	}
	drain(b, bob)
}

// A client's IQ in a delegated namespace to the server: rule lookup, pending entry (with
// its timer), inner rewrite with xmlns='jabber:client', wrapping, queueing to the component.
func BenchmarkRouteDelegatedIQ(b *testing.B) {
	e := newBenchEnv(b)
	alice := e.client("alice", "r1")
	comp := e.component(benchDomain)
	env := envelope(b, xmpp.NSClient, `<iq type='get' to='localhost' id='q0.123'><query xmlns='`+benchNS+`'/></iq>`)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		e.r.Route(alice, alice.Full, env)
		if i++; i%4096 == 0 {
			b.StopTimer()
			e.r.del.tracker.FailAll() // as if answered: keep the tracker at its steady-state size
			b.StartTimer()
		}
	}
	drain(b, comp)
	e.r.del.tracker.FailAll()
}

// The managing entity's answer to a forwarded IQ: tracker lookup, reply validation,
// unwrapping, readdressing, queueing to the requester.
func BenchmarkRouteDelegatedReply(b *testing.B) {
	e := newBenchEnv(b)
	alice := e.client("alice", "r1")
	comp := e.component(benchDomain)
	key := e.r.comps.sessionKey(comp)
	const batch = 1024
	envs := make([]*xmpp.Envelope, batch)
	ids := make([]string, batch)
	for i := range envs {
		ids[i] = fmt.Sprintf("sbd:bench:%016x", i)
		envs[i] = envelope(b, xmpp.NSComponent, `<iq type='result' from='`+benchDomain+`' to='localhost' id='`+ids[i]+`'>`+
			`<delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'>`+
			`<iq xmlns='jabber:client' type='result' id='q0.123' to='alice@localhost/r1'/></forwarded></delegation></iq>`)
	}
	add := func() {
		for _, id := range ids {
			e.r.del.tracker.Add(&delegation.Pending[*Session]{Request: delegation.Request{OuterID: id, Host: "localhost",
				Namespace: benchNS, Entity: benchDomain, Via: key, From: alice.Full, OrigID: "q0.123", OrigTo: "localhost"},
				Requester: alice})
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if i%batch == 0 {
			b.StopTimer()
			e.r.del.tracker.FailAll()
			add()
			b.StartTimer()
		}
		e.r.Route(comp, benchDomain, envs[i%batch])
		i++
	}
	drain(b, alice)
	if n := e.r.del.tracker.Len(); n >= batch {
		b.Fatalf("replies were not matched: %d pending", n)
	}
}

// Session write: Send (queue accounting + actor mailbox) and the actor's buffered write,
// flushed when its mailbox runs empty, to a connection that swallows everything.
func BenchmarkSessionWrite(b *testing.B) {
	e := newBenchEnv(b)
	bob := e.client("bob", "r2")
	data := []byte(`<message from='alice@localhost/r1' to='bob@localhost/r2' id='m1' type='chat'><body>Hello, this is a typical short chat message.</body></message>`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bob.Send(data)
	}
	drain(b, bob)
	b.StopTimer()
	sink := e.conns[len(e.conns)-1]
	if w := sink.writes.Load(); w > 0 {
		b.ReportMetric(float64(sink.written.Load())/float64(w), "bytes/write")
	}
}

// Many reader goroutines writing to one session (e.g. a busy component connection).
func BenchmarkSessionWriteParallel(b *testing.B) {
	e := newBenchEnv(b)
	comp := e.component(benchDomain)
	data := []byte(`<iq type='get' id='sbd:bench:0123456789abcdef' from='localhost' to='bench.localhost'><delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='get' id='q0.123' from='alice@localhost/r1' to='localhost'><query xmlns='urn:example:bench'/></iq></forwarded></delegation></iq>`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			comp.Send(data)
		}
	})
	drain(b, comp)
}

// What shaping costs a client's reader per stanza (limits.client_*): two token-bucket
// reservations. The rates are high enough that the buckets never run dry.
func BenchmarkShaper(b *testing.B) {
	lim := Limits{ClientBytes: 1e12, ClientStanzas: 1e12, ClientBurst: time.Second}
	var sh shaper
	for b.Loop() {
		if sh.delay(lim, 200) > 0 {
			b.Fatal("waited")
		}
	}
}
