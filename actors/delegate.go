package actors

import (
	"bytes"
	"strings"
	"time"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// delegator is XEP-0355 on the router: forwarding delegated IQs to a managing entity,
// checking its answers (delegation.Check), advertising delegations and asking for disco
// nesting, and the managing accounts' resources (managing.go).
type delegator struct {
	r       *Router
	tracker *delegation.Tracker[*Session] // forwarded IQs awaiting their answer (nil: no XEP-0355)
}

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
	// StallAfter: see config.DelegationConfig (0: off).
	StallAfter time.Duration
}

// ComponentOptions are the per-component settings the router applies.
type ComponentOptions struct {
	DelegationNS string            // urn:xmpp:delegation:2 (default) or :1
	Balance      string            // round-robin (default), least-pending, sender
	Privileges   config.Privileges // XEP-0356 (normalized), on every host (etcd may override per host)
}

// delegateIQ forwards an IQ get/set to the managing entity of its namespace, if the
// namespace of its first child is delegated on this host (and every filtering attribute is
// present). bareTarget is the user's bare JID for IQs to a bare JID, "" for the server.
// It passes what is not delegated.
func (d *delegator) delegateIQ(out *nodelink.Outbox, h *Host, sender *Session, from, bareTarget string, env *xmpp.Envelope) verdict {
	if d.r.deleg == nil || !env.HasChild {
		return pass
	}
	tbl := d.r.deleg.Rules.Table(h.Domain)
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
	if sender.inflightFull() {
		return refuse(env.To, xmpp.ErrResourceConstraint) // limits.max_inflight_iqs
	}
	target, ok := d.r.comps.pickComponent(rule.JID, sender.Bare)
	if !ok {
		d.r.deleg.Metrics.Count(h.Domain, ns, delegation.OutcomeUnavailable)
		return refuse(env.To, xmpp.ErrServiceUnavailable)
	}
	p := d.track(h, ns, rule.JID, target, sender, from, env)
	if down := d.r.comps.dir.IsDown(target); down || target.Passed() {
		// Withdrawn (its node drains), removed (it ended) or down (its node's
		// transport failed) between the pick and now: what waited on it may have been
		// declared drained, handed on or failed without this one (drain.go,
		// rerouteVia, failVia, nodeUnreachable). Not sent yet, it goes to a connection
		// picked now; only withdrawn ones left: to this one, which still answers.
		again, ok := d.r.comps.pickComponent(rule.JID, sender.Bare)
		switch {
		case ok && again.Key != target.Key:
			old, taken := d.tracker.Take(p.OuterID)
			if !taken {
				return handled // answered, handed on or failed meanwhile
			}
			d.r.deleg.Metrics.Done(&old.Request, delegation.OutcomeRerouted)
			target = again
			p = d.track(h, ns, rule.JID, target, sender, from, env)
		case down || target.Removed():
			if old, taken := d.tracker.Take(p.OuterID); taken {
				d.r.deleg.Metrics.Done(&old.Request, delegation.OutcomeUnavailable)
				return refuse(env.To, xmpp.ErrServiceUnavailable)
			}
			return handled
		}
	}
	d.send(target, out, p)
	return handled
}

// track enters an IQ about to be forwarded over target in the tracker, with its wrapping
// (Pending.Wrapped: a component's, which any of its connections takes as it is, goes to
// another one if this one closes cleanly before reading it).
func (d *delegator) track(h *Host, ns, entity string, target *compRef, sender *Session, from string, env *xmpp.Envelope) *delegation.Pending[*Session] {
	to := entity
	if target.Full != "" {
		to = target.Full // an account's resource: the reply must come from it
	}
	p := &delegation.Pending[*Session]{Request: delegation.Request{
		OuterID:   d.tracker.NewID(),
		Host:      h.Domain,
		Namespace: ns,
		Entity:    to,
		Via:       target.Key,
		From:      from,
		OrigID:    env.ID,
		OrigTo:    env.To,
	}, Requester: sender}
	p.Wrapped = delegation.AppendWrap(nil, d.r.componentOpts(entity).DelegationNS, p.OuterID, h.Domain, to, env, from, env.To)
	d.enter(p)
	return p
}

