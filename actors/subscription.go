package actors

import (
	"context"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/roster"
	"github.com/switchboard-im/switchboard/xmpp"
)

// subscriptions are presence subscriptions and presence broadcast to contacts (RFC 6121
// §3, §4), and roster pushes (roster.go), with the rosters in etcd.
type subscriptions struct{ r *Router }

// Presence subscriptions and presence broadcast to contacts (RFC 6121 §3, §4), for the
// users of the hosts this cluster serves (there is no s2s: subscription stanzas to other
// domains go to components, or nowhere). Subscription states live in the rosters in etcd;
// roster work runs on the session's own serial queue, never in its reader goroutine and
// never in an actor, so a slow etcd delays only that user's presence work, in order.

// workQueue runs one session's roster-bound work in order, on a goroutine that exists
// only while there is work.
type workQueue struct {
	mu      sync.Mutex
	q       []func()
	running bool
}

// later queues f on the session's work queue; it counts as the session's work until it
// has run (backpressure.go), so the queue's length is bounded by the reader waiting.
func (s *Session) later(f func()) {
	wq := s.queue.Load()
	if wq == nil {
		s.queue.CompareAndSwap(nil, &workQueue{})
		wq = s.queue.Load()
	}
	s.startWork()
	wq.push(func() { f(); s.endWork() }, 0)
}

// push queues f behind what the queue holds, and starts its goroutine if none runs.
// max bounds the queue (0: no bound); false: it is full and f was not queued.
func (wq *workQueue) push(f func(), max int) bool {
	wq.mu.Lock()
	if max > 0 && len(wq.q) >= max {
		wq.mu.Unlock()
		return false
	}
	wq.q = append(wq.q, f)
	if wq.running {
		wq.mu.Unlock()
		return true
	}
	wq.running = true
	wq.mu.Unlock()
	go wq.run()
	return true
}

// run works the queue until it is empty.
func (wq *workQueue) run() {
	for {
		wq.mu.Lock()
		if len(wq.q) == 0 {
			wq.running = false
			wq.q = nil
			wq.mu.Unlock()
			return
		}
		f := wq.q[0]
		wq.q = wq.q[1:]
		wq.mu.Unlock()
		f()
	}
}

func rosterCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), rosterTimeout)
}

// isLocalUser reports whether bare is an account of a host served here.
func (sub *subscriptions) isLocalUser(bare string) (*Host, string, bool) {
	local, domain, ok := cutAt(bare)
	if !ok || local == "" {
		return nil, "", false
	}
	h := sub.r.hosts[domain]
	if h == nil || !sub.r.accounts.Exists(domain, local) {
		return nil, "", false
	}
	return h, local, true
}

// updateRoster applies fn to a user's roster and pushes the item it changed.
func (sub *subscriptions) updateRoster(host, bare string, fn func(*roster.Roster) (bool, roster.Item)) (bool, error) {
	local, _, _ := cutAt(bare)
	ctx, cancel := rosterCtx()
	defer cancel()
	var it roster.Item
	ros, changed, err := sub.r.rosters.Update(ctx, host, local, func(ros *roster.Roster) (bool, error) {
		var ch bool
		ch, it = fn(ros)
		return ch, nil
	})
	if err != nil {
		sub.r.log.Warn("roster update failed", "user", bare, "err", err)
		return false, err
	}
	if changed && it.JID != "" {
		sub.rosterPush(host, bare, ros.Version(), it)
	}
	return changed, nil
}

// outboundSubscription handles a subscription stanza a client sends (RFC 6121 §3): its
// roster changes, then the stanza goes on, stamped with the user's bare JID.
func (sub *subscriptions) outboundSubscription(s *Session, env *xmpp.Envelope) {
	to, err := jid.Parse(env.To)
	if err != nil {
		return // presence errors are not answered
	}
	contact := to.Bare().String()
	if contact == s.Bare || sub.r.blocked(s.Bare, contact) {
		return // to oneself, or to a JID one blocks (XEP-0191: not routed)
	}
	typ := env.Type
	stanza := env.Rewrite(s.Bare, contact)
	s.later(func() {
		var route, saw bool
		if _, err := sub.updateRoster(s.Host, s.Bare, func(ros *roster.Roster) (bool, roster.Item) {
			saw = ros.Sees(contact)
			changed, it, rt := roster.Outbound(ros, typ, contact)
			route = rt
			return changed, it
		}); err != nil || !route {
			return
		}
		sub.sendSubscription(s.Bare, contact, typ, stanza, saw)
	})
}

// sendSubscription delivers a subscription stanza from user to contact, and the presence
// that goes with an approval, or with the cancellation of a subscription the contact had
// (saw: RFC 6121 §3.1.5, §3.2.2). Between a user and a JID it blocks, nothing goes
// (XEP-0191): the contact's roster does not change either.
func (sub *subscriptions) sendSubscription(user, contact, typ string, stanza []byte, saw bool) {
	if sub.r.blocked(user, contact) || sub.r.blocked(contact, user) {
		return
	}
	if h, _, ok := sub.isLocalUser(contact); ok {
		sub.inboundSubscription(h, contact, user, typ, stanza)
	} else if _, domain, _ := cutAt(contact); domain != "" {
		if c, ok := sub.r.comps.pickComponent(domain, user); ok {
			c.Send(sub.r.link, stanza)
		} else if sub.r.hosts[domain] == nil {
			sub.r.users.deliverTo(contact, stanza) // another server's user (s2s)
		}
	}
	switch typ {
	case roster.Subscribed:
		sub.presenceTo(user, contact, false)
	case roster.Unsubscribed:
		if saw {
			sub.presenceTo(user, contact, true)
		}
	}
}

