package nodelink

import (
	"bytes"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/nodelink/pb"
)

// Outbox gathers what one connection's reader goroutine routes to other nodes while its
// input lasts, and sends it when the reader is about to wait for more (xmpp.Reader's
// BeforeFill): the stanzas for one remote session become one Deliver, the delegation
// answers for one node one message (Link.SendAnswers). Under load a read holds many stanzas, and
// each remote message costs its serialization, envelope and lookups on both nodes
// whatever its size (a third of both nodes' CPU in a cross-node run, one message each).
// At low load a read holds one stanza and nothing waits: the flush comes right after it.
//
// Only the reader goroutine touches it. Order is kept: per remote session the stanzas
// are concatenated in the order they were routed. What the router makes for one remote
// session alone (a delegated IQ's wrapping) is written into a scratch buffer from a pool
// and copied out once at the flush: one allocation of the burst's size, where a buffer
// for each stanza and their join were.
type Outbox struct {
	link    Sender
	deliver map[*actor.PID]int // index in queues
	queues  []sessionQueue
	answers map[string]*pb.DelegationAnswers
	nodes   []string
	bytes   int
}

// sessionQueue is what waits for one remote session: parts, then scratch[mark:]. Parts
// are stanzas routed as they were (not copied) and earlier stretches of scratch.
type sessionQueue struct {
	pid     *actor.PID
	parts   [][]byte
	scratch *[]byte
	mark    int
}

// outboxMaxBytes bounds what waits: beyond it, the outbox is sent at once.
const outboxMaxBytes = 64 << 10

// scratches hold the stanzas written for remote sessions until the flush copies them
// out; one is held only between an outbox's first write and its flush.
var scratches = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Sender is what an outbox sends through: a Link.
type Sender interface {
	Deliver(pid *actor.PID, b []byte)
	SendAnswers(node string, answers []*pb.DelegationAnswer)
}

// NewOutbox makes an empty outbox that sends through link.
func NewOutbox(link Sender) *Outbox { return &Outbox{link: link} }

func (o *Outbox) queue(pid *actor.PID) *sessionQueue {
	if o.deliver == nil {
		o.deliver = make(map[*actor.PID]int)
	}
	i, ok := o.deliver[pid]
	if !ok {
		i = len(o.queues)
		o.deliver[pid] = i
		if i < cap(o.queues) {
			o.queues = o.queues[:i+1]
		} else {
			o.queues = append(o.queues, sessionQueue{})
		}
		o.queues[i].pid = pid
	}
	return &o.queues[i]
}

// ToSession queues stanza bytes for a session actor on another node.
func (o *Outbox) ToSession(pid *actor.PID, b []byte) {
	q := o.queue(pid)
	q.seal()
	q.parts = append(q.parts, b)
	o.grew(len(b))
}

// AppendTo queues for a session actor on another node what write appends to the slice it
// is given (a stanza made for this session alone).
func (o *Outbox) AppendTo(pid *actor.PID, write func([]byte) []byte) {
	q := o.queue(pid)
	if q.scratch == nil {
		q.scratch = scratches.Get().(*[]byte)
	}
	n := len(*q.scratch)
	*q.scratch = write(*q.scratch)
	o.grew(len(*q.scratch) - n)
}

// seal ends the stretch of scratch written since the last one as a part. It stays where
// it is: scratch only grows until the flush (a larger copy leaves the old array as it was).
func (q *sessionQueue) seal() {
	if q.scratch != nil && len(*q.scratch) > q.mark {
		q.parts = append(q.parts, (*q.scratch)[q.mark:])
		q.mark = len(*q.scratch)
	}
}

// take returns the queue as one buffer of its own (one routed stanza alone is sent as it
// is) and empties it, giving its scratch back.
func (q *sessionQueue) take() []byte {
	var d []byte
	switch {
	case q.scratch == nil && len(q.parts) == 1:
		d = q.parts[0]
	case len(q.parts) == 0:
		d = bytes.Clone(*q.scratch)
	default:
		q.seal()
		d = bytes.Join(q.parts, nil)
	}
	if q.scratch != nil && cap(*q.scratch) <= 4*outboxMaxBytes {
		*q.scratch = (*q.scratch)[:0]
		scratches.Put(q.scratch)
	}
	clear(q.parts)
	*q = sessionQueue{parts: q.parts[:0]}
	return d
}

// Answer queues a delegation answer for another node's router.
func (o *Outbox) Answer(node string, a *pb.DelegationAnswer) {
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

func (o *Outbox) grew(n int) {
	if o.bytes += n; o.bytes > outboxMaxBytes {
		o.Flush()
	}
}

// Flush sends everything queued.
func (o *Outbox) Flush() {
	if o.bytes == 0 {
		return
	}
	for i := range o.queues {
		q := &o.queues[i]
		pid := q.pid // before take empties q
		o.link.Deliver(pid, q.take())
	}
	o.queues = o.queues[:0]
	clear(o.deliver)
	for _, node := range o.nodes {
		o.link.SendAnswers(node, o.answers[node].Answers)
		delete(o.answers, node)
	}
	o.nodes, o.bytes = o.nodes[:0], 0
}
