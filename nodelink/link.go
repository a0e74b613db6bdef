// Package nodelink is everything that crosses nodes: the well-known router actor every
// node runs and the reply workers behind it, the wire forms of what one node sends
// another (pb/, packed delegation answers), and the per-reader outbox that batches what
// one read of a connection routes to other nodes. Incoming messages go to a typed
// Handler (the router); outgoing ones go through Link's methods. The transport is
// protoactor remote over gRPC (node/remote.go); memberlist says where each node is.
package nodelink

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/nodelink/pb"
)

// RouterName is the well-known name of every node's router actor, so that any node can
// address any other's (actor.NewPID(remoteAddress, RouterName)).
const RouterName = "router"

// Members is where the other nodes are (the membership layer).
type Members interface {
	Remote(node string) (string, bool) // a node's actor remoting address
	Proto(node string) int             // the cross-node message version it understands
}

// Handler is what a node does with what other nodes send its router actor. User
// directory messages are handled one at a time, in the order they came, on the router
// actor; answers to forwarded IQs on reply workers (answers for one requester on one
// worker, in order). Methods must not block for long.
type Handler interface {
	// UserRegister reports whether the session was taken (false: the account is at its
	// session cap); the answer goes back to a sender that waits for it.
	UserRegister(*pb.UserRegister) bool
	UserUnregister(*pb.UserUnregister)
	UserPresence(*pb.UserPresence)
	UserPush(*pb.UserPush)
	UserPresenceTo(*pb.UserPresenceTo)
	PresenceReplay(*pb.PresenceReplay)
	UserStanza(*pb.UserStanza)
	// UserCarbon: copy a message the user sent to the user's other resources (XEP-0280).
	UserCarbon(*pb.UserCarbon)
	// BlocklistSync: call done once this node enforces the blocklists as of the
	// revision (XEP-0191); it must not block (done may be called from any goroutine).
	BlocklistSync(m *pb.BlocklistSync, done func())
	// DelegationReply is a managing entity's raw answer that another node could not
	// unwrap for us (an older node); DelegationAnswer an answer it unwrapped.
	DelegationReply(*pb.DelegationReply)
	DelegationAnswer(*Answer)
	PrivilegedReply(*pb.PrivilegedReply)
	// Drained: the node has its answers to every IQ it sent over this node's withdrawn
	// component connections (a graceful stop).
	Drained(*pb.Drained)
	// ComponentClosed: a component connection on another node closed its stream
	// cleanly; every answer that came over it has been handed to DelegationAnswer (or
	// DelegationReply) before this is called.
	ComponentClosed(*pb.ComponentClosed)
	// SMLocate: where the session of a user this node owns is (a stream-management
	// resumption on another node, XEP-0198). SMTakeover: hand a session of this node
	// over to such a resumption; it may block for seconds and runs on a goroutine of
	// its own.
	SMLocate(*pb.SMLocate) *pb.SMLocation
	SMTakeover(*pb.SMTakeover) *pb.SMState
	// S2SStanza: a stanza for the outgoing server stream this node owns; S2SAck: the
	// owner has what this node sent it, up to a number.
	S2SStanza(*pb.S2SStanza)
	S2SAck(*pb.S2SAck)
}

// Link sends to other nodes' actors and receives what they send this node.
type Link struct {
	sys     *actor.ActorSystem
	node    string
	members Members // nil: standalone, nothing crosses
	opts    []actor.PropsOption
	log     *slog.Logger

	handler Handler
	self    *actor.PID
	workers []*actor.PID
	next    atomic.Uint64
	seed    maphash.Seed

	maxQueued  atomic.Int64  // cluster.max_queued_bytes per other node (0: no bound)
	dropped    atomic.Uint64 // messages dropped for it
	lastWarned atomic.Int64  // unix seconds of the last warning about a drop
	unwatch    func()
}

// SetMaxQueued bounds what may wait in the transport for one other node (a config
// reload); past it a message for that node is dropped (Dropped counts them). 0: no bound.
func (l *Link) SetMaxQueued(n int64) { l.maxQueued.Store(n) }

// Dropped is how many messages were dropped because their node's queue was full.
func (l *Link) Dropped() uint64 { return l.dropped.Load() }

// send hands msg to the transport for pid, here or on another node (admit bounds what
// waits for another node).
func (l *Link) send(pid *actor.PID, msg proto.Message) {
	if pid.Address != l.sys.Address() && l.members != nil && !l.admit(pid.Address, msg) {
		return
	}
	l.sys.Root.Send(pid, msg)
}