// inboundSubscription applies a subscription stanza from contact to one of this
// cluster's users and delivers it to the user's available resources when RFC 6121 says so.
func (sub *subscriptions) inboundSubscription(h *Host, user, contact, typ string, stanza []byte) {
	var deliver, approve bool
	if _, err := sub.updateRoster(h.Domain, user, func(ros *roster.Roster) (bool, roster.Item) {
		changed, it, d, a := roster.Inbound(ros, typ, contact)
		deliver, approve = d, a
		return changed, it
	}); err != nil {
		return
	}
	if deliver {
		sub.r.users.deliverTo(user, stanza)
	}
	switch {
	case approve:
		// The user already lets the contact see its presence: answered for it (§3.1.3).
		sub.sendSubscription(user, contact, roster.Subscribed,
			xmpp.Presence(roster.Subscribed, user, contact), true)
	case typ == roster.Unsubscribe && deliver:
		sub.presenceTo(user, contact, true) // §3.3.3
	}
}

// presenceTo sends to an address the current presence of each available resource of a
// user (unavailable: an unavailable presence from each), through the user's owner.
func (sub *subscriptions) presenceTo(bare, to string, unavailable bool) {
	if _, _, ok := sub.isLocalUser(bare); !ok {
		return
	}
	if node, self := sub.r.users.owner(bare); !self {
		sub.r.link.ToNode(node, &pb.UserPresenceTo{Bare: bare, To: to, Unavailable: unavailable})
		return
	}
	sub.r.users.ownerPresenceTo(bare, to, unavailable)
}

// broadcastToContacts sends a resource's presence to the contacts that are subscribed to
// it (RFC 6121 §4.2.2, §4.4.2, §4.5.2). On initial presence it also asks for the
// presence of the contacts it is subscribed to (§4.2.3, a probe answered at once, since
// every contact is this cluster's), and hands over subscription requests that came
// while the user was offline (§3.1.3).
func (sub *subscriptions) broadcastToContacts(s *Session, presence []byte, initial, unavailable bool) {
	local, _, _ := cutAt(s.Bare)
	ctx, cancel := rosterCtx()
	ros, err := sub.r.rosters.Get(ctx, s.Host, local)
	cancel()
	if err != nil {
		sub.r.log.Warn("presence broadcast: roster unavailable", "user", s.Bare, "err", err)
		return
	}
	hosts := map[string]bool{}
	for _, it := range ros.Items {
		if sub.r.blocked(s.Bare, it.JID) || sub.r.blocked(it.JID, s.Full) {
			continue // XEP-0191: neither way between a user and a JID it blocks
		}
		if it.Subscription == roster.SubFrom || it.Subscription == roster.SubBoth {
			sub.r.users.deliverTo(it.JID, readdress(presence, s.Full, it.JID))
			if _, domain, _ := cutAt(it.JID); sub.r.hosts[domain] != nil {
				hosts[domain] = true
			}
		}
	}
	sub.r.priv.rosterPresence(s, presence, initial || unavailable, hosts)
	if !initial {
		return
	}
	for _, it := range ros.Items {
		if (it.Subscription == roster.SubTo || it.Subscription == roster.SubBoth) && !sub.r.blocked(s.Bare, it.JID) {
			if _, _, ok := sub.isLocalUser(it.JID); ok {
				sub.presenceTo(it.JID, s.Full, false)
			} else {
				// Another server's user: a probe, answered by that server (§4.3).
				sub.r.users.deliverTo(it.JID, xmpp.Presence("probe", s.Bare, it.JID))
			}
		}
	}
	for _, from := range ros.PendingIn {
		if !sub.r.blocked(s.Bare, from) {
			s.Send(xmpp.Presence(roster.Subscribe, from, s.Bare))
		}
	}
}

// removedItem tells a contact what removing it from the user's roster ended (RFC 6121
// §2.5.2): the user's subscription to it, and its subscription to the user.
func (sub *subscriptions) removedItem(user string, prev roster.Item) {
	if prev.Subscription == roster.SubTo || prev.Subscription == roster.SubBoth || prev.Ask {
		sub.sendSubscription(user, prev.JID, roster.Unsubscribe,
			xmpp.Presence(roster.Unsubscribe, user, prev.JID), false)
	}
	if prev.Subscription == roster.SubFrom || prev.Subscription == roster.SubBoth {
		sub.sendSubscription(user, prev.JID, roster.Unsubscribed,
			xmpp.Presence(roster.Unsubscribed, user, prev.JID), true)
	}
}

// fromRemote handles, for one of this cluster's users, a subscription stanza or a probe
// that another server's user sent (RFC 6121 §3, §4.3), on the incoming stream's own work
// queue: the user's roster changes as for a local contact; a probe from a contact the
// user lets see its presence gets the presence of each available resource (else nothing:
// §4.3.2 lets the server say nothing).
func (sub *subscriptions) fromRemote(s *Session, env *xmpp.Envelope) {
	to, err := jid.Parse(env.To)
	from, ferr := jid.Parse(env.From)
	if err != nil || ferr != nil {
		return
	}
	user, contact := to.Bare().String(), from.Bare().String()
	h, local, ok := sub.isLocalUser(user)
	if !ok || sub.r.blocked(user, contact) {
		return
	}
	typ := env.Type
	stanza := env.RewriteNS(contact, user, xmpp.NSClient)
	s.later(func() {
		if typ != "probe" {
			sub.inboundSubscription(h, user, contact, typ, stanza)
			return
		}
		ctx, cancel := rosterCtx()
		ros, err := sub.r.rosters.Get(ctx, h.Domain, local)
		cancel()
		if err == nil && ros.Sees(contact) {
			sub.presenceTo(user, from.String(), false)
		}
	})
}
