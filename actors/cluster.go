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
	RemoveComponent(cluster.ComponentEntry)
	Owner(key string) cluster.Member
	Members() []cluster.Member
}

// Link is what the router needs of the node link (nodelink.Link): what crosses nodes
// goes through it. Routing tests put a recorder in its place.
type Link interface {
	ToNode(node string, msg proto.Message)
	Request(node string, msg proto.Message, timeout time.Duration) error
	Send(pid *actor.PID, msg proto.Message)
	Deliver(pid *actor.PID, b []byte) // stanza bytes for a session actor (directory.Remote)
	SendAnswers(node string, answers []*pb.DelegationAnswer)
}

// Inbound is the router's nodelink.Handler: what other nodes send this node.
func (r *Router) Inbound() nodelink.Handler { return inbound{r} }

type inbound struct{ r *Router }

func (in inbound) UserRegister(m *pb.UserRegister)     { in.r.ownerRegister(m, nil) }
func (in inbound) UserUnregister(m *pb.UserUnregister) { in.r.ownerUnregister(m) }
func (in inbound) UserPresence(m *pb.UserPresence)     { in.r.ownerPresence(m) }
func (in inbound) UserPush(m *pb.UserPush)             { in.r.ownerPush(m.Bare, m.Stanza) }
func (in inbound) UserPresenceTo(m *pb.UserPresenceTo) {
	in.r.ownerPresenceTo(m.Bare, m.To, m.Unavailable)
}

func (in inbound) PresenceReplay(m *pb.PresenceReplay) {
	in.r.ownerReplayPresence(m.Host, m.Entity, directory.At[*Session](fromRef(m.Session)))
}

func (in inbound) UserStanza(m *pb.UserStanza) {
	env, err := xmpp.ParseStanza(m.Stanza)
	if err != nil {
		return
	}
	bare, res := splitFull(env.To)
	in.r.ownerStanza(bare, res, m.From, m.Stanza, env, directory.At[*Session](fromRef(m.Sender)))
}

func (in inbound) DelegationReply(m *pb.DelegationReply) {
	env, err := xmpp.ParseStanza(m.Stanza)
	if err != nil {
		return
	}
	if h := in.r.hosts[env.To]; h != nil {
		in.r.managingReply(nil, h, env.From, env)
	}
}

func (in inbound) DelegationAnswer(a *nodelink.Answer) { in.r.answerFromNode(a) }

func (in inbound) PrivilegedReply(m *pb.PrivilegedReply) {
	if env, err := xmpp.ParseStanza(m.Stanza); err == nil {
		in.r.privilegedReply(env.From, env)
	}
}

func (r *Router) entry(s *Session) cluster.ComponentEntry {
	return cluster.ComponentEntry{Domain: s.Bare, Node: r.nodeID, Address: r.sys.Address(), PID: s.pid.Id}
}

// removeComponent withdraws a local component connection and fails its pending IQs.
func (r *Router) removeComponent(s *Session) {
	key := r.sessionKey(s)
	r.components.Remove(s.Bare, key)
	if r.cluster != nil {
		r.cluster.RemoveComponent(r.entry(s))
	}
	r.failVia(key)
	r.privTracker.FailVia(key) // its IQs on behalf of users: nobody is left to answer
}

// publishComponent announces a local component connection to the cluster.
func (r *Router) publishComponent(s *Session) {
	if r.cluster != nil {
		r.cluster.AddComponent(r.entry(s))
	}
}

// ComponentsChanged applies the directory's news about other nodes' component sessions:
// new ones share the load (and are asked for disco nesting from here, so the answers are
// known on every node); gone ones fail the IQs this node had sent them.
func (r *Router) ComponentsChanged(added, removed []cluster.ComponentEntry) {
	for _, e := range removed {
		if e.Node == r.nodeID {
			continue
		}
		if r.components.Remove(e.Domain, e.Key()) {
			r.log.Info("remote component session gone", "component", e.Domain, "node", e.Node)
		}
		r.failVia(e.Key())
	}
	for _, e := range added {
		if e.Node == r.nodeID {
			continue
		}
		ref := &compRef{Handle: directory.At[*Session](actor.NewPID(e.Address, e.PID)), Key: e.Key(), Full: e.Full}
		r.components.Add(e.Domain, ref)
		r.log.Info("remote component session", "component", e.Domain, "node", e.Node)
		if r.deleg == nil || e.Full != "" {
			continue
		}
		dns := r.componentOpts(e.Domain).DelegationNS
		for _, host := range r.sortedHosts() {
			for _, rule := range r.deleg.Rules.Table(host).For(e.Domain) {
				r.discoNest(ref.Handle, host, e.Domain, dns, rule.Namespace)
			}
		}
	}
}

// MembersChanged is told about membership; users move owners (see users.go).
func (r *Router) MembersChanged(members []cluster.Member, left []string) {
	r.membersChanged(members, left)
}

// remoteMessage handles what a session actor receives from other nodes.
func (s *Session) remoteMessage(m any) bool {
	switch m := m.(type) {
	case *pb.Deliver:
		if s.closed.Load() {
			return true
		}
		if _, err := s.writer().Write(m.Data); err != nil {
			s.abort()
			return true
		}
		// Stanzas from other nodes are not counted in queued (Send counts local ones), so
		// the mailbox may hold more of them: flush behind them, one write for the burst,
		// instead of one write per stanza.
		if !s.flushQueued && !s.hold.Load() {
			s.flushQueued = true
			s.router.sys.Root.Send(s.pid, flushLater{})
		}
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

// Counts returns how many client and component sessions this node holds.
func (r *Router) Counts() (clients, components int) {
	for _, s := range r.allSessions() {
		if s.Kind == KindC2S {
			clients++
		} else {
			components++
		}
	}
	return clients, components
}
