package nodelink

import (
	"hash/maphash"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/nodelink/pb"
)

// receive handles what other nodes send to this node's router actor. Answers to IQs this
// node forwarded (delegated or privileged) need parsing and checking: they are spread
// over reply workers so that one actor's mailbox is not the ceiling of cross-node
// delegation. Delegation answers go to the worker of their requester, so that the answers
// one requester gets keep the order the managing entity sent them in. User-directory
// messages stay here, in order.
func (l *Link) receive(ctx actor.Context) {
	h := l.handler
	switch m := ctx.Message().(type) {
	case *pb.PackedAnswers:
		answers, err := unpackAnswers(m.Data)
		if err != nil {
			l.log.Warn("answers from another node dropped", "err", err)
			return
		}
		l.toReplyWorkers(answers)
	case *pb.DelegationAnswer:
		l.toReplyWorkers([]Answer{viewOf(m)})
	case *pb.DelegationAnswers:
		answers := make([]Answer, len(m.Answers))
		for i, a := range m.Answers {
			answers[i] = viewOf(a)
		}
		l.toReplyWorkers(answers)
	case *pb.DelegationReply, *pb.PrivilegedReply:
		n := l.next.Add(1)
		l.sys.Root.Send(l.workers[n%uint64(len(l.workers))], m)
	case *pb.UserRegister:
		ok := h.UserRegister(m)
		l.respond(ctx.Sender(), &pb.Ack{Refused: !ok})
	case *pb.BlocklistSync:
		sender := ctx.Sender()
		h.BlocklistSync(m, func() { l.respond(sender, &pb.Ack{}) })
	case *pb.S2SStanza:
		h.S2SStanza(m)
	case *pb.S2SAck:
		h.S2SAck(m)
	case *pb.SMLocate:
		l.respond(ctx.Sender(), h.SMLocate(m))
	case *pb.SMTakeover:
		sender := ctx.Sender()
		go func() { l.respond(sender, h.SMTakeover(m)) }()
	case *pb.UserUnregister:
		h.UserUnregister(m)
	case *pb.UserPresence:
		h.UserPresence(m)
	case *pb.UserPush:
		h.UserPush(m)
	case *pb.UserPresenceTo:
		h.UserPresenceTo(m)
	case *pb.PresenceReplay:
		h.PresenceReplay(m)
	case *pb.UserStanza:
		h.UserStanza(m)
	case *pb.UserCarbon:
		h.UserCarbon(m)
	case *pb.Drained:
		h.Drained(m)
	case *pb.ComponentClosed:
		// Behind every answer the reply workers hold: each passes the barrier in turn,
		// the last hands it on.
		b := &barrier{m: m}
		b.left.Store(int32(len(l.workers)))
		for _, w := range l.workers {
			l.sys.Root.Send(w, b)
		}
	}
}

// answerBatch is a reply worker's share of one burst of answers (pointers into the
// burst's views: an Answer is ten strings, 160 bytes).
type answerBatch []*Answer

// toReplyWorkers gives each answer to the reply worker of its requester.
func (l *Link) toReplyWorkers(answers []Answer) {
	n := len(l.workers)
	parts := make([]answerBatch, n)
	for j := range answers {
		i := maphash.String(l.seed, answers[j].InnerTo) % uint64(n)
		if parts[i] == nil {
			parts[i] = make(answerBatch, 0, len(answers)/n+1)
		}
		parts[i] = append(parts[i], &answers[j])
	}
	for i, p := range parts {
		if p != nil {
			l.sys.Root.Send(l.workers[i], p)
		}
	}
}

// barrier is a ComponentClosed on its way through the reply workers.
type barrier struct {
	m    *pb.ComponentClosed
	left atomic.Int32
}

// receiveReply is a reply worker.
func (l *Link) receiveReply(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *barrier:
		if m.left.Add(-1) == 0 {
			l.handler.ComponentClosed(m.m)
		}
	case *pb.DelegationReply:
		l.handler.DelegationReply(m)
	case answerBatch:
		for _, a := range m {
			l.handler.DelegationAnswer(a)
		}
	case *pb.PrivilegedReply:
		l.handler.PrivilegedReply(m)
	}
}

// respond answers a request (to its future, here or on the node that asked).
func (l *Link) respond(to *actor.PID, msg proto.Message) {
	if to == nil {
		return
	}
	if to.Address != l.sys.Address() {
		cluster.Hand(to.Address, int64(proto.Size(msg)), 0) // counted in as the codec will count it out
	}
	l.sys.Root.Send(to, msg)
}
