package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/directory"
	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Cluster is what the router needs from the membership layer (nil: a standalone node).
type Cluster interface {
	AddComponent(cluster.ComponentEntry)
	RemoveComponent(e cluster.ComponentEntry, clean bool)
	Owner(key string) cluster.Member
	Members() []cluster.Member
}

// Link is what the router needs of the node link (nodelink.Link): what crosses nodes
// goes through it. Routing tests put a recorder in its place.
type Link interface {
	ToNode(node string, msg proto.Message)
	Request(node string, msg proto.Message, timeout time.Duration) (any, error)
	Send(pid *actor.PID, msg proto.Message)
	Deliver(pid *actor.PID, b []byte) // stanza bytes for a session actor (directory.Remote)
	SendAnswers(node string, answers []*pb.DelegationAnswer)
}

type inbound struct{ r *Router }

func (in inbound) UserRegister(m *pb.UserRegister) bool { return in.r.users.ownerRegister(m, nil) }
func (in inbound) UserUnregister(m *pb.UserUnregister)  { in.r.users.ownerUnregister(m) }
func (in inbound) UserPresence(m *pb.UserPresence)      { in.r.users.ownerPresence(m) }
func (in inbound) UserPush(m *pb.UserPush)              { in.r.users.ownerPush(m.Bare, m.Stanza, m.Blocklist) }
func (in inbound) UserPresenceTo(m *pb.UserPresenceTo) {
	in.r.users.ownerPresenceTo(m.Bare, m.To, m.Unavailable)
}

func (in inbound) PresenceReplay(m *pb.PresenceReplay) {
	in.r.users.ownerReplayPresence(m.Host, m.Entity, directory.At[*Session](fromRef(m.Session)))
}

func (in inbound) UserStanza(m *pb.UserStanza) {
	env, err := xmpp.ParseStanza(m.Stanza)
	if err != nil {
		return
	}
	bare, res := splitFull(env.To)
	in.r.users.ownerStanza(bare, res, m.From, m.Stanza, env, directory.At[*Session](fromRef(m.Sender)))
}

func (in inbound) DelegationReply(m *pb.DelegationReply) {
	env, err := xmpp.ParseStanza(m.Stanza)
	if err != nil {
		return
	}
	if h := in.r.hosts[env.To]; h != nil {
		in.r.del.managingReply(nil, h, env.From, env)
	}
}

func (in inbound) DelegationAnswer(a *nodelink.Answer) { in.r.del.answerFromNode(a) }

func (in inbound) Drained(m *pb.Drained) { in.r.drainedBy(m.Node) }

func (in inbound) UserCarbon(m *pb.UserCarbon) {
	in.r.users.ownerCarbonsExcept(m.Bare, m.Resource, m.Received, m.Stanza)
}

// ComponentClosed: a component connection on another node closed cleanly; its last
// answers are in. It leaves the directory now (the membership's news of it may come
// later), then what waits on it goes to another connection.
func (in inbound) ComponentClosed(m *pb.ComponentClosed) {
	in.r.comps.dir.Remove(m.Domain, m.Key)
	in.r.del.rerouteVia(m.Key)
}

func (in inbound) SMLocate(m *pb.SMLocate) *pb.SMLocation  { return in.r.users.ownerLocate(m) }
func (in inbound) S2SStanza(m *pb.S2SStanza)               { in.r.s2s.fromNode(m) }
func (in inbound) S2SAck(m *pb.S2SAck)                     { in.r.s2s.acked(m.Node, m.Seq) }
func (in inbound) SMTakeover(m *pb.SMTakeover) *pb.SMState { return in.r.smTakeover(m) }

func (in inbound) PrivilegedReply(m *pb.PrivilegedReply) {
	if env, err := xmpp.ParseStanza(m.Stanza); err == nil {
		in.r.priv.privilegedReply(env.From, env)
	}
}

// remoteMessage handles what a session actor receives from other nodes.
func (s *Session) remoteMessage(m any) bool {
	switch m := m.(type) {
	case *pb.Deliver:
		s.queued.Add(-int64(len(m.Data))) // counted as it was posted (remoteBytes)
		if s.closed.Load() {
			return true
		}
		if !s.csiWrite(m.Data) && !s.put(m.Data, true) {
			return true
		}
		// The mailbox may hold more stanzas from other nodes: flush behind them, one
		// write for the burst, instead of one write per stanza.
		if !s.flushQueued && !s.hold.Load() {
			s.flushQueued = true
			s.router.sys.Root.Send(s.pid, flushLater{})
		}
		return true
	case *pb.CarbonsWanted:
		s.userCarbons.Store(m.Any)
		return true
	case *pb.CloseStream:
		var se *xmpp.StreamError
		if m.Condition == "conflict" {
			s.replaced.Store(true)
		}
		if m.Condition != "" {
			se = &xmpp.StreamError{Condition: m.Condition, Text: m.Text}
		}
		s.handle(&closeStream{err: se})
		return true
	}
	return false
}
