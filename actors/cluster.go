package actors

import (
	"fmt"
	"runtime"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-im/switchboard/actors/pb"
	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Cluster is what the router needs from the membership layer.
type Cluster interface {
	AddComponent(cluster.ComponentEntry)
	RemoveComponent(cluster.ComponentEntry)
	Remote(node string) (string, bool)
	Proto(node string) int // the cross-node message version it understands (cluster.ProtoVersion)
	Owner(key string) cluster.Member
	Members() []cluster.Member
}

// routerActorName is the well-known name of every node's router actor, so that any node
// can address any other's (actor.NewPID(remoteAddress, routerActorName)).
const routerActorName = "router"

// compRef is one connection of a component (or of a managing account's resource), here
// or on another node. key (node/actor id) identifies it cluster-wide.
type compRef struct {
	target
	key  string
	full string // for an account's resource: its full JID (IQs are addressed to it)
}

// SetCluster gives the router the membership layer (after AttachCluster: the cluster
// needs the router as its listener, the router needs the cluster).
func (r *Router) SetCluster(c Cluster) { r.cluster = c }

// AttachCluster spawns the router actor that other nodes send to. Call it once, before
// any connection is served.
func (r *Router) AttachCluster(c Cluster) error {
	if c != nil {
		r.cluster = c
	}
	pid, err := r.sys.Root.SpawnNamed(actor.PropsFromFunc(r.receive, r.onWorkers()), routerActorName)
	if err != nil {
		return err
	}
	r.self = pid
	for range max(2, runtime.GOMAXPROCS(0)) {
		r.replyWorkers = append(r.replyWorkers, r.sys.Root.Spawn(actor.PropsFromFunc(r.receiveReply, r.onWorkers())))
	}
	return nil
}

// receive handles what other nodes send to this node's router actor. Answers to IQs
// this node forwarded (delegated or privileged) need parsing and checking: they are spread
// over reply workers so that one actor's mailbox is not the ceiling of cross-node
// delegation. Delegation answers go to the worker of their requester, so that the answers
// one requester gets keep the order the managing entity sent them in. User-directory
// messages stay here, in order.
func (r *Router) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *pb.PackedAnswers:
		answers, err := unpackAnswers(m.Data)
		if err != nil {
			r.log.Warn("answers from another node dropped", "err", err)
			return
		}
		r.toReplyWorkers(answers)
	case *pb.DelegationAnswer:
		r.toReplyWorkers([]answerView{viewOf(m)})
	case *pb.DelegationAnswers:
		answers := make([]answerView, len(m.Answers))
		for i, a := range m.Answers {
			answers[i] = viewOf(a)
		}
		r.toReplyWorkers(answers)
	case *pb.DelegationReply, *pb.PrivilegedReply:
		n := r.replyNext.Add(1)
		r.sys.Root.Send(r.replyWorkers[n%uint64(len(r.replyWorkers))], m)
	default:
		r.receiveUser(ctx, m)
	}
}

// toReplyWorkers gives each answer to the reply worker of its requester.
func (r *Router) toReplyWorkers(answers []answerView) {
	n := len(r.replyWorkers)
	parts := make([]answerBatch, n)
	for j := range answers {
		i := hashString(r.seed, answers[j].InnerTo) % uint64(n)
		if parts[i] == nil {
			parts[i] = make(answerBatch, 0, len(answers)/n+1)
		}
		parts[i] = append(parts[i], &answers[j])
	}
	for i, p := range parts {
		if p != nil {
			r.sys.Root.Send(r.replyWorkers[i], p)
		}
	}
}

// receiveReply is a reply worker.
func (r *Router) receiveReply(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *pb.DelegationReply:
		env, err := xmpp.ParseStanza(m.Stanza)
		if err != nil {
			return
		}
		if h := r.hosts[env.To]; h != nil {
			r.managingReply(nil, h, env.From, env)
		}
	case answerBatch:
		for _, a := range m {
			r.answerFromNode(a)
		}
	case *pb.PrivilegedReply:
		if env, err := xmpp.ParseStanza(m.Stanza); err == nil {
			r.privilegedReply(env.From, env)
		}
	}
}

func (r *Router) sendToNode(node string, msg proto.Message) {
	if r.cluster == nil {
		return
	}
	if node == r.nodeID {
		r.sys.Root.Send(r.self, msg)
		return
	}
	addr, ok := r.cluster.Remote(node)
	if !ok {
		r.log.Debug("message for a node that is gone", "node", node)
		return
	}
	r.link.send(actor.NewPID(addr, routerActorName), msg)
}

// requestNode sends msg to another node's router actor and waits for its answer.
func (r *Router) requestNode(node string, msg proto.Message, timeout time.Duration) error {
	addr, ok := r.cluster.Remote(node)
	if !ok {
		return fmt.Errorf("node %s is gone", node)
	}
	return r.link.request(actor.NewPID(addr, routerActorName), msg, timeout)
}

func (r *Router) entry(s *Session) cluster.ComponentEntry {
	return cluster.ComponentEntry{Domain: s.Bare, Node: r.nodeID, Address: r.sys.Address(), PID: s.pid.Id}
}

// removeComponent withdraws a local component connection and fails its pending IQs.
func (r *Router) removeComponent(s *Session) {
	key := r.sessionKey(s)
	r.removeComponentRef(s.Bare, key)
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
		if r.removeComponentRef(e.Domain, e.Key()) {
			r.log.Info("remote component session gone", "component", e.Domain, "node", e.Node)
		}
		r.failVia(e.Key())
	}
	for _, e := range added {
		if e.Node == r.nodeID {
			continue
		}
		ref := &compRef{target: target{pid: actor.NewPID(e.Address, e.PID)}, key: e.Key(), full: e.Full}
		r.addComponentRef(e.Domain, ref)
		r.log.Info("remote component session", "component", e.Domain, "node", e.Node)
		if r.deleg == nil || e.Full != "" {
			continue
		}
		dns := r.componentOpts(e.Domain).DelegationNS
		for _, host := range r.sortedHosts() {
			for _, rule := range r.deleg.Rules.Table(host).For(e.Domain) {
				r.discoNest(ref, host, e.Domain, dns, rule.Namespace)
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