// enter counts an IQ forwarded and tracks it until its answer (or its end).
func (d *delegator) enter(p *delegation.Pending[*Session]) {
	d.r.deleg.Metrics.Forwarded(&p.Request)
	p.Requester.inflight.Add(1) // until the tracker's OnDone
	d.tracker.Add(p)
}

// fail answers a pending IQ, taken from the tracker, service-unavailable.
func (d *delegator) fail(p *delegation.Pending[*Session]) {
	d.r.deleg.Metrics.Done(&p.Request, delegation.OutcomeUnavailable)
	p.Requester.Send(iqError(&p.Request, xmpp.ErrServiceUnavailable))
}

// send writes a tracked IQ's wrapping to target: the same bytes to a session here, a
// copy into the reader's outbox for one on another node.
func (d *delegator) send(target *compRef, out *nodelink.Outbox, p *delegation.Pending[*Session]) {
	if target.IsLocal() || out == nil {
		target.Send(d.r.link, p.Wrapped)
		return
	}
	out.AppendTo(target.PID, func(b []byte) []byte { return append(b, p.Wrapped...) })
}

// rerouteVia hands the IQs waiting on a connection that closed its stream cleanly (so it
// read none of them) to another connection of their component; those it cannot (an
// account's resource, or no connection left) fail.
func (d *delegator) rerouteVia(key string) {
	if d.tracker == nil {
		return
	}
	for _, p := range d.tracker.FailVia(key) {
		target, ok := d.r.comps.pickComponent(p.Entity, p.Requester.Bare)
		if !ok || target.Full != "" || isAccount(p.Entity) {
			d.fail(p)
			continue
		}
		d.r.deleg.Metrics.Done(&p.Request, delegation.OutcomeRerouted)
		p.Via = target.Key
		d.enter(p)
		d.send(target, nil, p)
	}
}

func hasNode(env *xmpp.Envelope) bool {
	n, ok := env.ChildAttr("node")
	return ok && n != ""
}

// managingReply handles an IQ result/error a component sent to a host domain: the answer
// to a forwarded IQ, or to a disco nesting query. It reports whether it was one.
// from is the reply's vouched-for sender (stamped for clients, checked for components).
func (d *delegator) managingReply(out *nodelink.Outbox, h *Host, from string, env *xmpp.Envelope) bool {
	if d.r.deleg == nil {
		return false
	}
	if !d.tracker.Owns(env.ID) {
		// Made by another node: the answer goes straight back to it (DESIGN §Cluster),
		// unwrapped here, where the entity's connection already parsed it, so that the
		// clients' node only checks it against its pending entry.
		node := delegation.NodeOf(env.ID)
		if node == "" || d.r.cluster == nil {
			return false
		}
		if env.HasChild && env.Child.Local == "delegation" {
			if a := d.remoteAnswer(h, from, env); out != nil {
				out.Answer(node, a)
			} else {
				d.r.link.ToNode(node, a)
			}
		} else {
			d.r.link.ToNode(node, &pb.DelegationReply{Stanza: stamp(env, from, env.To)})
		}
		return true
	}
	if d.r.deleg.Disco.Answer(env.ID, from, env) {
		return true
	}
	p, ok := d.tracker.Take(env.ID)
	if !ok {
		return true // late, or already failed: dropped
	}
	a := delegationAnswer{Answer: delegation.Answer{Host: h.Domain, From: from, OuterType: env.Type}}
	if env.Type != "error" {
		inner, invalid := d.unwrapAnswer(p.Entity, env)
		if a.Invalid = invalid; inner != nil {
			a.InnerType, a.InnerID, a.InnerTo, a.InnerFrom = inner.Type, inner.ID, inner.To, inner.From
			a.bytes = inner.Rewrite
		}
	}
	d.finishDelegated(p, &a)
	return true
}

