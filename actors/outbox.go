package actors

import (
	"bytes"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/actors/pb"
	"github.com/switchboard-im/switchboard/cluster"
)

// outbox gathers what one connection's reader goroutine routes to other nodes while its
// input lasts, and sends it when the reader is about to wait for more (xmpp.Reader's
// BeforeFill): the stanzas for one remote session become one Deliver, the delegation
// answers for one node one DelegationAnswers. Under load a read holds many stanzas, and
// each remote message costs its serialization, envelope and lookups on both nodes
// whatever its size (a third of both nodes' CPU in a cross-node run, one message each).
// At low load a read holds one stanza and nothing waits: the flush comes right after it.
//
// Only the reader goroutine touches it. Order is kept: per remote session the stanzas
// are concatenated in the order they were routed.
type outbox struct {
	r       *Router
	deliver map[*actor.PID][][]byte
	pids    []*actor.PID
	answers map[string]*pb.DelegationAnswers
	nodes   []string
	bytes   int
}

// outboxMaxBytes bounds what waits: beyond it, the outbox is sent at once.
const outboxMaxBytes = 64 << 10

func (r *Router) newOutbox() *outbox { return &outbox{r: r} }

// toSession queues stanza bytes for a session actor on another node.
func (o *outbox) toSession(pid *actor.PID, b []byte) {
	if o.deliver == nil {
		o.deliver = make(map[*actor.PID][][]byte)
	}
	q, ok := o.deliver[pid]
	if !ok {
		o.pids = append(o.pids, pid)
	}
	o.deliver[pid] = append(q, b)
	o.grew(len(b))
}

// answer queues a delegation answer for another node's router.
func (o *outbox) answer(node string, a *pb.DelegationAnswer) {
	if o.answers == nil {
		o.answers = make(map[string]*pb.DelegationAnswers)
	}
	q, ok := o.answers[node]
	if !ok {
		q = &pb.DelegationAnswers{}
		o.answers[node] = q
		o.nodes = append(o.nodes, node)
	}
	q.Answers = append(q.Answers, a)
	o.grew(len(a.Inner) + 128)
}

func (o *outbox) grew(n int) {
	if o.bytes += n; o.bytes > outboxMaxBytes {
		o.flush()
	}
}

// flush sends everything queued.
func (o *outbox) flush() {
	if o.bytes == 0 {
		return
	}
	for _, pid := range o.pids {
		o.r.sys.Root.Send(pid, &pb.Deliver{Data: concat(o.deliver[pid])})
		delete(o.deliver, pid)
	}
	for _, node := range o.nodes {
		o.r.sendAnswers(node, o.answers[node])
		delete(o.answers, node)
	}
	clear(o.pids)
	o.pids, o.nodes, o.bytes = o.pids[:0], o.nodes[:0], 0
}

// sendVia sends to a component session, through out when the session is on another node
// and the caller is a reader with an outbox.
func (c *compRef) sendVia(r *Router, out *outbox, b []byte) {
	if c.local == nil && out != nil {
		out.toSession(c.pid, b)
		return
	}
	c.send(r, b)
}

// concat joins stanzas into one buffer (one stanza is sent as it is, without a copy).
func concat(parts [][]byte) []byte {
	if len(parts) == 1 {
		return parts[0]
	}
	return bytes.Join(parts, nil)
}

// sendAnswers sends answers to a node as one message in the newest form it knows: packed
// (proto version 2), a DelegationAnswers (1), or one each to a node older than that (a
// rolling upgrade: a node drops a message it does not know).
func (r *Router) sendAnswers(node string, m *pb.DelegationAnswers) {
	proto := cluster.ProtoVersion
	if node != r.nodeID && r.cluster != nil {
		proto = r.cluster.Proto(node)
	}
	switch {
	case proto >= 2:
		r.sendToNode(node, &pb.PackedAnswers{Data: packAnswers(nil, m.Answers)})
	case proto == 1:
		r.sendToNode(node, m)
	default:
		for _, a := range m.Answers {
			r.sendToNode(node, a)
		}
	}
}
