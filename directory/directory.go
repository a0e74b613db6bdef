// Package directory is the one place that answers "where is X" on a node: the sessions
// of its own sockets (by bare JID and resource), the owner tables of the users it owns
// (every resource of such a user, on any node, with its presence), and the connections
// of every component and managing account, on any node, with the policies that spread
// delegated IQs over them.
//
// Every table keeps the same handle: a session on this node (Local, written to directly)
// or a session actor anywhere (PID, reached through the node link). The package knows
// nothing of sockets, etcd or XML; it is generic over the router's session type, and its
// tests use a stand-in.
package directory

import (
	"hash/maphash"

	"github.com/asynkron/protoactor-go/actor"
)

// Local is what a session on this node is to the directory: comparable (a pointer) and
// able to take stanza bytes.
type Local interface {
	comparable
	Send(b []byte)
}

// Remote takes stanza bytes for a session actor that may be on another node (the node
// link).
type Remote interface {
	Deliver(pid *actor.PID, b []byte)
}

// Handle is where a session is: Local when it is on this node, else only its actor's
// PID. The zero Handle is nobody: what is sent to it is dropped.
type Handle[S Local] struct {
	Local S
	PID   *actor.PID
}

// On is the handle of a local session whose actor is pid.
func On[S Local](s S, pid *actor.PID) Handle[S] { return Handle[S]{Local: s, PID: pid} }

// At is the handle of a session actor, here or on another node.
func At[S Local](pid *actor.PID) Handle[S] { return Handle[S]{PID: pid} }

// IsLocal reports whether the session is on this node.
func (h Handle[S]) IsLocal() bool {
	var none S
	return h.Local != none
}

// Send writes b to the session: directly when it is local, else through remote. A nil b,
// or the zero Handle, sends nothing.
func (h Handle[S]) Send(remote Remote, b []byte) {
	switch {
	case b == nil:
	case h.IsLocal():
		h.Local.Send(b)
	case h.PID != nil:
		remote.Deliver(h.PID, b)
	}
}

// SamePID reports whether two handles name the same session actor.
func (h Handle[S]) SamePID(o Handle[S]) bool {
	return h.PID != nil && o.PID != nil && h.PID.Address == o.PID.Address && h.PID.Id == o.PID.Id
}

const shards = 64

func shardOf(seed maphash.Seed, key string) int { return int(maphash.String(seed, key) % shards) }
