package actors

import (
	"log/slog"
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

// Answers for a node go as one DelegationAnswers, or one by one to a node older than that
// message (a rolling upgrade), which would drop what it does not know.
func TestOutboxAnswersByPeerVersion(t *testing.T) {
	for _, tc := range []struct {
		proto int
		want  []string
	}{
		{cluster.ProtoVersion, []string{"batch:a1,a2,a3"}},
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
