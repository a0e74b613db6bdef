package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-im/switchboard/actors/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// target is where a session is: on this node (local, written to directly) or a session
// actor anywhere (pid, reached through protoactor, remote or not). It is the one handle
// every table keeps: a component connection (compRef), a user's resource in its owner's
// table (resEntry), and whoever gets an error back (a sender on another node). The zero
// target is nobody: what is sent to it is dropped.
type target struct {
	local *Session
	pid   *actor.PID
}

func localTarget(s *Session) target { return target{local: s, pid: s.pid} }

// send writes b to the session (nil b: nothing).
func (t target) send(r *Router, b []byte) {
	switch {
	case b == nil:
	case t.local != nil:
		t.local.Send(b)
	case t.pid != nil:
		r.link.send(t.pid, &pb.Deliver{Data: b})
	}
}

// sendVia is send, through out when the session is on another node and the caller is a
// reader with an outbox.
func (t target) sendVia(r *Router, out *outbox, b []byte) {
	if t.local == nil && out != nil {
		out.toSession(t.pid, b)
		return
	}
	t.send(r, b)
}

// writeVia sends what write makes (appending to the slice it is given): into the outbox's
// buffer for the session when it is on another node and the caller is a reader with an
// outbox, else as a stanza of its own.
func (t target) writeVia(r *Router, out *outbox, write func([]byte) []byte) {
	if t.local == nil && out != nil {
		out.appendTo(t.pid, write)
		return
	}
	t.send(r, write(nil))
}

// close ends the session's stream with a stream error.
func (t target) close(r *Router, cond, text string) {
	if t.local != nil {
		if cond == "conflict" {
			t.local.replaced.Store(true)
		}
		t.local.Close(&xmpp.StreamError{Condition: cond, Text: text})
		return
	}
	if t.pid != nil {
		r.link.send(t.pid, &pb.CloseStream{Condition: cond, Text: text})
	}
}

// link carries messages to actors that may be on other nodes: session actors (a target's
// pid) and other nodes' router actors. It is protoactor (remote when the address is
// another node's); routing tests put a recorder in its place.
type link interface {
	send(pid *actor.PID, msg proto.Message)
	request(pid *actor.PID, msg proto.Message, timeout time.Duration) error
}

type actorLink struct{ sys *actor.ActorSystem }

func (l actorLink) send(pid *actor.PID, msg proto.Message) { l.sys.Root.Send(pid, msg) }

func (l actorLink) request(pid *actor.PID, msg proto.Message, timeout time.Duration) error {
	_, err := l.sys.Root.RequestFuture(pid, msg, timeout).Result()
	return err
}