// admit counts msg into what waits for the node at addr (cluster.Hand) and reports
// whether it may go: a node that is slow or stalled does not grow this one's memory with
// what its own users are sent. Past the bound the message is dropped with a warning (one
// a second at most), as it would be if the node were gone.
func (l *Link) admit(addr string, msg proto.Message) bool {
	if cluster.Hand(addr, int64(proto.Size(msg)), l.maxQueued.Load()) {
		return true
	}
	l.dropped.Add(1)
	if now := time.Now().Unix(); l.lastWarned.Swap(now) != now {
		l.log.Warn("node link: the queue towards a node is full; dropping what is sent to it",
			"address", addr, "queued_bytes", cluster.Queued(addr), "dropped_so_far", l.dropped.Load())
	}
	return false
}

// New makes the link of node over sys; members is nil for a standalone node. opts are
// applied to the actors it spawns (the router's dispatcher). Nothing is received until
// Start.
func New(sys *actor.ActorSystem, node string, members Members, log *slog.Logger, opts ...actor.PropsOption) *Link {
	return &Link{sys: sys, node: node, members: members, opts: opts, log: log, seed: maphash.MakeSeed()}
}

// Start spawns the router actor (under RouterName) and its reply workers, which hand what
// comes to h. A standalone node spawns nothing. h is given here, not to New, so that the
// router it is can be built with the link in hand.
func (l *Link) Start(_ context.Context, h Handler) error {
	if l.members == nil {
		return nil
	}
	l.handler = h
	l.unwatch = cluster.WatchQueues(l.sys)
	pid, err := l.sys.Root.SpawnNamed(actor.PropsFromFunc(l.receive, l.opts...), RouterName)
	if err != nil {
		return err
	}
	l.self = pid
	for range max(2, runtime.GOMAXPROCS(0)) {
		l.workers = append(l.workers, l.sys.Root.Spawn(actor.PropsFromFunc(l.receiveReply, l.opts...)))
	}
	return nil
}

// Stop stops the router actor and the reply workers.
// The actors' PIDs stay as they are: the router actor may still be handing a message to
// a worker, and a message sent to a stopped actor is dropped (dead letters).
func (l *Link) Stop(context.Context) error {
	if l.unwatch != nil {
		l.unwatch()
	}
	if l.self != nil {
		l.sys.Root.Stop(l.self)
	}
	for _, w := range l.workers {
		l.sys.Root.Stop(w)
	}
	return nil
}

// ToNode sends msg to node's router actor (this node's own when node is this one). A
// node that is gone gets nothing.
func (l *Link) ToNode(node string, msg proto.Message) {
	if l.members == nil {
		return
	}
	if node == l.node {
		l.sys.Root.Send(l.self, msg)
		return
	}
	addr, ok := l.members.Remote(node)
	if !ok {
		l.log.Debug("message for a node that is gone", "node", node)
		return
	}
	l.send(actor.NewPID(addr, RouterName), msg)
}

// Request sends msg to another node's router actor and waits for its answer.
func (l *Link) Request(node string, msg proto.Message, timeout time.Duration) (any, error) {
	addr, ok := "", false
	if l.members != nil {
		addr, ok = l.members.Remote(node)
	}
	if !ok {
		return nil, fmt.Errorf("node %s is gone", node)
	}
	if !l.admit(addr, msg) {
		return nil, fmt.Errorf("node %s: the queue towards it is full", node)
	}
	return l.sys.Root.RequestFuture(actor.NewPID(addr, RouterName), msg, timeout).Result()
}

// Send sends msg to an actor, here or on another node.
func (l *Link) Send(pid *actor.PID, msg proto.Message) { l.send(pid, msg) }

// Deliver sends stanza bytes to a session actor, here or on another node.
func (l *Link) Deliver(pid *actor.PID, b []byte) { l.send(pid, &pb.Deliver{Data: b}) }

// SendAnswers sends delegation answers to a node as one message in the newest form it
// knows: packed (proto version 2), a DelegationAnswers (1), or one each to a node older
// than that (a rolling upgrade: a node drops a message it does not know).
func (l *Link) SendAnswers(node string, answers []*pb.DelegationAnswer) {
	proto := cluster.ProtoVersion
	if node != l.node && l.members != nil {
		proto = l.members.Proto(node)
	}
	switch {
	case proto >= 2:
		l.ToNode(node, &pb.PackedAnswers{Data: packAnswers(nil, answers)})
	case proto == 1:
		l.ToNode(node, &pb.DelegationAnswers{Answers: answers})
	default:
		for _, a := range answers {
			l.ToNode(node, a)
		}
	}
}
