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
