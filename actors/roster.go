package actors

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/roster"
	"github.com/switchboard-im/switchboard/xmpp"
)

// rosterTimeout bounds one roster read or write in etcd.
const rosterTimeout = 10 * time.Second

var errNotAcceptable = &xmpp.StanzaError{Type: xmpp.ErrModify, Condition: "not-acceptable"}

// rosterIQ answers a roster get or set on a user's roster (RFC 6121 §2), from the user
// or from a component with the roster privilege (XEP-0356 §4). It runs in its own
// goroutine: etcd is not asked from inside the host actor, so one slow roster never
// holds up the host's other answers.
func (h *Host) rosterIQ(m *serverIQ, bare string) {
	r := h.router
	env := m.env
	replyFrom := bare
	if m.sender.Kind == KindC2S && m.sender.Bare == bare && env.To == "" {
		replyFrom = "" // RFC 6120 §10.3.3: no 'to', answered without a 'from'
	}
	fail := func(e *xmpp.StanzaError) { m.sender.Send(xmpp.ErrorReply(env, replyFrom, m.from, e)) }
	local, _, _ := cutAt(bare)
	ctx, cancel := context.WithTimeout(context.Background(), rosterTimeout)
	defer cancel()

	if env.Type == "get" {
		req, err := roster.ParseGet(env.Raw)
		if err != nil {
			fail(xmpp.ErrBadRequest)
			return
		}
		// The user's own session (not a privileged entity acting as the user, which has no
		// resource) becomes interested: its owner entry is updated before it gets the
		// roster, so every later change is pushed to it.
		if s := m.sender; s.Kind == KindC2S && s.Bare == bare && s.Res != "" && !s.rosterInterested.Swap(true) {
			r.users.register(s, false)
		}
		ros, err := r.rosters.Get(ctx, h.Domain, local)
		if err != nil {
			r.log.Warn("roster get failed", "user", bare, "err", err)
			fail(xmpp.ErrInternalServerError)
			return
		}
		if req.Ver != nil && *req.Ver == ros.Version() && ros.Ver != 0 {
			// RFC 6121 §2.6.3: the client's copy is current; changes would come as pushes.
			m.sender.Send(xmpp.IQResult(env.ID, replyFrom, m.from, nil))
			return
		}
		m.sender.Send(xmpp.IQResult(env.ID, replyFrom, m.from, roster.Query(ros)))
		return
	}

	req, err := roster.ParseSet(env.Raw)
	switch {
	case errors.Is(err, roster.ErrJIDMalformed):
		fail(xmpp.ErrJIDMalformed)
		return
	case errors.Is(err, roster.ErrNotAcceptable):
		fail(errNotAcceptable)
		return
	case err != nil:
		fail(xmpp.ErrBadRequest)
		return
	}
	if req.Item.JID == bare && !req.Remove {
		fail(xmpp.ErrNotAllowed) // a user is not a contact of itself
		return
	}
	var pushed, prev roster.Item
	ros, changed, err := r.rosters.Update(ctx, h.Domain, local, func(ros *roster.Roster) (bool, error) {
		var err error
		pushed, prev, err = roster.Apply(ros, req)
		return err == nil, err
	})
	switch {
	case errors.Is(err, roster.ErrItemNotFound):
		fail(xmpp.ErrItemNotFound)
		return
	case errors.Is(err, roster.ErrTooMany):
		fail(xmpp.ErrResourceConstraint)
		return
	case err != nil:
		r.log.Warn("roster set failed", "user", bare, "err", err)
		fail(xmpp.ErrInternalServerError)
		return
	}
	m.sender.Send(xmpp.IQResult(env.ID, replyFrom, m.from, nil))
	if changed {
		r.subs.rosterPush(h.Domain, bare, ros.Version(), pushed)
	}
	if req.Remove {
		r.subs.removedItem(bare, prev)
	}
}

// rosterPush tells everyone who follows a user's roster of a changed item: each of the
// user's interested resources, those that asked for the roster (RFC 6121 §2.1.6), and the
// components that hold the roster privilege with pushes on this host (XEP-0356 §4.4).
func (sub *subscriptions) rosterPush(host, bare, ver string, it roster.Item) {
	payload := roster.PushQuery(ver, it)
	push := xmpp.IQSet("push-"+xmpp.NewID(), bare, bare, payload)
	if node, self := sub.r.users.owner(bare); self {
		sub.r.users.ownerPush(bare, push, false)
	} else {
		sub.r.link.ToNode(node, &pb.UserPush{Bare: bare, Stanza: push})
	}
	for _, c := range sub.r.priv.privilegedComponents() {
		if !sub.r.priv.privileges(host, c).RosterPush() {
			continue
		}
		if ref, ok := sub.r.comps.pickComponent(c, bare); ok {
			ref.Send(sub.r.link, xmpp.IQSet("push-"+xmpp.NewID(), bare, c, payload))
		}
	}
}
