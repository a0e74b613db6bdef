package actors

import (
	"slices"
	"sort"
	"strings"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/directory"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// The owner side of the user directory: what this node does as the owner of a user's
// bare JID (rendezvous hashing picks one owner per user among the live members).

// ownerReplayPresence sends the presence of every available resource of host's users
// that this node owns to a component.
func (u *users) ownerReplayPresence(host, entity string, to target) {
	var out [][]byte
	u.owners.RangeHost(host, func(bare string, res resources) {
		for name, e := range res {
			if e.Available && e.Presence != nil {
				out = append(out, readdress(e.Presence, bare+"/"+name, entity))
			}
		}
	})
	for _, b := range out {
		to.Send(u.r.link, b)
	}
}

// ownerPush writes a stanza to every interested resource of one of this node's users:
// those that asked for the roster, or for the blocklist (XEP-0191).
func (u *users) ownerPush(bare string, stanza []byte, blocklist bool) {
	var targets []namedEntry
	u.owners.Do(bare, func(res resources) resources {
		for name, e := range res {
			if (!blocklist && e.Interested) || (blocklist && e.BlocklistInterested) {
				targets = append(targets, namedEntry{Res: name, Entry: e})
			}
		}
		return res
	})
	for _, t := range targets {
		t.Send(u.r.link, readdress(stanza, bare, t.Full(bare)))
	}
}

// ownerPresenceTo sends to an address the presence of each available resource of one of
// this node's users (or an unavailable presence from each), except between the user and
// a JID it blocks, or a user that blocks the resource (XEP-0191; the unavailable presence
// of a block goes).
func (u *users) ownerPresenceTo(bare, to string, unavailable bool) {
	if !unavailable && u.r.blocked(bare, to) {
		return
	}
	var fulls []string
	var out [][]byte
	u.owners.Do(bare, func(entries resources) resources {
		for res, e := range entries {
			if !e.Available || e.Presence == nil {
				continue
			}
			full := bare + "/" + res
			fulls = append(fulls, full)
			if unavailable {
				out = append(out, xmpp.Presence("unavailable", full, to))
			} else {
				out = append(out, readdress(e.Presence, full, to))
			}
		}
		return entries
	})
	toBare := bareOf(to)
	for i, b := range out {
		if !u.r.blocked(toBare, fulls[i]) {
			u.deliverTo(to, b)
		}
	}
}

// deliverTo gives a stanza the server generated (from already set) to an address: a
// local session, a user through its owner, or a component. Nothing is answered back.
func (u *users) deliverTo(to string, data []byte) {
	if data == nil {
		return
	}
	bare, res := splitFull(to)
	local, domain, _ := cutAt(bare)
	if u.r.hosts[domain] == nil || local == "" {
		if c, ok := u.r.comps.pickComponent(domain, ""); ok {
			c.Send(u.r.link, data)
		} else if u.r.hosts[domain] == nil && u.r.s2s.enabled() {
			// Another server's: on the stream from the sender's domain (s2s.go).
			if env, err := xmpp.ParseStanza(data); err == nil {
				if _, fd, _ := cutAt(bareOf(env.From)); u.r.hosts[fd] != nil {
					u.r.s2s.send(fd, domain, data)
				}
			}
		}
		return
	}
	if res != "" {
		if s := u.lookupFull(bare, res); s != nil {
			s.Send(data)
			return
		}
	}
	if node, self := u.owner(bare); !self {
		u.r.link.ToNode(node, &pb.UserStanza{Stanza: data})
		return
	}
	env, err := xmpp.ParseStanza(data)
	if err != nil {
		return
	}
	u.ownerStanza(bare, res, env.From, data, env, target{})
}

// ownerRegister enters a session in the owner table of one of this node's users. A
// fresh bind (Replace) wins over a session already on that resource, which gets a
// conflict; a re-registration after a membership change loses to a newer bind.
//
// A fresh bind of a new resource of an account that already has limits.max_sessions_per_user
// sessions is refused (false): RFC 6120 §7.6.2.1, resource-constraint for the bind.
// Re-registrations and replacements of a bound resource are never refused.
func (u *users) ownerRegister(m *pb.UserRegister, local *Session) bool {
	e := &resEntry{Handle: directory.Handle[*Session]{Local: local, PID: fromRef(m.Session)}, Node: m.Node,
		Available: m.Available, Priority: m.Priority, Presence: m.Presence, Interested: m.RosterInterested,
		Carbons: m.Carbons, BlocklistInterested: m.BlocklistInterested}
	var loser *resEntry
	var others []namedEntry
	var tell []*resEntry // sessions to tell whether the user wants carbons
	anyAfter := false
	oldAvailable, refused := false, false
	max := u.r.limits().SessionsPerUser
	u.owners.Do(m.Bare, func(res resources) resources {
		if res == nil {
			res = make(resources)
		}
		anyBefore := anyCarbons(res)
		old := res[m.Resource]
		switch {
		case old == nil && m.Replace && max > 0 && int64(len(res)) >= max:
			refused = true
		case old == nil || old.SamePID(e.Handle):
			res[m.Resource] = e
		case !m.Replace:
			loser = e
		case m.Resumed:
			// XEP-0198: the same session, resumed on another node; the old one forwards
			// to it and stops by itself. No conflict, no unavailable.
			res[m.Resource] = e
		default:
			res[m.Resource] = e
			loser, oldAvailable = old, old.Available
			others = res.Available(m.Resource)
		}
		if !refused {
			anyAfter = anyCarbons(res)
			switch {
			case anyAfter != anyBefore:
				for _, o := range res {
					tell = append(tell, o)
				}
			case anyAfter:
				tell = append(tell, e) // a new session learns it
			}
		}
		return res
	})
	u.tellCarbons(tell, anyAfter)
	if refused || loser == nil {
		return !refused
	}
	if oldAvailable {
		u.unavailableTo(others, m.Bare, m.Bare+"/"+m.Resource)
	}
	u.r.closeTarget(loser.Handle, "conflict", "replaced by a new session")
	return true
}

func (u *users) ownerUnregister(m *pb.UserUnregister) {
	var gone *resEntry
	var others []namedEntry
	wasAvailable := false
	var tell []*resEntry
	u.owners.Do(m.Bare, func(res resources) resources {
		e := res[m.Resource]
		if e == nil || !e.SamePID(directory.At[*Session](fromRef(m.Session))) {
			return res
		}
		delete(res, m.Resource)
		gone, wasAvailable = e, e.Available
		others = res.Available(m.Resource)
		if e.Carbons && !anyCarbons(res) {
			for _, o := range res {
				tell = append(tell, o)
			}
		}
		return res
	})
	u.tellCarbons(tell, false)
	if gone != nil && wasAvailable {
		u.unavailableTo(others, m.Bare, m.Bare+"/"+m.Resource)
	}
}

// unavailableTo tells a user's other available resources that full went unavailable.
func (u *users) unavailableTo(others []namedEntry, bare, full string) {
	for _, o := range others {
		o.Send(u.r.link, xmpp.Presence("unavailable", full, o.Full(bare)))
	}
}

func (u *users) ownerPresence(m *pb.UserPresence) {
	full := m.Bare + "/" + m.Resource
	var (
		e      *resEntry
		others []namedEntry
		replay [][]byte
	)
	u.owners.Do(m.Bare, func(res resources) resources {
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
		o.Send(u.r.link, readdress(m.Presence, full, o.Full(m.Bare)))
	}
	for _, p := range replay {
		e.Send(u.r.link, p)
	}
}

// ownerStanza delivers a stanza for one of this node's users (RFC 6121 §8.5). data is
// ready to write (from stamped, to as addressed); errors go back to the sender.
func (u *users) ownerStanza(bare, res, from string, data []byte, env *xmpp.Envelope, sender target) {
	var targets []target
	u.owners.Do(bare, func(entries resources) resources {
		if res != "" {
			if e := entries[res]; e != nil && u.reachable(e.Handle) {
				targets = append(targets, e.Handle)
			}
		}
		if len(targets) == 0 {
			switch {
			case res != "" && env.Kind != xmpp.KindMessage:
				// IQ: service-unavailable below; presence: dropped.
			case env.Kind == xmpp.KindPresence:
				for _, e := range entries {
					if e.Available && env.Type != "probe" && u.reachable(e.Handle) {
						targets = append(targets, e.Handle)
					}
				}
			case env.Kind == xmpp.KindMessage && env.Type != "groupchat":
				targets = bestResources(entries, env.Type == "headline", u.reachable)
			}
		}
		return entries
	})
	if len(targets) > 0 {
		for _, t := range targets {
			t.Send(u.r.link, data)
		}
		if carbonEligible(env) {
			inner := env.RewriteNS(from, env.To, xmpp.NSClient)
			u.ownerCarbons(bare, "received", inner, func(_ string, e *resEntry) bool {
				return slices.ContainsFunc(targets, func(t target) bool { return e.SamePID(t) })
			})
		}
		return
	}
	if env.Kind == xmpp.KindPresence {
		return
	}
	if u.storeOffline(bare, data, env, sender) {
		return
	}
	sender.Send(u.r.link, xmpp.ErrorReply(env, env.To, from, xmpp.ErrServiceUnavailable))
}

// reachable reports whether a session is here, or on a node whose transport has not
// failed (components.nodeUnreachable): a session on a node that just died is treated as
// gone at once, so what is sent to it is bounced or goes to the user's other resources
// instead of being lost while the membership decides.
func (u *users) reachable(h target) bool {
	return h.IsLocal() || h.PID == nil || !u.r.comps.dir.AddressDown(h.PID.Address)
}

// bestResources: the highest-priority non-negative available resources (all of them
// with a non-negative priority for headlines) that ok accepts.
func bestResources(entries resources, all bool, ok func(target) bool) []target {
	var out []target
	best := int32(-1)
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := entries[n]
		if !e.Available || e.Priority < 0 || !ok(e.Handle) {
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

// membersChanged moves users to their new owners: every local session whose owner
// changed registers again there; owner entries of sessions on nodes that left are
// dropped (their other resources are told they went offline); entries of users this node
// no longer owns are dropped (their sessions re-register with the new owner).
func (u *users) membersChanged(members []cluster.Member, left []string) {
	gone := map[string]bool{}
	for _, n := range left {
		gone[n] = true
	}
	u.dropSessions(func(e *resEntry) bool { return gone[e.Node] })
	for _, s := range u.sessions.All() {
		node, _ := u.owner(s.Bare)
		if old := s.owner.Load(); old == nil || *old != node {
			u.register(s, false)
		}
	}
}

// nodeRestarted drops, from the owner tables of the users this node owns, the sessions
// that node had before it ran again as the incarnation whose actor names begin with
// prefix: they are gone (and their contacts told so).
func (u *users) nodeRestarted(node, prefix string) {
	u.dropSessions(func(e *resEntry) bool { return e.Node == node && !strings.HasPrefix(e.PID.Id, prefix) })
}

// dropSessions removes the sessions gone says are gone from the owner tables of the
// users this node owns; each one that was available is announced unavailable to the
// user's other available resources.
func (u *users) dropSessions(gone func(*resEntry) bool) {
	var notify []func()
	u.owners.Range(func(bare string, res resources) bool {
		if _, self := u.owner(bare); !self {
			return false
		}
		for name, e := range res {
			if !gone(e) {
				continue
			}
			delete(res, name)
			if e.Available {
				full := bare + "/" + name
				for _, o := range res.Available(name) {
					to := o.Full(bare)
					notify = append(notify, func() { o.Send(u.r.link, xmpp.Presence("unavailable", full, to)) })
				}
			}
		}
		return true
	})
	for _, f := range notify {
		f()
	}
}
