package actors

import (
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/actors/pb"
	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/xmpp"
)

// User sessions are partitioned: every bare JID has an owner node (rendezvous hashing
// over the live members, cluster.Owner), which keeps that user's resource table: where
// each resource's session is, its availability, priority and last presence. A node
// holds the sessions of its own sockets (the local table, for direct delivery) and the
// owner tables of the users it owns, never the whole session table. A stanza for a user
// goes to the session directly when it is local, else through the owner: at most two
// hops. Standalone, this node owns everyone and every owner call is a function call.

// resEntry is one resource in an owner table.
type resEntry struct {
	target    // local is set when the session is on this node; pid always
	node      string
	available bool
	priority  int32
	presence  []byte // last broadcast presence, from = the resource's full JID
	// interested: the session asked for its roster, so roster pushes go to it
	interested bool
}

type ownerShard struct {
	mu    sync.Mutex
	users map[string]map[string]*resEntry
}

func (r *Router) ownerShard(bare string) *ownerShard {
	return &r.owned[hashString(r.seed, bare)%uint64(len(r.owned))]
}

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
	sh := r.shard(s.Bare)
	sh.mu.Lock()
	res := sh.users[s.Bare]
	if res == nil {
		res = make(map[string]*Session)
		sh.users[s.Bare] = res
	}
	res[s.Res] = s
	sh.mu.Unlock()
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
		r.sendToNode(node, m)
		return
	}
	// A fresh bind waits for the owner: once the client has its bind result, stanzas
	// routed to it through the owner must find it.
	if err := r.requestNode(node, m, registerTimeout); err != nil {
		r.log.Warn("owner did not confirm the registration", "jid", s.Full, "owner", node, "err", err)
	}
}

const registerTimeout = 5 * time.Second

// unbindUser forgets an ended client session here and at its owner (which tells the
// user's other resources it went offline, if it was available).
func (r *Router) unbindUser(s *Session) {
	sh := r.shard(s.Bare)
	sh.mu.Lock()
	if res := sh.users[s.Bare]; res != nil && res[s.Res] == s {
		delete(res, s.Res)
		if len(res) == 0 {
			delete(sh.users, s.Bare)
		}
	}
	sh.mu.Unlock()
	m := &pb.UserUnregister{Bare: s.Bare, Resource: s.Res, Session: toRef(s.pid)}
	if node, self := r.owner(s.Bare); self {
		r.ownerUnregister(m)
	} else {
		r.sendToNode(node, m)
	}
}

