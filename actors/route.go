package actors

import (
	"context"
	"log/slog"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/roster"
	"github.com/switchboard-im/switchboard/xmpp"
)

// The routing decision, as ordered stages. A connection's reader goroutine calls Route
// for every stanza it reads; each stage either passes the stanza on to the next, takes
// care of it (handled), or refuses it with a stanza error, which route bounces to the
// sender and counts, in one place. The stages, in order:
//
//  1. noTo:         no 'to' — a client's presence broadcast, or an IQ the server answers
//                   for the account (delegation first); a message goes to the own bare JID
//  2. subscription: a client's presence subscription stanza (RFC 6121 §3)
//  3. address:      'to' must be a JID
//  4. blocking:     between a user and the JIDs it blocks, both ways (XEP-0191, blocking.go)
//  5. managing:     an answer to an IQ the server forwarded to a managing entity
//  6. delegation:   an IQ request in a delegated namespace (XEP-0355)
//  7. privileged:   what a privileged entity sends on behalf of users (XEP-0356)
//  8. server:       what the served domain, or a user's bare JID, answers itself
//  9. user:         delivery to a user's sessions (RFC 6121 §8.5)
// 10. component:    a connected component's domain; anything else a user sends is for a
//                   remote domain: federation (s2s.go), or remote-server-not-found
//
// Stages take the stanza as a *routed that lives on route's stack, and are called
// directly (not through a table of functions) so that it stays there: the routing of a
// stanza allocates nothing of its own.

// verdict is what a routing stage says of a stanza.
type verdict struct {
	state verdictState
	from  string // refused: the address the error comes from
	err   *xmpp.StanzaError
}

type verdictState uint8

const (
	passed  verdictState = iota // not this stage's business: the next one decides
	done                        // taken care of (delivered, answered, or dropped on purpose)
	refused                     // answered with err, from 'from'
)

var (
	pass    = verdict{}
	handled = verdict{state: done}
)

func refuse(from string, e *xmpp.StanzaError) verdict {
	return verdict{state: refused, from: from, err: e}
}

// routed is one stanza on its way, as the stages see it.
type routed struct {
	out    *nodelink.Outbox // what goes to other nodes is gathered here (nil: sent at once)
	sender *Session
	from   string // the sender's address as the server vouches for it
	env    *xmpp.Envelope
	toStr  string  // 'to' as addressed (a message without 'to': the sender's bare JID)
	to     jid.JID // toStr parsed (from stage 3 on)
	host   *Host   // the served host of 'to' (nil: another domain)
	bare   string  // 'to' as a bare JID, for a user of a served host ("" otherwise)
}

// Route decides where one stanza goes. from is the sender's address as the server vouches
// for it (stamped for clients, checked for components).
func (r *Router) Route(sender *Session, from string, env *xmpp.Envelope) {
	r.route(nil, sender, from, env)
}

// routeMade routes a stanza the server made (an error, a presence) as sent by sender from
// from.
func (r *Router) routeMade(sender *Session, from string, b []byte) {
	if env, err := xmpp.ParseStanza(b); err == nil {
		r.Route(sender, from, env)
	}
}

// route is Route for a stanza a connection's reader read: what goes to other nodes is
// gathered in out (nil: sent at once).
func (r *Router) route(out *nodelink.Outbox, sender *Session, from string, env *xmpp.Envelope) {
	rt := routed{out: out, sender: sender, from: from, env: env, toStr: env.To}
	v := r.decide(&rt)
	if r.traces.all.Load() != nil {
		outcome := "routed"
		if v.state == refused {
			outcome = v.err.Condition
		}
		r.traced(from, env, outcome)
	}
	if v.state == refused {
		r.metrics.RoutingErrors.WithLabelValues(v.err.Condition).Inc()
		r.logRefusal(sender, from, env, v.err)
		sender.Send(xmpp.ErrorReply(env, v.from, from, v.err))
		return
	}
	if env.Kind == xmpp.KindMessage && sender.Kind == KindC2S {
		r.users.sentCarbons(sender, from, env) // XEP-0280: copies to the user's other resources
	}
}

// logRefusal logs, at debug level, a stanza the router refused: the condition, the
// sender, the addresses and the stanza's first bytes (a refusal is otherwise only a count
// in switchboard_routing_errors_total).
func (r *Router) logRefusal(sender *Session, from string, env *xmpp.Envelope, e *xmpp.StanzaError) {
	if !r.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	r.log.Debug("stanza refused", "condition", e.Condition, "text", e.Text, "sender", sender.Full,
		"from", from, "to", env.To, "stanza", firstBytes(env.Raw))
}

