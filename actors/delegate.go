package actors

import (
	"bytes"
	"sort"
	"strings"
	"time"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/privileges"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Rules gives the effective delegation rules of a host (lock-free on the hot path).
type Rules interface {
	Table(host string) *delegation.Table
}

// Delegation is what the router needs for XEP-0355.
type Delegation struct {
	Rules   Rules
	Disco   *delegation.DiscoCache
	Metrics *delegation.Metrics
	Timeout time.Duration
}

// ComponentOptions are the per-component settings the router applies.
type ComponentOptions struct {
	DelegationNS string            // urn:xmpp:delegation:2 (default) or :1
	Balance      string            // round-robin (default), least-pending, sender
	Privileges   config.Privileges // XEP-0356 (normalized), on every host (etcd may override per host)
}

func (r *Router) componentOpts(domain string) ComponentOptions {
	o := r.settings.Load().compOpts[domain]
	if o.DelegationNS == "" {
		o.DelegationNS = delegation.NS2
	}
	return o
}

// delegateIQ forwards an IQ get/set to the managing entity of its namespace, if the
// namespace of its first child is delegated on this host (and every filtering attribute is
// present). bareTarget is the user's bare JID for IQs to a bare JID, "" for the server.
// It passes what is not delegated.
func (r *Router) delegateIQ(out *nodelink.Outbox, h *Host, sender *Session, from, bareTarget string, env *xmpp.Envelope) verdict {
	if r.deleg == nil || !env.HasChild {
		return pass
	}
	tbl := r.deleg.Rules.Table(h.Domain)
	ns := env.Child.Space
	var (
		rule delegation.Rule
		ok   bool
	)
	switch {
	case bareTarget != "" && ns == NSDiscoInfo && hasNode(env):
		// The server answers no disco#info node of an account itself (XEP-0355 §7.3).
		rule, ok = tbl.Lookup(delegation.BareDiscoInfoRemaining)
	case bareTarget != "" && ns == NSDiscoItems:
		rule, ok = tbl.Lookup(delegation.BareDiscoItemsRemaining)
	}
	if ok {
		ns = rule.Namespace
	} else {
		rule, ok = tbl.Match(ns, func(a string) bool { _, has := env.ChildAttr(a); return has })
	}
	if !ok {
		return pass
	}
	// Never forward what the managing entity itself sends: that is how it uses the
	// server's own handling of the namespace (XEP-0355 §5.1).
	if sender.Bare == rule.JID {
		return pass
	}
	target, ok := r.pickComponent(rule.JID, sender.Bare)
	if !ok {
		r.deleg.Metrics.Count(h.Domain, ns, delegation.OutcomeUnavailable)
		return refuse(env.To, xmpp.ErrServiceUnavailable)
	}
	to := rule.JID
	if target.Full != "" {
		to = target.Full // an account's resource: the reply must come from it
	}
	p := &delegation.Pending[*Session]{Request: delegation.Request{
		OuterID:   r.tracker.NewID(),
		Host:      h.Domain,
		Namespace: ns,
		Entity:    to,
		Via:       target.Key,
		From:      from,
		OrigID:    env.ID,
		OrigTo:    env.To,
	}, Requester: sender}
	r.deleg.Metrics.Forwarded(&p.Request)
	r.tracker.Add(p)
	dns := r.componentOpts(rule.JID).DelegationNS
	r.writeVia(target.Handle, out, func(b []byte) []byte {
		return delegation.AppendWrap(b, dns, p.OuterID, h.Domain, to, env, from, env.To)
	})
	return handled
}

func hasNode(env *xmpp.Envelope) bool {
	n, ok := env.ChildAttr("node")
	return ok && n != ""
}

// managingReply handles an IQ result/error a component sent to a host domain: the answer
// to a forwarded IQ, or to a disco nesting query. It reports whether it was one.
// from is the reply's vouched-for sender (stamped for clients, checked for components).
func (r *Router) managingReply(out *nodelink.Outbox, h *Host, from string, env *xmpp.Envelope) bool {
	if r.deleg == nil {
		return false
	}
	if !r.tracker.Owns(env.ID) {
		// Made by another node: the answer goes straight back to it (DESIGN §Cluster),
		// unwrapped here, where the entity's connection already parsed it, so that the
		// clients' node only checks it against its pending entry.
		node := delegation.NodeOf(env.ID)
		if node == "" || r.cluster == nil {
			return false
		}
		if env.HasChild && env.Child.Local == "delegation" {
			if a := r.remoteAnswer(h, from, env); out != nil {
				out.Answer(node, a)
			} else {
				r.link.ToNode(node, a)
			}
		} else {
			r.link.ToNode(node, &pb.DelegationReply{Stanza: r.stamp(env, from, env.To)})
		}
		return true
	}
	if r.deleg.Disco.Answer(env.ID, from, env) {
		return true
	}
	p, ok := r.tracker.Take(env.ID)
	if !ok {
		return true // late, or already failed: dropped
	}
	a := delegationAnswer{Answer: delegation.Answer{Host: h.Domain, From: from, OuterType: env.Type}}
	if env.Type != "error" {
		inner, invalid := r.unwrapAnswer(p.Entity, env)
		if a.Invalid = invalid; inner != nil {
			a.InnerType, a.InnerID, a.InnerTo, a.InnerFrom = inner.Type, inner.ID, inner.To, inner.From
			a.bytes = inner.Rewrite
		}
	}
	r.finishDelegated(p, &a)
	return true
}

// unwrapAnswer unwraps a managing entity's result as the entity's delegation namespace
// says (urn:xmpp:delegation:1 entities may leave out xmlns='jabber:client'); invalid says
// why the wrapping was refused.
func (r *Router) unwrapAnswer(entity string, env *xmpp.Envelope) (inner *xmpp.Envelope, invalid string) {
	opts := r.componentOpts(bareOf(entity))
	inner, err := delegation.Unwrap(opts.DelegationNS, env, opts.DelegationNS == delegation.NS1)
	if err != nil {
		return nil, err.Error()
	}
	return inner, ""
}

// delegationAnswer is a managing entity's answer to a forwarded IQ, unwrapped.
type delegationAnswer struct {
	delegation.Answer
	bytes func(from, to string) []byte // the inner stanza, readdressed
}

// remoteAnswer unwraps, on the entity's node, an answer for another node's pending IQ.
func (r *Router) remoteAnswer(h *Host, from string, env *xmpp.Envelope) *pb.DelegationAnswer {
	m := &pb.DelegationAnswer{OuterId: env.ID, Host: h.Domain, From: from, OuterType: env.Type}
	if env.Type == "error" {
		return m
	}
	inner, invalid := r.unwrapAnswer(from, env)
	if inner == nil {
		m.Invalid = invalid
		return m
	}
	m.InnerType, m.InnerId, m.InnerTo, m.InnerFrom = inner.Type, inner.ID, inner.To, inner.From
	m.Inner = inner.Rewrite("", "")
	return m
}

// answerFromNode checks an answer unwrapped on another node against this node's pending IQ.
func (r *Router) answerFromNode(a *nodelink.Answer) {
	if r.hosts[a.Host] == nil {
		return
	}
	p, ok := r.tracker.Take(a.OuterID)
	if !ok {
		return
	}
	r.finishDelegated(p, &delegationAnswer{Answer: a.Answer,
		bytes: func(from, to string) []byte { return readdressIQ(a.Inner, from, to) }})
}

// readdressIQ adds from and to to an <iq> start tag that has neither.
func readdressIQ(stripped, from, to string) []byte {
	if !strings.HasPrefix(stripped, "<iq") {
		return nil
	}
	var b bytes.Buffer
	b.Grow(len(stripped) + len(from) + len(to) + 16)
	b.WriteString("<iq")
	xmpp.WriteAddrs(&b, from, to)
	b.WriteString(stripped[3:])
	return b.Bytes()
}

// finishDelegated checks a managing entity's answer (XEP-0355 §5.3, delegation.Check)
// and gives the requester the inner stanza, or service-unavailable.
func (r *Router) finishDelegated(p *delegation.Pending[*Session], a *delegationAnswer) {
	outcome, why := delegation.Check(&p.Request, &a.Answer, p.Requester.Bare)
	r.deleg.Metrics.Done(&p.Request, outcome)
	if why != "" {
		r.log.Warn("delegated IQ failed", "host", p.Host, "namespace", p.Namespace, "entity", p.Entity,
			"requester", p.From, "reason", why)
		p.Requester.Send(iqError(&p.Request, xmpp.ErrServiceUnavailable))
		return
	}
	p.Requester.Send(a.bytes(p.ReplyFrom(), p.From))
}

func iqError(p *delegation.Request, e *xmpp.StanzaError) []byte {
	return iqErrorTo(p.OrigID, p.ReplyFrom(), p.From, e)
}

// iqErrorTo is the error answer to an IQ request that is no longer at hand.
func iqErrorTo(id, from, to string, e *xmpp.StanzaError) []byte {
	env := &xmpp.Envelope{Kind: xmpp.KindIQ, Type: "get", ID: id}
	env.Name.Local = "iq"
	return xmpp.ErrorReply(env, from, to, e)
}

// delegationTimeout answers a forwarded IQ nobody answered in time.
func (r *Router) delegationTimeout(p *delegation.Pending[*Session]) {
	r.deleg.Metrics.Done(&p.Request, delegation.OutcomeTimeout)
	r.log.Warn("delegated IQ timed out", "host", p.Host, "namespace", p.Namespace, "entity", p.Entity, "requester", p.From)
	p.Requester.Send(iqError(&p.Request, xmpp.ErrServiceUnavailable))
}

// failVia answers every IQ that was forwarded over a component connection that ended
// (closed here, or gone with its node).
func (r *Router) failVia(key string) {
	if r.tracker == nil {
		return
	}
	for _, p := range r.tracker.FailVia(key) {
		r.deleg.Metrics.Done(&p.Request, delegation.OutcomeUnavailable)
		p.Requester.Send(iqError(&p.Request, xmpp.ErrServiceUnavailable))
	}
}

// pickComponent chooses one connection of a component, on any node, by its balancing
// policy.
func (r *Router) pickComponent(domain, senderBare string) (*compRef, bool) {
	return r.components.Pick(domain, r.componentOpts(domain).Balance, senderBare, r.outstanding)
}

// outstanding is how many delegated IQs wait on a connection (least-pending balancing).
func (r *Router) outstanding(key string) int64 { return r.tracker.Outstanding(key) }

func (r *Router) sortedHosts() []string {
	out := make([]string, 0, len(r.hosts))
	for d := range r.hosts {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// componentUp advertises a component's delegations (one <message/> per host that
// delegates to it) and asks it for disco nesting (XEP-0355 §4.2, §7.2).
func (r *Router) componentUp(s *Session) {
	opts := r.componentOpts(s.Bare)
	for _, host := range r.sortedHosts() {
		p := r.privileges(host, s.Bare)
		s.Send(privileges.Advertisement(host, s.Bare, p, false))
		if p.ReceivesPresence() {
			r.replayPresence(host, s)
		}
	}
	if r.deleg == nil {
		return
	}
	dns := opts.DelegationNS
	for _, host := range r.sortedHosts() {
		rules := r.deleg.Rules.Table(host).For(s.Bare)
		if len(rules) == 0 {
			continue
		}
		s.Send(delegation.Advertisement(dns, host, s.Bare, rules))
		for _, rule := range rules {
			r.discoNest(localTarget(s), host, s.Bare, dns, rule.Namespace)
		}
	}
}

// discoNest asks one connection of entity for its nesting answers about ns. The query
// ids carry this node's tag, so answers that arrive on another node come back here.
func (r *Router) discoNest(c target, host, entity, dns, ns string) {
	if ns == delegation.BareDiscoInfoRemaining || ns == delegation.BareDiscoItemsRemaining {
		return
	}
	for _, bare := range []bool{false, true} {
		id := r.tracker.NewID()
		r.deleg.Disco.Query(id, host, entity, ns, bare)
		c.Send(r.link, delegation.DiscoQuery(id, host, entity, delegation.DiscoNode(dns, ns, bare)))
	}
}

// RulesChanged applies a rule change: every affected managing entity that is connected
// gets a fresh advertisement and is asked for disco nesting of what is new to it.
func (r *Router) RulesChanged(ch delegation.Change) {
	r.accountsChanged(ch)
	for _, entity := range ch.Affected {
		if isAccount(entity) {
			continue
		}
		sessions := r.components.Locals(entity)
		newRules := ch.New.For(entity)
		old := map[string]bool{}
		for _, o := range ch.Old.For(entity) {
			old[o.Namespace] = true
		}
		still := map[string]bool{}
		for _, n := range newRules {
			still[n.Namespace] = true
		}
		for ns := range old {
			if !still[ns] {
				r.deleg.Disco.Forget(entity, ns)
			}
		}
		if len(sessions) == 0 {
			continue
		}
		dns := r.componentOpts(entity).DelegationNS
		adv := delegation.Advertisement(dns, ch.Host, entity, newRules)
		for _, s := range sessions {
			s.Send(adv)
		}
		for _, n := range newRules {
			if !old[n.Namespace] {
				r.discoNest(localTarget(sessions[0]), ch.Host, entity, dns, n.Namespace)
			}
		}
		r.log.Info("delegations changed", "host", ch.Host, "entity", entity, "namespaces", len(newRules))
	}
}