func (r *Router) lookupFull(bare, res string) *Session {
	sh := r.shard(bare)
	sh.mu.RLock()
	s := sh.users[bare][res]
	sh.mu.RUnlock()
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
		r.sendToNode(node, m)
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
		r.sendToNode(node, &pb.UserStanza{Stanza: data, From: from, Sender: toRef(sender.pid), SenderBare: sender.Bare})
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

func (r *Router) ownerRegister(m *pb.UserRegister, local *Session) {
	e := &resEntry{target: target{local: local, pid: fromRef(m.Session)}, node: m.Node, available: m.Available, priority: m.Priority,
		presence: m.Presence, interested: m.RosterInterested}
	sh := r.ownerShard(m.Bare)
	sh.mu.Lock()
	res := sh.users[m.Bare]
	if res == nil {
		res = make(map[string]*resEntry)
		sh.users[m.Bare] = res
	}
	old := res[m.Resource]
	res[m.Resource] = e
	others := othersAvailable(res, m.Resource)
	sh.mu.Unlock()
	if old == nil || samePID(old.pid, e.pid) {
		return
	}
	if !m.Replace {
		// A re-registration after a membership change met a newer bind: the newer wins.
		sh.mu.Lock()
		res[m.Resource] = old
		sh.mu.Unlock()
		e.close(r, "conflict", "replaced by a new session")
		return
	}
	if old.available {
		r.unavailableTo(others, m.Bare, m.Bare+"/"+m.Resource)
	}
	old.close(r, "conflict", "replaced by a new session")
}

func samePID(a, b *actor.PID) bool {
	return a != nil && b != nil && a.Address == b.Address && a.Id == b.Id
}

// fullOf needs the resource: entries are kept per resource, so callers pass it along.
type namedEntry struct {
	res string
	*resEntry
}

func (n namedEntry) fullOf(bare string) string { return bare + "/" + n.res }

func othersAvailable(res map[string]*resEntry, except string) []namedEntry {
	var out []namedEntry
	for name, e := range res {
		if name != except && e.available {
			out = append(out, namedEntry{name, e})
		}
	}
	return out
}

func (r *Router) ownerUnregister(m *pb.UserUnregister) {
	sh := r.ownerShard(m.Bare)
	sh.mu.Lock()
	res := sh.users[m.Bare]
	e := res[m.Resource]
	if e == nil || !samePID(e.pid, fromRef(m.Session)) {
		sh.mu.Unlock()
		return
	}
	delete(res, m.Resource)
	if len(res) == 0 {
		delete(sh.users, m.Bare)
	}
	others := othersAvailable(res, m.Resource)
	sh.mu.Unlock()
	if e.available {
		r.unavailableTo(others, m.Bare, m.Bare+"/"+m.Resource)
	}
}

// unavailableTo tells a user's other available resources that full went unavailable.
func (r *Router) unavailableTo(others []namedEntry, bare, full string) {
	for _, o := range others {
		o.send(r, xmpp.Presence("unavailable", full, o.fullOf(bare)))
	}
}

func (r *Router) ownerPresence(m *pb.UserPresence) {
	full := m.Bare + "/" + m.Resource
	sh := r.ownerShard(m.Bare)
	sh.mu.Lock()
	e := sh.users[m.Bare][m.Resource]
	if e == nil || !samePID(e.pid, fromRef(m.Session)) {
		sh.mu.Unlock()
		return
	}
	first := m.Available && !e.available
	e.available, e.priority = m.Available, m.Priority
	if m.Available {
		e.presence = m.Presence
	} else {
		e.presence = nil
	}
	others := othersAvailable(sh.users[m.Bare], m.Resource)
	var replay [][]byte
	if first {
		for _, o := range others {
			if o.presence != nil {
				replay = append(replay, readdress(o.presence, o.fullOf(m.Bare), full))
			}
		}
	}
	sh.mu.Unlock()
	for _, o := range others {
		o.send(r, readdress(m.Presence, full, o.fullOf(m.Bare)))
	}
	for _, p := range replay {
		e.send(r, p)
	}
}

// ownerStanza delivers a stanza for one of this node's users (RFC 6121 §8.5). data is
// ready to write (from stamped, to as addressed); errors go back to the sender.
func (r *Router) ownerStanza(bare, res, from string, data []byte, env *xmpp.Envelope, sender target) {
	sh := r.ownerShard(bare)
	sh.mu.Lock()
	entries := sh.users[bare]
	var targets []*resEntry
	if res != "" {
		if e := entries[res]; e != nil {
			targets = append(targets, e)
		}
	}
	if len(targets) == 0 {
		switch {
		case res != "" && env.Kind != xmpp.KindMessage:
			// IQ: service-unavailable below; presence: dropped.
		case env.Kind == xmpp.KindPresence:
			for _, e := range entries {
				if e.available && env.Type != "probe" {
					targets = append(targets, e)
				}
			}
		case env.Kind == xmpp.KindMessage && env.Type != "groupchat":
			targets = bestResources(entries, env.Type == "headline")
		}
	}
	sh.mu.Unlock()
	if len(targets) > 0 {
		for _, e := range targets {
			e.send(r, data)
		}
		return
	}
	if env.Kind == xmpp.KindPresence {
		return
	}
	sender.send(r, xmpp.ErrorReply(env, env.To, from, xmpp.ErrServiceUnavailable))
}

// bestResources: the highest-priority non-negative available resources (all of them
// with a non-negative priority for headlines).
func bestResources(entries map[string]*resEntry, all bool) []*resEntry {
	var out []*resEntry
	best := int32(-1)
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := entries[n]
		if !e.available || e.priority < 0 {
			continue
		}
		switch {
		case all:
			out = append(out, e)
		case e.priority > best:
			best = e.priority
			out = append(out[:0], e)
		case e.priority == best:
			out = append(out, e)
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

// receiveUser handles user-directory messages from other nodes (router actor).
func (r *Router) receiveUser(ctx actor.Context, msg any) bool {
	switch m := msg.(type) {
	case *pb.UserRegister:
		r.ownerRegister(m, nil)
		if ctx != nil && ctx.Sender() != nil {
			ctx.Respond(&pb.Ack{})
		}
	case *pb.UserUnregister:
		r.ownerUnregister(m)
	case *pb.UserPresence:
		r.ownerPresence(m)
	case *pb.UserPush:
		r.ownerPush(m.Bare, m.Stanza)
	case *pb.UserPresenceTo:
		r.ownerPresenceTo(m.Bare, m.To, m.Unavailable)
	case *pb.PresenceReplay:
		r.ownerReplayPresence(m.Host, m.Entity, target{pid: fromRef(m.Session)})
	case *pb.UserStanza:
		env, err := xmpp.ParseStanza(m.Stanza)
		if err != nil {
			return true
		}
		bare, res := splitFull(env.To)
		r.ownerStanza(bare, res, m.From, m.Stanza, env, target{pid: fromRef(m.Sender)})
	default:
		return false
	}
	return true
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
	for i := range r.owned {
		sh := &r.owned[i]
		var notify []func()
		sh.mu.Lock()
		for bare, res := range sh.users {
			if _, self := r.owner(bare); !self {
				delete(sh.users, bare)
				continue
			}
			for name, e := range res {
				if !gone[e.node] {
					continue
				}
				delete(res, name)
				if e.available {
					full := bare + "/" + name
					for _, o := range othersAvailable(res, name) {
						o, to := o, o.fullOf(bare)
						notify = append(notify, func() {
							o.send(r, xmpp.Presence("unavailable", full, to))
						})
					}
				}
			}
			if len(res) == 0 {
				delete(sh.users, bare)
			}
		}
		sh.mu.Unlock()
		for _, f := range notify {
			f()
		}
	}
	for i := range r.shards {
		sh := &r.shards[i]
		var moved []*Session
		sh.mu.RLock()
		for _, res := range sh.users {
			for _, s := range res {
				node, _ := r.owner(s.Bare)
				if old := s.owner.Load(); old == nil || *old != node {
					moved = append(moved, s)
				}
			}
		}
		sh.mu.RUnlock()
		for _, s := range moved {
			r.register(s, false)
		}
	}
}
