package actors

import (
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/directory"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

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
func (r *Router) owner(bare string) (string, bool) {
	if r.cluster == nil {
		return r.nodeID, true
	}
	m := r.cluster.Owner(bare)
	if m.ID == "" || m.ID == r.nodeID {
		return r.nodeID, true
	}
	return m.ID, false
}

// --- the session side -------------------------------------------------------------

// bindUser registers a freshly bound client session, here and with its owner. A session
// already bound to the same full JID, anywhere, is replaced and gets a conflict stream
// error (RFC 6120 §7.7.2.2).
func (r *Router) bindUser(s *Session) {
	r.sessions.Bind(s.Bare, s.Res, s)
	r.register(s, true)
}

func (r *Router) register(s *Session, replace bool) {
	m := &pb.UserRegister{Bare: s.Bare, Resource: s.Res, Session: toRef(s.pid), Node: r.nodeID,
		Available: s.available.Load(), Priority: s.priority.Load(), Replace: replace,
		RosterInterested: s.rosterInterested.Load()}
	if p := s.lastPresence.Load(); p != nil {
		m.Presence = *p
	}
	node, self := r.owner(s.Bare)
	s.owner.Store(&node)
	if self {
		r.ownerRegister(m, s)
		return
	}
	if !replace {
		r.link.ToNode(node, m)
		return
	}
	// A fresh bind waits for the owner: once the client has its bind result, stanzas
	// routed to it through the owner must find it.
	if err := r.link.Request(node, m, registerTimeout); err != nil {
		r.log.Warn("owner did not confirm the registration", "jid", s.Full, "owner", node, "err", err)
	}
}

const registerTimeout = 5 * time.Second

// unbindUser forgets an ended client session here and at its owner (which tells the
// user's other resources it went offline, if it was available).
func (r *Router) unbindUser(s *Session) {
	r.sessions.Unbind(s.Bare, s.Res, s)
	m := &pb.UserUnregister{Bare: s.Bare, Resource: s.Res, Session: toRef(s.pid)}
	if node, self := r.owner(s.Bare); self {
		r.ownerUnregister(m)
	} else {
		r.link.ToNode(node, m)
	}
}

func (r *Router) lookupFull(bare, res string) *Session {
	s, _ := r.sessions.Lookup(bare, res)
	return s
}

// broadcastPresence handles presence without 'to' (RFC 6121 §4.2, §4.4): the owner
// updates the resource and tells the user's other available resources; the contacts
// subscribed to the user get it too (subscription.go).
func (r *Router) broadcastPresence(s *Session, env *xmpp.Envelope) {
	var m *pb.UserPresence
	initial := false
	switch env.Type {
	case "":
		p := parsePriority(env)
		s.priority.Store(p)
		data := r.stamp(env, s.Full, "")
		initial = !s.available.Swap(true)
		s.lastPresence.Store(&data)
		if initial {
			r.privilegedPresence(s, data)
		}
		m = &pb.UserPresence{Bare: s.Bare, Resource: s.Res, Available: true, Priority: p, Presence: data, Session: toRef(s.pid)}
	case "unavailable":
		if !s.available.Swap(false) {
			return
		}
		s.lastPresence.Store(nil)
		m = &pb.UserPresence{Bare: s.Bare, Resource: s.Res, Presence: r.stamp(env, s.Full, ""), Session: toRef(s.pid)}
		r.privilegedPresence(s, m.Presence)
	default:
		return
	}
	if node, self := r.owner(s.Bare); self {
		r.ownerPresence(m)
	} else {
		r.link.ToNode(node, m)
	}
	if r.rosters != nil {
		data := m.Presence
		s.later(func() { r.broadcastToContacts(s, data, initial, !m.Available) })
	}
	if m.Available {
		r.accountUp(s)
	} else {
		r.accountDown(s)
		r.goOffline(s) // RFC 6121 §4.5.2: directed presence recipients learn it too
	}
}

// goOffline ends a client session's presence: its owner tells the user's other
// resources (via unbindUser), and whoever got directed presence gets unavailable.
func (r *Router) goOffline(s *Session) {
	if s.available.Swap(false) {
		unavailable := xmpp.Presence("unavailable", s.Full, "")
		r.privilegedPresence(s, unavailable)
		if r.rosters != nil {
			s.later(func() { r.broadcastToContacts(s, unavailable, false, true) })
		}
	}
	for _, to := range s.takeDirected() {
		b := xmpp.Presence("unavailable", s.Full, to)
		env, err := xmpp.ParseStanza(b)
		if err != nil {
			continue
		}
		r.Route(s, s.Full, env)
	}
}

// toUser routes a stanza to a user of a served host: straight to a local session when
// the full JID is here, else through the user's owner (IQs to the bare JID never come
// here: the server stage answers them).
func (r *Router) toUser(sender *Session, from, bare, res, toStr string, env *xmpp.Envelope) {
	if env.Kind == xmpp.KindPresence && sender.Kind == KindC2S {
		r.trackDirected(sender, toStr, env)
	}
	if res != "" {
		if s := r.lookupFull(bare, res); s != nil {
			s.Send(r.stamp(env, from, toStr))
			return
		}
	}
	data := r.stamp(env, from, toStr)
	if node, self := r.owner(bare); self {
		r.ownerStanza(bare, res, from, data, env, localTarget(sender))
	} else {
		r.link.ToNode(node, &pb.UserStanza{Stanza: data, From: from, Sender: toRef(sender.pid), SenderBare: sender.Bare})
	}
}

func (r *Router) trackDirected(sender *Session, to string, env *xmpp.Envelope) {
	switch env.Type {
	case "":
		sender.addDirected(to)
	case "unavailable":
		sender.removeDirected(to)
	}
}

// --- the owner side ---------------------------------------------------------------

// ownerRegister enters a session in the owner table of one of this node's users. A
// fresh bind (Replace) wins over a session already on that resource, which gets a
// conflict; a re-registration after a membership change loses to a newer bind.
func (r *Router) ownerRegister(m *pb.UserRegister, local *Session) {
	e := &resEntry{Handle: directory.Handle[*Session]{Local: local, PID: fromRef(m.Session)}, Node: m.Node,
		Available: m.Available, Priority: m.Priority, Presence: m.Presence, Interested: m.RosterInterested}
	var loser *resEntry
	var others []namedEntry
	oldAvailable := false
	r.owners.Do(m.Bare, func(res resources) resources {
		if res == nil {
			res = make(resources)
		}
		old := res[m.Resource]
		switch {
		case old == nil || old.SamePID(e.Handle):
			res[m.Resource] = e
		case !m.Replace:
			loser = e
		default:
			res[m.Resource] = e
			loser, oldAvailable = old, old.Available
			others = res.Available(m.Resource)
		}
		return res
	})
	if loser == nil {
		return
	}
	if oldAvailable {
		r.unavailableTo(others, m.Bare, m.Bare+"/"+m.Resource)
	}
	r.closeTarget(loser.Handle, "conflict", "replaced by a new session")
}

func (r *Router) ownerUnregister(m *pb.UserUnregister) {
	var gone *resEntry
	var others []namedEntry
	wasAvailable := false
	r.owners.Do(m.Bare, func(res resources) resources {
		e := res[m.Resource]
		if e == nil || !e.SamePID(directory.At[*Session](fromRef(m.Session))) {
			return res
		}
		delete(res, m.Resource)
		gone, wasAvailable = e, e.Available
		others = res.Available(m.Resource)
		return res
	})
	if gone != nil && wasAvailable {
		r.unavailableTo(others, m.Bare, m.Bare+"/"+m.Resource)
	}
}

// unavailableTo tells a user's other available resources that full went unavailable.
func (r *Router) unavailableTo(others []namedEntry, bare, full string) {
	for _, o := range others {
		o.Send(r.link, xmpp.Presence("unavailable", full, o.Full(bare)))
	}
}

func (r *Router) ownerPresence(m *pb.UserPresence) {
	full := m.Bare + "/" + m.Resource
	var (
		e      *resEntry
		others []namedEntry
		replay [][]byte
	)
	r.owners.Do(m.Bare, func(res resources) resources {
		e = res[m.Resource]
		if e == nil || !e.SamePID(directory.At[*Session](fromRef(m.Session))) {
			e = nil
			return res
		}
		first := m.Available && !e.Available
		e.Available, e.Priority = m.Available, m.Priority
		if m.Available {
			e.Presence = m.Presence
		} else {
			e.Presence = nil
		}
		others = res.Available(m.Resource)
		if first {
			for _, o := range others {
				if o.Presence != nil {
					replay = append(replay, readdress(o.Presence, o.Full(m.Bare), full))
				}
			}
		}
		return res
	})
	if e == nil {
		return
	}
	for _, o := range others {
		o.Send(r.link, readdress(m.Presence, full, o.Full(m.Bare)))
	}
	for _, p := range replay {
		e.Send(r.link, p)
	}
}

// ownerStanza delivers a stanza for one of this node's users (RFC 6121 §8.5). data is
// ready to write (from stamped, to as addressed); errors go back to the sender.
func (r *Router) ownerStanza(bare, res, from string, data []byte, env *xmpp.Envelope, sender target) {
	var targets []target
	r.owners.Do(bare, func(entries resources) resources {
		if res != "" {
			if e := entries[res]; e != nil {
				targets = append(targets, e.Handle)
			}
		}
		if len(targets) == 0 {
			switch {
			case res != "" && env.Kind != xmpp.KindMessage:
				// IQ: service-unavailable below; presence: dropped.
			case env.Kind == xmpp.KindPresence:
				for _, e := range entries {
					if e.Available && env.Type != "probe" {
						targets = append(targets, e.Handle)
					}
				}
			case env.Kind == xmpp.KindMessage && env.Type != "groupchat":
				targets = bestResources(entries, env.Type == "headline")
			}
		}
		return entries
	})
	if len(targets) > 0 {
		for _, t := range targets {
			t.Send(r.link, data)
		}
		return
	}
	if env.Kind == xmpp.KindPresence {
		return
	}
	sender.Send(r.link, xmpp.ErrorReply(env, env.To, from, xmpp.ErrServiceUnavailable))
}

// bestResources: the highest-priority non-negative available resources (all of them
// with a non-negative priority for headlines).
func bestResources(entries resources, all bool) []target {
	var out []target
	best := int32(-1)
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := entries[n]
		if !e.Available || e.Priority < 0 {
			continue
		}
		switch {
		case all:
			out = append(out, e.Handle)
		case e.Priority > best:
			best = e.Priority
			out = append(out[:0], e.Handle)
		case e.Priority == best:
			out = append(out, e.Handle)
		}
	}
	return out
}

