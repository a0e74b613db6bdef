package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/directory"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// users is the user side of routing: binding client sessions here and with their owner
// node, the owner tables of the users this node owns (delivery by RFC 6121 §8.5,
// presence fan-out to a user's resources), and re-homing when members change.
type users struct {
	r        *Router
	sessions *directory.Sessions[*Session] // client sessions of this node's sockets
	owners   *directory.Owners[*Session]   // owner tables of the users this node owns
	offline  offlineWork                   // each user's offline writes, in order (offline.go)
}

// User sessions are partitioned: every bare JID has an owner node (rendezvous hashing
// over the live members, cluster.Owner), which keeps that user's resource table: where
// each resource's session is, its availability, priority and last presence. A node
// holds the sessions of its own sockets (the local table, for direct delivery) and the
// owner tables of the users it owns, never the whole session table. A stanza for a user
// goes to the session directly when it is local, else through the owner: at most two
// hops. Standalone, this node owns everyone and every owner call is a function call.

// The directory's types, for this router's sessions.
type (
	target     = directory.Handle[*Session]
	compRef    = directory.Conn[*Session]
	resEntry   = directory.Entry[*Session]
	namedEntry = directory.Named[*Session]
	resources  = directory.Resources[*Session]
)

// localTarget is the handle of a session on this node.
func localTarget(s *Session) target { return directory.On(s, s.pid) }

func toRef(pid *actor.PID) *pb.Ref {
	if pid == nil {
		return nil
	}
	return &pb.Ref{Address: pid.Address, Id: pid.Id}
}

func fromRef(ref *pb.Ref) *actor.PID {
	if ref == nil {
		return nil
	}
	return actor.NewPID(ref.Address, ref.Id)
}

// owner returns the node owning bare ("" and true when it is this node).
func (u *users) owner(bare string) (string, bool) {
	if u.r.cluster == nil {
		return u.r.nodeID, true
	}
	m := u.r.cluster.Owner(bare)
	if m.ID == "" || m.ID == u.r.nodeID {
		return u.r.nodeID, true
	}
	return m.ID, false
}

// --- the session side -------------------------------------------------------------

// bindUser registers a freshly bound client session, here and with its owner. A session
// already bound to the same full JID, anywhere, is replaced and gets a conflict stream
// error (RFC 6120 §7.7.2.2). false: the account is at limits.max_sessions_per_user, and
// the session is not bound.
func (u *users) bindUser(s *Session) bool {
	u.sessions.Bind(s.Bare, s.Res, s)
	if !u.register(s, true) {
		u.sessions.Unbind(s.Bare, s.Res, s)
		return false
	}
	return true
}

// register enters a session in its owner's table (replace: a fresh bind; else a
// re-registration after a membership change). It reports whether the owner took it (a fresh bind past the account's session
// cap is refused; an owner that does not answer in time counts as taking it).
func (u *users) register(s *Session, replace bool) bool {
	m := &pb.UserRegister{Bare: s.Bare, Resource: s.Res, Session: toRef(s.pid), Node: u.r.nodeID,
		Available: s.available.Load(), Priority: s.priority.Load(), Replace: replace,
		RosterInterested: s.rosterInterested.Load(), Carbons: s.carbons.Load(),
		BlocklistInterested: s.blocklistInterested.Load(), Resumed: replace && s.resumed}
	if p := s.lastPresence.Load(); p != nil {
		m.Presence = *p
	}
	node, self := u.owner(s.Bare)
	s.owner.Store(&node)
	if self {
		return u.ownerRegister(m, s)
	}
	if !replace {
		u.r.link.ToNode(node, m)
		return true
	}
	// A fresh bind waits for the owner: once the client has its bind result, stanzas
	// routed to it through the owner must find it.
	answer, err := u.r.link.Request(node, m, registerTimeout)
	if err != nil {
		u.r.log.Warn("owner did not confirm the registration", "jid", s.Full, "owner", node, "err", err)
		return true
	}
	ack, _ := answer.(*pb.Ack)
	return ack == nil || !ack.Refused
}

const registerTimeout = 5 * time.Second

// unbindUser forgets an ended client session here and at its owner (which tells the
// user's other resources it went offline, if it was available).
func (u *users) unbindUser(s *Session) {
	u.sessions.Unbind(s.Bare, s.Res, s)
	m := &pb.UserUnregister{Bare: s.Bare, Resource: s.Res, Session: toRef(s.pid)}
	if node, self := u.owner(s.Bare); self {
		u.ownerUnregister(m)
	} else {
		u.r.link.ToNode(node, m)
	}
}

func (u *users) lookupFull(bare, res string) *Session {
	s, _ := u.sessions.Lookup(bare, res)
	return s
}

