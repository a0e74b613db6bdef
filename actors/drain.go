package actors

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// A graceful stop (node.drain_timeout) loses no delegated IQ:
//
//  1. The stopping node withdraws its component connections (Withdraw here, then
//     cluster.Cluster.Withdraw tells every member). Picks pass them over from then on,
//     on every node, while what was already sent over them is still answered there.
//  2. Every other node, once each IQ it had sent over them has its answer, says so
//     (pb.Drained; nodeDraining and awaitDrained below).
//  3. The stopping node waits for every member's word (Drain), then stops reading its
//     clients and waits for the delegated IQs they already sent: each stanza it read
//     gets its answer before the stream closes with system-shutdown, and what it did
//     not read, the client sends again elsewhere.
//  4. Clients with resumable stream management (XEP-0198) get system-shutdown at once,
//     but their sessions stay, detached: the node waits (within the same timeout) for
//     each to be resumed on another node, which takes it over with its queue. What is
//     not resumed by then ends with the node (what it kept goes to offline storage).
//
// Members too old to know draining (cluster.ProtoVersion < 3) are not waited for.

// drainState is the router's side of a graceful stop.
type drainState struct {
	withdrawn atomic.Bool // Withdraw was called: new local connections are withdrawn too
	paused    atomic.Bool // clients are no longer read (Drain's second step)
	stopping  chan struct{}
	stopOnce  sync.Once
	// handover: resumable sessions are let go to be resumed elsewhere (Drain's last
	// step); their paused readers end.
	handover     chan struct{}
	handoverOnce sync.Once

	mu      sync.Mutex
	drained map[string]bool // members that said Drained
}

// drainPoll is how often a drain's conditions are checked.
const drainPoll = 5 * time.Millisecond

// Withdraw is a graceful stop's first step on this node: its component connections (and
// managing accounts' resources) take no new work from its own clients any more. The
// node then tells the cluster (cluster.Cluster.Withdraw).
func (r *Router) Withdraw() {
	r.drain.withdrawn.Store(true)
	var keys []string
	for _, s := range r.comps.dir.AllLocals() {
		keys = append(keys, r.comps.sessionKey(s))
	}
	r.comps.dir.Withdraw(keys)
	r.log.Info("draining: component connections withdrawn", "connections", len(keys))
}

// Drain waits, until ctx ends, for every other member to say that what it sent over this
// node's withdrawn connections is answered (pb.Drained); then it stops reading clients
// and waits for the delegated IQs they sent. The error says what was still awaited.
func (r *Router) Drain(ctx context.Context) error {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		waiting := r.awaitedMembers()
		if len(waiting) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("members that did not say they were drained: %v", waiting)
		case <-t.C:
		}
	}
	r.drain.paused.Store(true)
	for {
		n := r.pendingDelegated()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d delegated IQs of this node's clients still unanswered", n)
		case <-t.C:
		}
	}
	return r.handOverResumable(ctx, t)
}

// handOverResumable lets the resumable sessions go to other nodes: each client gets
// system-shutdown and resumes elsewhere; it returns once every one is taken over or
// ended (or ctx ends).
func (r *Router) handOverResumable(ctx context.Context, t *time.Ticker) error {
	if r.cluster == nil {
		return nil // nowhere to go
	}
	var left []*Session
	for _, s := range r.users.sessions.All() {
		if s.resumable.Load() {
			left = append(left, s)
		}
	}
	if len(left) == 0 {
		return nil
	}
	r.drain.handoverOnce.Do(func() { close(r.drain.handover) })
	for _, s := range left {
		r.sys.Root.Send(s.pid, &closeStream{err: &xmpp.StreamError{Condition: "system-shutdown"}, detach: true})
	}
	r.log.Info("draining: waiting for stream-management sessions to resume elsewhere", "sessions", len(left))
	for {
		n := 0
		for _, s := range left {
			if !s.moved.Load() && !s.finished.Load() {
				n++
			}
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d stream-management sessions not resumed elsewhere", n)
		case <-t.C:
		}
	}
}

func (r *Router) pendingDelegated() int {
	if r.del.tracker == nil {
		return 0
	}
	return r.del.tracker.Len()
}

// awaitedMembers are the other members that understand draining and have not said
// Drained yet.
func (r *Router) awaitedMembers() []string {
	if r.cluster == nil {
		return nil
	}
	r.drain.mu.Lock()
	defer r.drain.mu.Unlock()
	var out []string
	for _, m := range r.cluster.Members() {
		if m.ID != r.nodeID && m.Proto >= 3 && !r.drain.drained[m.ID] {
			out = append(out, m.ID)
		}
	}
	sort.Strings(out)
	return out
}

// drainedBy records a member's pb.Drained.
func (r *Router) drainedBy(node string) {
	r.drain.mu.Lock()
	defer r.drain.mu.Unlock()
	if r.drain.drained == nil {
		r.drain.drained = make(map[string]bool)
	}
	r.drain.drained[node] = true
}

// stopDraining ends what waits on a drain (Stop): paused client readers end.
func (r *Router) stopDraining() { r.drain.stopOnce.Do(func() { close(r.drain.stopping) }) }

// NodeDraining is told that another node withdrew component connections (cluster.Listener).
func (r *Router) NodeDraining(node string, withdrawn []cluster.ComponentEntry) {
	r.comps.nodeDraining(node, withdrawn)
}

// nodeDraining passes over another node's withdrawn connections from now on and, once
// every IQ this node sent over them has its answer, tells that node (pb.Drained).
func (c *components) nodeDraining(node string, entries []cluster.ComponentEntry) {
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		keys = append(keys, e.Key())
	}
	c.dir.Withdraw(keys)
	c.r.log.Info("node draining: its component connections take no new work", "node", node, "connections", len(keys))
	go c.awaitDrained(node, keys)
}

// awaitDrained waits until no delegated IQ of this node waits on keys (or the delegation
// timeout has passed: the tracker has answered them all by then), then says Drained.
func (c *components) awaitDrained(node string, keys []string) {
	if c.r.del.tracker != nil {
		giveUp := time.Now().Add(c.r.deleg.Timeout + time.Second)
		t := time.NewTicker(drainPoll)
		defer t.Stop()
		for time.Now().Before(giveUp) {
			var n int64
			for _, k := range keys {
				n += c.r.del.outstanding(k)
			}
			if n == 0 {
				break
			}
			select {
			case <-c.r.drain.stopping:
				return
			case <-t.C:
			}
		}
	}
	c.r.link.ToNode(node, &pb.Drained{Node: c.r.nodeID})
}