// readdress returns a stored presence with new from/to.
func readdress(raw []byte, from, to string) []byte {
	env, err := xmpp.ParseStanza(raw)
	if err != nil {
		return nil
	}
	return env.Rewrite(from, to)
}

func splitFull(j string) (bare, res string) {
	for i := 0; i < len(j); i++ {
		if j[i] == '/' {
			return j[:i], j[i+1:]
		}
	}
	return j, ""
}

// membersChanged moves users to their new owners: every local session whose owner
// changed registers again there; owner entries of sessions on nodes that left are
// dropped (their other resources are told they went offline); entries of users this node
// no longer owns are dropped (their sessions re-register with the new owner).
func (r *Router) membersChanged(members []cluster.Member, left []string) {
	gone := map[string]bool{}
	for _, n := range left {
		gone[n] = true
	}
	var notify []func()
	r.owners.Range(func(bare string, res resources) bool {
		if _, self := r.owner(bare); !self {
			return false
		}
		for name, e := range res {
			if !gone[e.Node] {
				continue
			}
			delete(res, name)
			if e.Available {
				full := bare + "/" + name
				for _, o := range res.Available(name) {
					to := o.Full(bare)
					notify = append(notify, func() { o.Send(r.link, xmpp.Presence("unavailable", full, to)) })
				}
			}
		}
		return true
	})
	for _, f := range notify {
		f()
	}
	for _, s := range r.sessions.All() {
		node, _ := r.owner(s.Bare)
		if old := s.owner.Load(); old == nil || *old != node {
			r.register(s, false)
		}
	}
}
