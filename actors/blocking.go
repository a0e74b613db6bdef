package actors

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/switchboard-im/switchboard/blocking"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/roster"
	"github.com/switchboard-im/switchboard/xmpp"
)

// XEP-0191 blocking command. Each user's blocklist is in etcd (blocking.Store), and every
// node holds every list (blocking.Cache, kept by a watch), so that the checks are made
// wherever a stanza is routed, without asking etcd or another node:
//
//   - the blocking stage (route.go, after address): what a user sends to a JID it blocks
//     is refused with not-acceptable and <blocked/> (messages, IQ requests) or dropped
//     (presence, answers); what a blocked JID sends the user is dropped, and an IQ request
//     gets service-unavailable, as if nobody were there;
//   - what the server sends on a user's behalf: presence broadcast and probe answers
//     (subscription.go, owners.go), subscription stanzas, offline messages (offline.go).
//
// A block or unblock is answered once every member enforces it: the node that wrote it
// waits until its own copy and every other member's (pb.BlocklistSync) has applied the
// written revision. Then the user's resources that asked for the list get the push, and
// the contacts it covers see the user go unavailable (block) or come back (unblock).

// NSBlocking is XEP-0191's namespace.
const NSBlocking = blocking.NS

// errBlocked answers what a user sends to a JID it blocks (XEP-0191 §3.3).
var errBlocked = &xmpp.StanzaError{Type: xmpp.ErrCancel, Condition: "not-acceptable",
	App: "<blocked xmlns='" + blocking.NSErrors + "'/>"}

// blockSyncTimeout bounds how long a block waits for the members to enforce it; a member
// that does not answer by then catches up through its watch.
const blockSyncTimeout = 5 * time.Second

// blocking: XEP-0191, between a user and the JIDs it blocks, both ways. A user's own
// addresses are never blocked for it. Without lists it costs one atomic load.
func (r *Router) blocking(rt *routed) verdict {
	bl, env := r.blocklists, rt.env
	// (The served domain itself is not blocked: the user's server stays reachable.)
	if s := rt.sender; s.Kind == KindC2S && rt.bare != s.Bare && (rt.host == nil || rt.bare != "") {
		if l := bl.Lookup(s.Bare); l != nil && l.Blocks(rt.to.Localpart(), rt.to.Domainpart(), rt.to.Resourcepart()) {
			if (env.Kind == xmpp.KindMessage && env.Type != "error") || (env.Kind == xmpp.KindIQ && isRequest(env)) {
				return refuse(rt.toStr, errBlocked)
			}
			return handled
		}
	}
	if rt.bare != "" && rt.bare != bareOf(rt.from) {
		if l := bl.Lookup(rt.bare); l != nil && r.covers(l, rt.from) {
			if env.Kind == xmpp.KindIQ && isRequest(env) {
				return refuse(rt.toStr, xmpp.ErrServiceUnavailable)
			}
			return handled
		}
	}
	return pass
}

// covers reports whether a list blocks an address.
func (r *Router) covers(l *blocking.List, addr string) bool {
	j, err := r.jids.parse(addr)
	return err == nil && l.Blocks(j.Localpart(), j.Domainpart(), j.Resourcepart())
}

// blocked reports whether a user (a bare JID) blocks an address (not its own).
func (r *Router) blocked(user, addr string) bool {
	l := r.blocklists.Lookup(user)
	return l != nil && bareOf(addr) != user && r.covers(l, addr)
}

// blocklist answers the user's own XEP-0191 IQs (without 'to', to its bare JID or to the
// server): get the list, block, unblock. etcd is asked on a goroutine of its own, as for
// rosters.
func (c *iqCall) blocklist() {
	h, s := c.h, c.m.sender
	if s.Kind != KindC2S || s.Host != h.Domain || (c.from != h.Domain && !c.own) {
		c.fail(xmpp.ErrForbidden) // only one's own list
		return
	}
	req, err := blocking.ParseIQ(c.m.env.Raw)
	switch {
	case errors.Is(err, blocking.ErrJIDMalformed):
		c.fail(xmpp.ErrJIDMalformed)
		return
	case err != nil:
		c.fail(xmpp.ErrBadRequest)
		return
	}
	r := h.router
	if r.blocklists.Store() == nil {
		if req.Op == "blocklist" {
			c.ok(blocking.Payload("blocklist", nil)) // no storage: nobody is blocked
		} else {
			c.fail(xmpp.ErrServiceUnavailable)
		}
		return
	}
	c.goesOn = true
	go func() {
		defer s.endWork()
		r.blocklistIQ(c, req)
	}()
}