// broadcastPresence handles presence without 'to' (RFC 6121 §4.2, §4.4): the owner
// updates the resource and tells the user's other available resources; the contacts
// subscribed to the user get it too (subscription.go).
func (u *users) broadcastPresence(s *Session, env *xmpp.Envelope) {
	var m *pb.UserPresence
	initial := false
	switch env.Type {
	case "":
		p := parsePriority(env)
		s.priority.Store(p)
		data := stamp(env, s.Full, "")
		initial = !s.available.Swap(true)
		s.lastPresence.Store(&data)
		if initial {
			u.r.priv.privilegedPresence(s, data)
		}
		m = &pb.UserPresence{Bare: s.Bare, Resource: s.Res, Available: true, Priority: p, Presence: data, Session: toRef(s.pid)}
	case "unavailable":
		if !s.available.Swap(false) {
			return
		}
		s.lastPresence.Store(nil)
		m = &pb.UserPresence{Bare: s.Bare, Resource: s.Res, Presence: stamp(env, s.Full, ""), Session: toRef(s.pid)}
		u.r.priv.privilegedPresence(s, m.Presence)
	default:
		return
	}
	if node, self := u.owner(s.Bare); self {
		u.ownerPresence(m)
	} else {
		u.r.link.ToNode(node, m)
	}
	if u.r.rosters != nil {
		u.toContacts(s, m.Presence, initial, !m.Available)
	}
	if m.Available {
		u.r.del.accountUp(s)
		if initial {
			u.deliverOffline(s) // XEP-0160: after the initial presence
		}
	} else {
		u.r.del.accountDown(s)
		u.goOffline(s) // RFC 6121 §4.5.2: directed presence recipients learn it too
	}
}

// toContacts queues the broadcast of a presence to the user's contacts (a roster read,
// then a stanza per contact). Updates of an available presence coalesce: one still
// waiting is replaced by the newer, since contacts need only the latest, so a flood of
// presence costs a broadcast per roster read, not per stanza. Initial and unavailable
// presence are never merged, and a waiting update they follow is dropped (they supersede
// it: contacts learn the state in the order it changed).
func (u *users) toContacts(s *Session, presence []byte, initial, unavailable bool) {
	if initial || unavailable {
		s.nextPresence.Store(nil)
		s.later(func() { u.r.subs.broadcastToContacts(s, presence, initial, unavailable) })
		return
	}
	if s.nextPresence.Swap(&presence) != nil {
		return // the waiting broadcast sends this one instead
	}
	s.later(func() {
		if p := s.nextPresence.Swap(nil); p != nil {
			u.r.subs.broadcastToContacts(s, *p, false, false)
		}
	})
}

// goOffline ends a client session's presence: its owner tells the user's other
// resources (via unbindUser), and whoever got directed presence gets unavailable.
func (u *users) goOffline(s *Session) {
	if s.available.Swap(false) {
		unavailable := xmpp.Presence("unavailable", s.Full, "")
		u.r.priv.privilegedPresence(s, unavailable)
		if u.r.rosters != nil {
			u.toContacts(s, unavailable, false, true)
		}
	}
	for _, to := range s.takeDirected() {
		u.r.routeMade(s, s.Full, xmpp.Presence("unavailable", s.Full, to))
	}
}

// toUser routes a stanza to a user of a served host: straight to a local session when
// the full JID is here, else through the user's owner (IQs to the bare JID never come
// here: the server stage answers them).
func (u *users) toUser(sender *Session, from, bare, res, toStr string, env *xmpp.Envelope) {
	if env.Kind == xmpp.KindPresence && sender.Kind == KindC2S {
		u.trackDirected(sender, toStr, env)
	}
	if res != "" {
		if s := u.lookupFull(bare, res); s != nil {
			s.Send(stamp(env, from, toStr))
			if env.Kind == xmpp.KindMessage {
				u.receivedCarbons(bare, res, from, env)
			}
			return
		}
	}
	data := stamp(env, from, toStr)
	if u.r.cluster == nil {
		u.ownerStanza(bare, res, from, data, env, localTarget(sender))
		return
	}
	m := u.r.cluster.Owner(bare)
	switch {
	case m.ID == "" || m.ID == u.r.nodeID:
		u.ownerStanza(bare, res, from, data, env, localTarget(sender))
	case u.r.comps.dir.AddressDown(m.Remote):
		// The owner's node just died (its transport failed) and the membership has not
		// moved its users yet: where the user's sessions are is not known here, so the
		// sender hears so now rather than the stanza being lost.
		if env.Kind != xmpp.KindPresence {
			sender.Send(xmpp.ErrorReply(env, toStr, from, xmpp.ErrServiceUnavailable))
		}
	default:
		u.r.link.ToNode(m.ID, &pb.UserStanza{Stanza: data, From: from, Sender: toRef(sender.pid), SenderBare: sender.Bare})
	}
}

func (u *users) trackDirected(sender *Session, to string, env *xmpp.Envelope) {
	switch env.Type {
	case "":
		sender.addDirected(to)
	case "unavailable":
		sender.removeDirected(to)
	}
}

func splitFull(j string) (bare, res string) {
	for i := 0; i < len(j); i++ {
		if j[i] == '/' {
			return j[:i], j[i+1:]
		}
	}
	return j, ""
}