// unwrapAnswer unwraps a managing entity's result as the entity's delegation namespace
// says (urn:xmpp:delegation:1 entities may leave out xmlns='jabber:client'); invalid says
// why the wrapping was refused.
func (d *delegator) unwrapAnswer(entity string, env *xmpp.Envelope) (inner *xmpp.Envelope, invalid string) {
	opts := d.r.componentOpts(bareOf(entity))
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
func (d *delegator) remoteAnswer(h *Host, from string, env *xmpp.Envelope) *pb.DelegationAnswer {
	m := &pb.DelegationAnswer{OuterId: env.ID, Host: h.Domain, From: from, OuterType: env.Type}
	if env.Type == "error" {
		return m
	}
	inner, invalid := d.unwrapAnswer(from, env)
	if inner == nil {
		m.Invalid = invalid
		return m
	}
	m.InnerType, m.InnerId, m.InnerTo, m.InnerFrom = inner.Type, inner.ID, inner.To, inner.From
	m.Inner = inner.Rewrite("", "")
	return m
}

// answerFromNode checks an answer unwrapped on another node against this node's pending IQ.
func (d *delegator) answerFromNode(a *nodelink.Answer) {
	if d.r.hosts[a.Host] == nil {
		return
	}
	p, ok := d.tracker.Take(a.OuterID)
	if !ok {
		return
	}
	d.finishDelegated(p, &delegationAnswer{Answer: a.Answer,
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
func (d *delegator) finishDelegated(p *delegation.Pending[*Session], a *delegationAnswer) {
	outcome, why := delegation.Check(&p.Request, &a.Answer, p.Requester.Bare)
	d.r.deleg.Metrics.Done(&p.Request, outcome)
	if why != "" {
		d.r.log.Warn("delegated IQ failed", "host", p.Host, "namespace", p.Namespace, "entity", p.Entity,
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
func (d *delegator) delegationTimeout(p *delegation.Pending[*Session]) {
	d.r.deleg.Metrics.Done(&p.Request, delegation.OutcomeTimeout)
	d.r.log.Warn("delegated IQ timed out", "host", p.Host, "namespace", p.Namespace, "entity", p.Entity, "requester", p.From)
	p.Requester.Send(iqError(&p.Request, xmpp.ErrServiceUnavailable))
}

// failVia answers every IQ that was forwarded over a component connection that ended
// (closed here, or gone with its node).
func (d *delegator) failVia(key string) {
	if d.tracker == nil {
		return
	}
	for _, p := range d.tracker.FailVia(key) {
		d.fail(p)
	}
}

// outstanding is how many delegated IQs wait on a connection (least-pending balancing).
func (d *delegator) outstanding(key string) int64 { return d.tracker.Outstanding(key) }

// discoNest asks one connection of entity for its nesting answers about ns. The query
// ids carry this node's tag, so answers that arrive on another node come back here.
func (d *delegator) discoNest(c target, host, entity, dns, ns string) {
	if ns == delegation.BareDiscoInfoRemaining || ns == delegation.BareDiscoItemsRemaining {
		return
	}
	for _, bare := range []bool{false, true} {
		id := d.tracker.NewID()
		d.r.deleg.Disco.Query(id, host, entity, ns, bare)
		c.Send(d.r.link, delegation.DiscoQuery(id, host, entity, delegation.DiscoNode(dns, ns, bare)))
	}
}

// rulesChanged applies a rule change: every affected managing entity that is connected
// gets a fresh advertisement and is asked for disco nesting of what is new to it.
func (d *delegator) rulesChanged(ch delegation.Change) {
	d.accountsChanged(ch)
	for _, entity := range ch.Affected {
		if isAccount(entity) {
			continue
		}
		sessions := d.r.comps.dir.Locals(entity)
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
				d.r.deleg.Disco.Forget(entity, ns)
			}
		}
		if len(sessions) == 0 {
			continue
		}
		dns := d.r.componentOpts(entity).DelegationNS
		adv := delegation.Advertisement(dns, ch.Host, entity, newRules)
		for _, s := range sessions {
			s.Send(adv)
		}
		for _, n := range newRules {
			if !old[n.Namespace] {
				d.discoNest(localTarget(sessions[0]), ch.Host, entity, dns, n.Namespace)
			}
		}
		d.r.log.Info("delegations changed", "host", ch.Host, "entity", entity, "namespaces", len(newRules))
	}
}
