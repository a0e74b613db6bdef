package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/directory"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/privileges"
)

// components are the component connections as the router sees them: local ones entered,
// advertised and withdrawn, other nodes' ones applied from the cluster directory, and
// the balancing pick.
type components struct {
	r   *Router
	dir *directory.Components[*Session] // every connection, here and on other nodes
}

// entry is a local connection as the cluster directory lists it: a component's, or a
// managing account's resource (with its full JID, which IQs are addressed to).
func (c *components) entry(s *Session) cluster.ComponentEntry {
	e := cluster.ComponentEntry{Domain: s.Bare, Node: c.r.nodeID, Address: c.r.sys.Address(), PID: s.pid.Id}
	if s.Kind == KindC2S {
		e.Full = s.Full
	}
	return e
}

// removeComponent withdraws a local component connection (or managing account's
// resource). The IQs waiting on it fail, unless it closed its stream cleanly: then it
// never read them, and they go to another connection of the component, here and, once
// behind the answers it sent (pb.ComponentClosed), on every other node.
func (c *components) removeComponent(s *Session, clean bool) {
	key := c.sessionKey(s)
	c.dir.Remove(s.Bare, key)
	if c.r.cluster != nil {
		c.r.cluster.RemoveComponent(c.entry(s), clean)
		if clean {
			for _, m := range c.r.cluster.Members() {
				if m.ID != c.r.nodeID && m.Proto >= 4 {
					c.r.link.ToNode(m.ID, &pb.ComponentClosed{Key: key, Domain: s.Bare})
				}
			}
		}
	}
	if clean {
		c.r.del.rerouteVia(key)
	} else {
		c.r.del.failVia(key)
	}
	c.r.priv.tracker.FailVia(key) // its IQs on behalf of users: nobody is left to answer
}

// closedWait is how long a node waits for the ComponentClosed of a connection that the
// directory says closed cleanly, before it fails what waits on it.
const closedWait = 5 * time.Second

// publishComponent announces a local component connection to the cluster.
func (c *components) publishComponent(s *Session) {
	if c.r.cluster != nil {
		c.r.cluster.AddComponent(c.entry(s))
	}
}

// componentsChanged applies the directory's news about other nodes' component sessions:
// new ones share the load (and are asked for disco nesting from here, so the answers are
// known on every node); gone ones fail the IQs this node had sent them.
func (c *components) componentsChanged(added, removed []cluster.ComponentEntry) {
	for _, e := range removed {
		if e.Node == c.r.nodeID {
			continue
		}
		if c.dir.Remove(e.Domain, e.Key()) {
			c.r.log.Info("remote component session gone", "component", e.Domain, "node", e.Node, "clean", e.Clean)
		}
		if !e.Clean {
			c.r.del.failVia(e.Key())
			continue
		}
		// Its ComponentClosed, behind its last answers, moves what waits on it; if it
		// never comes, what still waits fails.
		key := e.Key()
		time.AfterFunc(closedWait, func() { c.r.del.failVia(key) })
	}
	for _, e := range added {
		if e.Node == c.r.nodeID {
			continue
		}
		c.dir.MarkUp(e.Address) // the node is back and announced it: reachable again
		ref := &compRef{Handle: directory.At[*Session](actor.NewPID(e.Address, e.PID)), Key: e.Key(), Full: e.Full}
		c.dir.Add(e.Domain, ref)
		c.r.log.Info("remote component session", "component", e.Domain, "node", e.Node)
		if c.r.deleg == nil || e.Full != "" {
			continue
		}
		dns := c.r.componentOpts(e.Domain).DelegationNS
		for _, host := range c.r.sortedHosts() {
			for _, rule := range c.r.deleg.Rules.Table(host).For(e.Domain) {
				c.r.del.discoNest(ref.Handle, host, e.Domain, dns, rule.Namespace)
			}
		}
	}
}

// pickComponent chooses one connection of a component, on any node, by its balancing
// policy.
func (c *components) pickComponent(domain, senderBare string) (*compRef, bool) {
	return c.dir.Pick(domain, c.r.componentOpts(domain).Balance, senderBare, c.r.del.outstanding)
}

// componentUp advertises a component's delegations (one <message/> per host that
// delegates to it) and asks it for disco nesting (XEP-0355 §4.2, §7.2).
func (c *components) componentUp(s *Session) {
	opts := c.r.componentOpts(s.Bare)
	for _, host := range c.r.sortedHosts() {
		p := c.r.priv.privileges(host, s.Bare)
		s.Send(privileges.Advertisement(host, s.Bare, p, false))
		if p.ReceivesPresence() {
			c.r.priv.replayPresence(host, s)
		}
	}
	if c.r.deleg == nil {
		return
	}
	dns := opts.DelegationNS
	for _, host := range c.r.sortedHosts() {
		rules := c.r.deleg.Rules.Table(host).For(s.Bare)
		if len(rules) == 0 {
			continue
		}
		s.Send(delegation.Advertisement(dns, host, s.Bare, rules))
		for _, rule := range rules {
			c.r.del.discoNest(localTarget(s), host, s.Bare, dns, rule.Namespace)
		}
	}
}

func (c *components) sessionKey(s *Session) string { return c.r.nodeID + "/" + s.pid.Id }

// addComponent enters a local component connection, or a managing account's resource
// (addressed by its full JID), in the directory of connections.
func (c *components) addComponent(s *Session) {
	ref := &compRef{Handle: localTarget(s), Key: c.sessionKey(s)}
	if s.Kind == KindC2S {
		ref.Full = s.Full
	}
	c.dir.Add(s.Bare, ref)
	if c.r.drain.withdrawn.Load() {
		c.dir.Withdraw([]string{ref.Key}) // the node is draining
	}
}

func (c *components) isComponentDomain(domain string) bool {
	for _, c := range c.r.settings.Load().compNames {
		if c == domain {
			return true
		}
	}
	return false
}

// stalled is told which connections answer nothing while IQs wait on them
// (delegation.StallAfter): picks pass them over while another connection answers.
func (c *components) stalled(keys []string) {
	c.dir.SetStalled(keys)
	if len(keys) > 0 {
		c.r.log.Warn("component connections stalled: passed over while another answers", "connections", keys)
	} else {
		c.r.log.Info("no component connection stalled any more")
	}
}

// nodeUnreachable: the transport to the node at address failed (its connection was
// refused or reset: a killed or stopped node). Its component connections are passed
// over at once, for Config.UnreachableFor, without waiting for the membership's verdict,
// and the IQs waiting on them are answered service-unavailable now (an answer that
// comes later after all is dropped: none is answered twice).
func (c *components) nodeUnreachable(address string) {
	conns := c.dir.MarkDown(address, time.Now().Add(c.r.unreachableFor))
	if len(conns) == 0 {
		return
	}
	c.r.log.Warn("transport to a node failed: its component connections are passed over",
		"address", address, "connections", len(conns), "for", c.r.unreachableFor)
	for _, k := range conns {
		c.r.del.failVia(k.Key)
		c.r.priv.tracker.FailVia(k.Key)
	}
}
