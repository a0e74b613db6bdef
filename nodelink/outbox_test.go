package nodelink

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/nodelink/pb"
)

// fakeMembers puts every other node at this actor system's own address, so that what the
// link sends to "another node's router" lands in a local actor named like it.
type fakeMembers struct {
	addr  string
	proto int
}

func (f fakeMembers) Remote(string) (string, bool) { return f.addr, true }
func (f fakeMembers) Proto(string) int             { return f.proto }

var quiet = slog.New(slog.DiscardHandler)

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
					s += a.OuterID
				}
				got <- s
			}
		}), RouterName)
		if err != nil {
			t.Fatal(err)
		}
		out := NewOutbox(New(sys, "n1", fakeMembers{addr: sys.Address(), proto: tc.proto}, quiet))
		for _, id := range []string{"a1", "a2", "a3"} {
			out.Answer("n2", &pb.DelegationAnswer{OuterId: id})
		}
		select {
		case m := <-got:
			t.Fatalf("proto %d: %s sent before the flush", tc.proto, m)
		case <-time.After(50 * time.Millisecond):
		}
		out.Flush()
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
		sys.Shutdown()
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
	out := NewOutbox(New(sys, "n1", nil, quiet))
	write := func(s string) func([]byte) []byte { return func(b []byte) []byte { return append(b, s...) } }
	shared := make([]byte, 2, 64)
	copy(shared, "s1")
	out.ToSession(a, shared)
	out.AppendTo(a, write("w1"))
	out.AppendTo(b, write("x1"))
	out.AppendTo(a, write("w2"))
	out.ToSession(a, []byte("s2"))
	out.AppendTo(a, write("w3"))
	out.ToSession(b, []byte("y1"))
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
	out.Flush()
	want := map[string]bool{"a:s1w1w2s2w3": true, "b:x1y1": true}
	for range 2 {
		if m := next(); !want[m] {
			t.Fatalf("got %q, want one of %v", m, want)
		} else {
			delete(want, m)
		}
	}
	// One stanza alone, either way; then a burst past the bound goes before the flush.
	out.AppendTo(b, write("x2"))
	out.Flush()
	if m := next(); m != "b:x2" {
		t.Fatalf("got %q", m)
	}
	out.ToSession(a, []byte("s3"))
	out.Flush()
	if m := next(); m != "a:s3" {
		t.Fatalf("got %q", m)
	}
	big := strings.Repeat("z", outboxMaxBytes/2+1)
	out.AppendTo(a, write(big))
	out.AppendTo(a, write(big))
	if m := next(); m != "a:"+big+big {
		t.Fatalf("past the bound: got %d bytes", len(m))
	}
	out.Flush()
	select {
	case m := <-got:
		t.Fatalf("an empty outbox sent %.40q", m)
	case <-time.After(50 * time.Millisecond):
	}
}