// blocklistIQ does what a blocking IQ asks, in etcd, and answers it.
func (r *Router) blocklistIQ(c *iqCall, req blocking.Request) {
	s := c.m.sender
	st := r.blocklists.Store()
	ctx, cancel := rosterCtx()
	defer cancel()
	var (
		changed []blocking.Item
		rev     int64
		err     error
	)
	switch req.Op {
	case "blocklist":
		// Interested from now on: its owner entry is updated before it gets the list,
		// so every later change is pushed to it (XEP-0191 §3.2).
		if s.Res != "" && !s.blocklistInterested.Swap(true) {
			r.users.register(s, false)
		}
		items, _, err := st.Get(ctx, s.Host, s.Local)
		if err != nil {
			r.log.Warn("blocklist get failed", "user", s.Bare, "err", err)
			c.fail(xmpp.ErrInternalServerError)
			return
		}
		c.ok(blocking.Payload("blocklist", blocking.NewList(items).Items()))
		return
	case "block":
		changed, rev, err = st.Block(ctx, s.Host, s.Local, req.Items)
	default:
		changed, rev, err = st.Unblock(ctx, s.Host, s.Local, req.Items)
	}
	switch {
	case errors.Is(err, blocking.ErrTooMany):
		c.fail(xmpp.ErrResourceConstraint)
		return
	case err != nil:
		r.log.Warn("blocklist change failed", "user", s.Bare, "op", req.Op, "err", err)
		c.fail(xmpp.ErrInternalServerError)
		return
	}
	r.syncBlocklists(rev)
	c.ok(nil)
	if len(changed) == 0 {
		return
	}
	pushed := changed
	if req.Op == "unblock" && len(req.Items) == 0 {
		pushed = nil // XEP-0191 §3.5: unblocking all is pushed without items
	}
	r.users.blocklistPush(s.Bare, blocking.Payload(req.Op, pushed))
	r.subs.blockPresence(s.Host, s.Bare, changed, req.Op == "block")
}

// syncBlocklists waits until every member enforces the blocklists as of revision rev:
// this node's copy, and every other member that knows how to say so (proto 6), asked at
// once. One that does not answer within blockSyncTimeout is not waited for longer.
func (r *Router) syncBlocklists(rev int64) {
	if rev == 0 {
		return
	}
	var wg sync.WaitGroup
	if r.cluster != nil {
		for _, m := range r.cluster.Members() {
			if m.ID == r.nodeID || m.Proto < 6 {
				continue
			}
			wg.Go(func() {
				if _, err := r.link.Request(m.ID, &pb.BlocklistSync{Revision: rev}, blockSyncTimeout); err != nil {
					r.log.Warn("a member did not confirm a blocklist change in time", "node", m.ID, "revision", rev, "err", err)
				}
			})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), blockSyncTimeout)
	defer cancel()
	if err := r.blocklists.WaitApplied(ctx, rev); err != nil {
		r.log.Warn("blocklist change not seen by this node's watch in time", "revision", rev, "err", err)
	}
	wg.Wait()
}

// BlocklistSync answers another node's pb.BlocklistSync once this node's copy of the
// blocklists has applied the revision, or after blockSyncTimeout.
func (in inbound) BlocklistSync(m *pb.BlocklistSync, done func()) {
	bl := in.r.blocklists
	if bl == nil || bl.Applied() >= m.Revision {
		done()
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), blockSyncTimeout)
		defer cancel()
		_ = bl.WaitApplied(ctx, m.Revision)
		done()
	}()
}

// blocklistPush sends a blocklist push to each of the user's resources that asked for
// the list, through the user's owner (an owner too old to know which did gets none).
func (u *users) blocklistPush(bare string, payload []byte) {
	push := xmpp.IQSet("push-"+xmpp.NewID(), bare, bare, payload)
	node, self := u.owner(bare)
	switch {
	case self:
		u.ownerPush(bare, push, true)
	case u.r.memberProto(node) >= 6:
		u.r.link.ToNode(node, &pb.UserPush{Bare: bare, Stanza: push, Blocklist: true})
	}
}

// memberProto is the cross-node message version a member understands (0: not a member).
func (r *Router) memberProto(node string) int {
	if r.cluster == nil {
		return 0
	}
	for _, m := range r.cluster.Members() {
		if m.ID == node {
			return m.Proto
		}
	}
	return 0
}

// blockPresence is what a block or unblock does to presence (XEP-0191 §3.3, §3.4, as
// XEP-0016 does): the contacts in the user's roster that the changed items cover and
// that may see the user's presence (subscription from or both) get an unavailable
// presence from each of the user's available resources on a block, and their current
// presence again on an unblock (unless the list still blocks them); on an unblock, the
// user's resources also get the current presence of the contacts the user is subscribed
// to (to or both), which the block had kept from them.
func (sub *subscriptions) blockPresence(host, bare string, items []blocking.Item, block bool) {
	if sub.r.rosters == nil {
		return
	}
	local, _, _ := cutAt(bare)
	ctx, cancel := rosterCtx()
	ros, err := sub.r.rosters.Get(ctx, host, local)
	cancel()
	if err != nil {
		sub.r.log.Warn("blocklist presence: roster unavailable", "user", bare, "err", err)
		return
	}
	for _, it := range ros.Items {
		sees := it.Subscription == roster.SubFrom || it.Subscription == roster.SubBoth
		seen := it.Subscription == roster.SubTo || it.Subscription == roster.SubBoth
		probe := false
		for _, to := range coveredAddrs(it.JID, items) {
			switch {
			case block:
				if sees {
					sub.presenceTo(bare, to, true)
				}
			case !sub.r.blocked(bare, to):
				if sees {
					sub.presenceTo(bare, to, false)
				}
				probe = probe || seen
			}
		}
		if probe {
			// (The contact's owner leaves out the resources the list still blocks.)
			sub.presenceTo(it.JID, bare, false)
		}
	}
}

// coveredAddrs are the addresses of a contact (a bare JID) that items cover: the bare JID
// when one covers all of it, else the full JIDs of the resources they name.
func coveredAddrs(contact string, items []blocking.Item) []string {
	c, err := blocking.ParseItem(contact)
	if err != nil {
		return nil
	}
	var out []string
	for _, it := range items {
		if !it.Covers(c.Local, c.Domain, it.Resource) {
			continue
		}
		if it.Resource == "" {
			return []string{contact}
		}
		out = append(out, contact+"/"+it.Resource)
	}
	return out
}
