package cluster

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The bound on what waits for a node: handed bytes count until the codec marshals them
// (only the node link's own message types), or protoactor drops them; past max nothing
// more is handed.
func TestLinkQueueCounts(t *testing.T) {
	const addr = "192.0.2.1:8946"
	if !Hand(addr, 600, 1000) || !Hand(addr, 400, 1000) {
		t.Fatal("within the bound")
	}
	if Hand(addr, 1, 1000) || Queued(addr) != 1000 {
		t.Fatalf("past the bound: queued %d", Queued(addr))
	}
	// A batch for addr: 300 bytes of ours and 50 of protoactor's own.
	b := &remote.MessageBatch{
		TypeNames: []string{"switchboard.v1.Deliver", "actor.Terminated"},
		Targets:   []*actor.PID{{Address: addr, Id: "x"}},
		Envelopes: []*remote.MessageEnvelope{
			{TypeId: 0, MessageData: make([]byte, 300)},
			{TypeId: 1, MessageData: make([]byte, 50)},
		},
	}
	if _, err := (remoteCodec{}).Marshal(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: b}}); err != nil {
		t.Fatal(err)
	}
	if Queued(addr) != 700 || !Hand(addr, 300, 1000) {
		t.Fatalf("after a batch was sent: queued %d", Queued(addr))
	}
	// What protoactor drops stops counting: a dead letter, then the endpoint's end.
	sys := actor.NewActorSystem()
	defer WatchQueues(sys)()
	m := wrapperspb.Bytes(make([]byte, 100))
	sys.EventStream.Publish(&actor.DeadLetterEvent{PID: &actor.PID{Address: addr, Id: "y"}, Message: m})
	if want := int64(1000 - proto.Size(m)); Queued(addr) != want {
		t.Fatalf("after a dead letter: queued %d, want %d", Queued(addr), want)
	}
	sys.EventStream.Publish(&remote.EndpointTerminatedEvent{Address: addr})
	deadline := time.Now().Add(time.Second)
	for Queued(addr) != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if Queued(addr) != 0 {
		t.Fatalf("after the endpoint ended: queued %d", Queued(addr))
	}
}