// firstBytes is the start of a stanza for a log line.
func firstBytes(raw []byte) string {
	const n = 200
	if len(raw) > n {
		return string(raw[:n]) + "…"
	}
	return string(raw)
}

// decide runs the stages in order until one takes care of the stanza or refuses it.
func (r *Router) decide(rt *routed) verdict {
	if rt.toStr == "" {
		if v := r.noTo(rt); v.state != passed {
			return v
		}
	}
	if v := r.subscription(rt); v.state != passed {
		return v
	}
	if v := r.address(rt); v.state != passed {
		return v
	}
	if v := r.blocking(rt); v.state != passed {
		return v
	}
	if rt.host == nil {
		return r.component(rt)
	}
	if v := r.managing(rt); v.state != passed {
		return v
	}
	if v := r.delegation(rt); v.state != passed {
		return v
	}
	if v := r.privileged(rt); v.state != passed {
		return v
	}
	if v := r.server(rt); v.state != passed {
		return v
	}
	return r.user(rt)
}

// noTo: a stanza without 'to' (RFC 6120 §10.3). A client's presence is its broadcast; its
// IQ is the server's to answer on behalf of the account, unless its namespace is
// delegated; its message goes to its own bare JID (the next stages route it). A
// component must address what it sends.
func (r *Router) noTo(rt *routed) verdict {
	s, env := rt.sender, rt.env
	if s.Kind != KindC2S {
		return refuse("", xmpp.ErrBadRequest)
	}
	switch env.Kind {
	case xmpp.KindPresence:
		r.users.broadcastPresence(s, env)
		return handled
	case xmpp.KindIQ:
		h := r.hosts[s.Host]
		if isRequest(env) {
			if v := r.del.delegateIQ(rt.out, h, s, rt.from, "", env); v.state != passed {
				return v
			}
		}
		h.serveIQ(s, rt.from, s.Bare, env)
		return handled
	}
	rt.toStr = s.Bare
	return pass
}

// subscription: a client's subscribe, subscribed, unsubscribe or unsubscribed changes
// rosters before it goes on (RFC 6121 §3); without roster storage it is routed as it is.
func (r *Router) subscription(rt *routed) verdict {
	env := rt.env
	if env.Kind != xmpp.KindPresence || r.rosters == nil {
		return pass
	}
	switch {
	case rt.sender.Kind == KindC2S && roster.IsSubscription(env.Type):
		r.subs.outboundSubscription(rt.sender, env)
		return handled
	case rt.sender.Kind == KindS2S && (roster.IsSubscription(env.Type) || env.Type == "probe"):
		// From a remote server: its user's subscription stanza, or its probe, for one
		// of this cluster's users (s2s.go).
		r.subs.fromRemote(rt.sender, env)
		return handled
	}
	return pass
}

// address parses 'to' and finds its served host, if any.
func (r *Router) address(rt *routed) verdict {
	to, err := r.jids.parse(rt.toStr)
	if err != nil {
		return refuse("", xmpp.ErrJIDMalformed)
	}
	rt.to = to
	if h := r.hosts[to.Domainpart()]; h != nil {
		rt.host = h
		if to.Localpart() != "" {
			rt.bare = to.Bare().String()
		} else if to.Resourcepart() != "" {
			return refuse(rt.toStr, xmpp.ErrServiceUnavailable) // the domain has no resources
		}
	}
	return pass
}

// managing: an IQ answer to the served domain may answer an IQ forwarded to a managing
// entity (or a disco nesting query).
func (r *Router) managing(rt *routed) verdict {
	if rt.bare != "" || rt.env.Kind != xmpp.KindIQ || isRequest(rt.env) {
		return pass
	}
	if r.del.managingReply(rt.out, rt.host, rt.from, rt.env) {
		return handled
	}
	return pass
}

// delegation: an IQ request to the domain, or to the bare JID of an existing account,
// whose namespace is delegated goes to its managing entity (XEP-0355).
func (r *Router) delegation(rt *routed) verdict {
	env := rt.env
	if env.Kind != xmpp.KindIQ || !isRequest(env) {
		return pass
	}
	if rt.bare == "" {
		return r.del.delegateIQ(rt.out, rt.host, rt.sender, rt.from, "", env)
	}
	if rt.to.Resourcepart() != "" || !r.accounts.Exists(rt.host.Domain, rt.to.Localpart()) {
		return pass
	}
	return r.del.delegateIQ(rt.out, rt.host, rt.sender, rt.from, rt.bare, env)
}

