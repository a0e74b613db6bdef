package cluster

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"
)

// What waits for each other node. protoactor's remote queues the actor messages for a node
// in its endpoint writer, a ring that grows without bound while the node is slow or
// stalled. The node link bounds it (cluster.max_queued_bytes) with these counts: the bytes
// of this project's messages handed to protoactor for an address (Hand), less those the
// remote codec has marshalled for it (sent) or that protoactor dropped (a dead letter, an
// endpoint that ended).

// messagePrefix is the protobuf package of the node link's messages (nodelink/pb); only
// they are counted (protoactor's own messages are small and never handed through Hand).
const messagePrefix = "switchboard."

type linkQueue struct{ handed, done atomic.Int64 }

var linkQueues sync.Map // remote address → *linkQueue

func queueOf(addr string) *linkQueue {
	if q, ok := linkQueues.Load(addr); ok {
		return q.(*linkQueue)
	}
	q, _ := linkQueues.LoadOrStore(addr, new(linkQueue))
	return q.(*linkQueue)
}

// Hand counts a message of n bytes about to be handed to protoactor for the node at addr,
// unless what already waits for that node and n exceed max (> 0): then it reports false and
// the caller drops the message.
func Hand(addr string, n, max int64) bool {
	q := queueOf(addr)
	if max > 0 && q.handed.Load()-q.done.Load()+n > max {
		return false
	}
	q.handed.Add(n)
	return true
}

// Queued reports how many bytes of messages wait in protoactor for the node at addr.
func Queued(addr string) int64 {
	q := queueOf(addr)
	return max(q.handed.Load()-q.done.Load(), 0)
}

// sentBatch counts a batch the remote codec marshalled: its messages no longer wait.
func sentBatch(b *remote.MessageBatch) {
	if len(b.Targets) == 0 {
		return
	}
	var n int64
	for _, e := range b.Envelopes {
		if int(e.TypeId) < len(b.TypeNames) && strings.HasPrefix(b.TypeNames[e.TypeId], messagePrefix) {
			n += int64(len(e.MessageData))
		}
	}
	if n > 0 {
		queueOf(b.Targets[0].Address).done.Add(n)
	}
}

// WatchQueues follows what protoactor drops on sys's event stream, so that it stops
// counting as waiting: a dead letter for another node (the endpoint was not connected), and
// everything for an endpoint that ended (its queue goes with it). It returns the
// subscription's end.
func WatchQueues(sys *actor.ActorSystem) func() {
	sub := sys.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *actor.DeadLetterEvent:
			if m, ok := e.Message.(proto.Message); ok && e.PID != nil && e.PID.Address != sys.Address() {
				queueOf(e.PID.Address).done.Add(int64(proto.Size(m)))
			}
		case *remote.EndpointTerminatedEvent:
			q := queueOf(e.Address)
			q.done.Store(q.handed.Load())
		}
	})
	return func() { sys.EventStream.Unsubscribe(sub) }
}

// QueuedTotal is what waits in the transport for all other nodes together, as counted:
// a negative figure would mean messages counted out that were never counted in (a
// drift the tests look for).
func QueuedTotal() int64 {
	var n int64
	linkQueues.Range(func(_, v any) bool {
		q := v.(*linkQueue)
		n += q.handed.Load() - q.done.Load()
		return true
	})
	return n
}
