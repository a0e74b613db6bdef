package actors

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/actors/pb"
	"github.com/switchboard-im/switchboard/cluster"
)

// fakeCluster puts every other node at this actor system's own address, so that what the
// router sends to "another node's router" lands in a local actor named like it.
type fakeCluster struct {
	addr  string
	proto int
}

func (f fakeCluster) AddComponent(cluster.ComponentEntry)    {}
func (f fakeCluster) RemoveComponent(cluster.ComponentEntry) {}
func (f fakeCluster) Remote(string) (string, bool)           { return f.addr, true }
func (f fakeCluster) Proto(string) int                       { return f.proto }
func (f fakeCluster) Owner(string) cluster.Member            { return cluster.Member{} }
func (f fakeCluster) Members() []cluster.Member              { return nil }

// Answers for a node go as one PackedAnswers, or as the newest form an older node knows
// (a rolling upgrade: a node drops what it does not know).
func TestOutboxAnswersByPeerVersion(t *testing.T) {
	for _, tc := range []struct {
		proto int
		want  []string
	}{
		{cluster.ProtoVersion, []string{"packed:a1,a2,a3"}},
		{2, []string{"packed:a1,a2,a3"}},
		{1, []string{"batch:a1,a2,a3"}},
		{0, []string{"a1", "a2", "a3"}},
	} {
		sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
		got := make(chan string, 10)
		_, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
			switch m := ctx.Message().(type) {
			case *pb.DelegationAnswer:
				got <- m.OuterId
			case *pb.DelegationAnswers:
				s := "batch:"
				for i, a := range m.Answers {
					if i > 0 {
						s += ","
					}
					s += a.OuterId
				}
				got <- s
			case *pb.PackedAnswers:
				answers, err := unpackAnswers(m.Data)
				if err != nil {
					got <- err.Error()
					return
				}
				s := "packed:"
				for i, a := range answers {
					if i > 0 {
						s += ","
					}
					s += a.outerID
				}
				got <- s
			}
		}), routerActorName)
		if err != nil {
			t.Fatal(err)
		}
		r := NewRouter(Config{System: sys, Log: slog.New(slog.DiscardHandler), NodeID: "n1", Limits: Limits{MaxSendQueue: 1 << 20, WriteTimeout: time.Second}})
		r.SetCluster(fakeCluster{addr: sys.Address(), proto: tc.proto})
		out := r.newOutbox()
		for _, id := range []string{"a1", "a2", "a3"} {
			out.answer("n2", &pb.DelegationAnswer{OuterId: id})
		}
		select {
		case m := <-got:
			t.Fatalf("proto %d: %s sent before the flush", tc.proto, m)
		case <-time.After(50 * time.Millisecond):
		}
		out.flush()
		for _, want := range tc.want {
			select {
			case m := <-got:
				if m != want {
					t.Fatalf("proto %d: got %s, want %s", tc.proto, m, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("proto %d: %s never came", tc.proto, want)
			}
		}
		r.Stop()
		sys.Shutdown()
	}
}

// PackedAnswers carry every field of every answer, empty ones and the inner stanza
// included; a cut or overlong field is an error, not a wrong answer.
func TestPackedAnswersRoundTrip(t *testing.T) {
	in := []*pb.DelegationAnswer{
		{OuterId: "sbd:n1:1", Host: "localhost", From: "pubsub.localhost", OuterType: "result", InnerType: "result",
			InnerId: "q1", InnerTo: "alice@localhost/r", InnerFrom: "localhost", Inner: []byte("<iq type='result' id='q1'/>")},
		{OuterId: "sbd:n1:2", Host: "localhost", From: "pubsub.localhost", OuterType: "error"},
		{OuterId: "sbd:n1:3", Host: "localhost", From: "pubsub.localhost", OuterType: "result", Invalid: "no <forwarded/>"},
		{OuterId: "sbd:n1:4", InnerTo: string(make([]byte, 300)), Inner: []byte(strings.Repeat("é", 200))},
	}
	data := packAnswers(nil, in)
	out, err := unpackAnswers(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d answers, want %d", len(out), len(in))
	}
	for i, a := range in {
		if out[i] != viewOf(a) {
			t.Fatalf("answer %d: got %+v, want %+v", i, out[i], viewOf(a))
		}
	}
	for _, bad := range [][]byte{data[:len(data)-1], append(append([]byte{}, data...), 5, 'x'), {0x80},
		append([]byte{byte(len(in) + 1)}, data[1:]...), append([]byte{byte(len(in) - 1)}, data[1:]...)} {
		if _, err := unpackAnswers(bad); err == nil {
			t.Fatalf("%q: no error", bad)
		}
	}
}

// Stanzas for a remote session arrive as one Deliver per flush, in the order they were
// routed, whether routed as they were (toSession) or written into the outbox's buffer
// (appendTo); a routed stanza's spare capacity is never written into; past
// outboxMaxBytes the outbox goes at once.
func TestOutboxSessionQueues(t *testing.T) {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	defer sys.Shutdown()
	got := make(chan string, 10)
	spawn := func(name string) *actor.PID {
		pid, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
			if m, ok := ctx.Message().(*pb.Deliver); ok {
				got <- name + ":" + string(m.Data)
			}
		}), name)
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	a, b := spawn("a"), spawn("b")
	r := NewRouter(Config{System: sys, Log: slog.New(slog.DiscardHandler), NodeID: "n1", Limits: Limits{MaxSendQueue: 1 << 20, WriteTimeout: time.Second}})
	defer r.Stop()
	out := r.newOutbox()
	write := func(s string) func([]byte) []byte { return func(b []byte) []byte { return append(b, s...) } }
	shared := make([]byte, 2, 64)
	copy(shared, "s1")
	out.toSession(a, shared)
	out.appendTo(a, write("w1"))
	out.appendTo(b, write("x1"))
	out.appendTo(a, write("w2"))
	out.toSession(a, []byte("s2"))
	out.appendTo(a, write("w3"))
	out.toSession(b, []byte("y1"))
	if string(shared[:cap(shared)][2:4]) != "\x00\x00" {
		t.Fatalf("the outbox wrote into a routed stanza's spare capacity: %q", shared[:4])
	}
	next := func() string {
		select {
		case m := <-got:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no Deliver")
			return ""
		}
	}
	out.flush()
	want := map[string]bool{"a:s1w1w2s2w3": true, "b:x1y1": true}
	for range 2 {
		if m := next(); !want[m] {
			t.Fatalf("got %q, want one of %v", m, want)
		} else {
			delete(want, m)
		}
	}
	// One stanza alone, either way; then a burst past the bound goes before the flush.
	out.appendTo(b, write("x2"))
	out.flush()
	if m := next(); m != "b:x2" {
		t.Fatalf("got %q", m)
	}
	out.toSession(a, []byte("s3"))
	out.flush()
	if m := next(); m != "a:s3" {
		t.Fatalf("got %q", m)
	}
	big := strings.Repeat("z", outboxMaxBytes/2+1)
	out.appendTo(a, write(big))
	out.appendTo(a, write(big))
	if m := next(); m != "a:"+big+big {
		t.Fatalf("past the bound: got %d bytes", len(m))
	}
	out.flush()
	select {
	case m := <-got:
		t.Fatalf("an empty outbox sent %.40q", m)
	case <-time.After(50 * time.Millisecond):
	}
}