// privileged: an IQ a privileged entity sends as a user (to the user's bare JID), the
// answer to one, or a message it sends as a user (to the domain) (XEP-0356).
func (r *Router) privileged(rt *routed) verdict {
	env := rt.env
	switch {
	case rt.bare == "":
		if isPrivilegedIQ(env) {
			return r.priv.privilegedIQ(rt.host, rt.sender, rt.from, "", env)
		}
		if env.Kind == xmpp.KindMessage && env.HasChild && env.Child.Space == NSPrivilege && env.Child.Local == "privilege" {
			return r.priv.privilegedMessage(rt.host, rt.sender, rt.from, env)
		}
	case env.Kind == xmpp.KindIQ && rt.to.Resourcepart() == "":
		if isPrivilegedIQ(env) {
			return r.priv.privilegedIQ(rt.host, rt.sender, rt.from, rt.bare, env)
		}
		if isPrivilegedReply(env) {
			r.priv.routePrivilegedReply(rt.from, env)
			return handled
		}
	}
	return pass
}

// server: the served domain answers what is addressed to it (IQs; messages and presence
// to the bare domain have no handler yet and are dropped), and a user's bare JID answers
// IQs on the user's behalf (RFC 6121 §8.5.1).
func (r *Router) server(rt *routed) verdict {
	switch {
	case rt.bare == "":
		rt.host.toServer(rt.sender, rt.from, rt.env)
		return handled
	case rt.env.Kind == xmpp.KindIQ && rt.to.Resourcepart() == "":
		rt.host.serveIQ(rt.sender, rt.from, rt.bare, rt.env)
		return handled
	}
	return pass
}

// user: a message or presence for a user of a served host, or an IQ for one of its
// sessions.
func (r *Router) user(rt *routed) verdict {
	r.users.toUser(rt.sender, rt.from, rt.bare, rt.to.Resourcepart(), rt.toStr, rt.env)
	return handled
}

// component: a domain not served here is a component's, when one is connected (on any
// node); a configured component that is not connected is service-unavailable; any other
// domain is remote, and there is no s2s yet.
func (r *Router) component(rt *routed) verdict {
	domain := rt.to.Domainpart()
	if c, ok := r.comps.pickComponent(domain, bareOf(rt.from)); ok {
		r.sendVia(c.Handle, rt.out, stampIn(rt.env, rt.from, rt.toStr, xmpp.NSComponent))
		return handled
	}
	if r.comps.isComponentDomain(domain) {
		return refuse(rt.toStr, xmpp.ErrServiceUnavailable)
	}
	if local := rt.sender.Host; r.s2s.enabled() && rt.sender.Kind == KindC2S && r.hosts[local] != nil {
		// A user's stanza for another domain: federation (s2s.go).
		r.s2s.send(local, domain, stampIn(rt.env, rt.from, rt.toStr, xmpp.NSServer))
		r.s2s.waitIfBusy(rt.out, local, domain)
		return handled
	}
	if rt.env.Kind == xmpp.KindPresence {
		return handled // presence to nowhere is dropped, not answered
	}
	return refuse(rt.toStr, xmpp.ErrRemoteServerNotFound)
}

func isRequest(env *xmpp.Envelope) bool { return env.Type == "get" || env.Type == "set" }

func isPrivilegedIQ(env *xmpp.Envelope) bool {
	return env.Kind == xmpp.KindIQ && env.HasChild && env.Child.Space == NSPrivilege && env.Child.Local == "privileged_iq"
}

func bareOf(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

// sendVia sends b to t, through out when the session is on another node and the caller
// is a reader with an outbox.
func (r *Router) sendVia(t target, out *nodelink.Outbox, b []byte) {
	if !t.IsLocal() && out != nil {
		out.ToSession(t.PID, b)
		return
	}
	t.Send(r.link, b)
}

// writeVia sends to t what write makes (appending to the slice it is given): into the
// outbox's buffer for the session when it is on another node and the caller is a reader
// with an outbox, else as a stanza of its own.
func (r *Router) writeVia(t target, out *nodelink.Outbox, write func([]byte) []byte) {
	if !t.IsLocal() && out != nil {
		out.AppendTo(t.PID, write)
		return
	}
	t.Send(r.link, write(nil))
}

// closeTarget ends the session's stream with a stream error.
func (r *Router) closeTarget(t target, cond, text string) {
	if t.IsLocal() {
		if cond == "conflict" {
			t.Local.replaced.Store(true)
		}
		t.Local.Close(&xmpp.StreamError{Condition: cond, Text: text})
		return
	}
	if t.PID != nil {
		r.link.Send(t.PID, &pb.CloseStream{Condition: cond, Text: text})
	}
}
