package actors

import (
	"bufio"
	"encoding/xml"
	"hash/maphash"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Accounts answers whether a local account exists (for RFC 6121 §8.5 routing).
type Accounts interface {
	Exists(host, localpart string) bool
}

// Limits the router enforces on sessions.
type Limits struct {
	MaxSendQueue int64
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
}

// HostInfo is what the router needs to know of a served domain.
type HostInfo struct {
	Domain string
}

// Router is the node-local stanza switch: the session tables and the routing decision.
// It is safe for concurrent use by every connection's reader goroutine; the user table is
// sharded by bare JID so that no lock is shared by all sessions.
type Router struct {
	sys      *actor.ActorSystem
	log      *slog.Logger
	limits   Limits
	accounts Accounts
	version  string

	hosts map[string]*Host

	seed   maphash.Seed
	shards [64]userShard

	cmu        sync.RWMutex
	components map[string]*componentSet
	compNames  []string
	compOpts   map[string]ComponentOptions

	deleg   *Delegation
	tracker *delegation.Tracker

	nodeID  string
	cluster Cluster // nil: standalone
	self    *actor.PID
}

type userShard struct {
	mu    sync.RWMutex
	users map[string]map[string]*Session // bare → resource → session
}

// componentSet is every connection of one component, here and on other nodes.
// Copy-on-write: readers take the pointer under the read lock and use it freely.
type componentSet struct {
	refs []*compRef
	next atomic.Uint64
}

// Config for NewRouter.
type Config struct {
	System     *actor.ActorSystem
	Log        *slog.Logger
	Limits     Limits
	Accounts   Accounts
	Hosts      []string
	Components map[string]ComponentOptions // configured components (listed in the server's disco#items)
	Version    string
	NodeID     string
	Delegation *Delegation // nil: no XEP-0355
}

// NewRouter builds the router and spawns one host actor per domain.
func NewRouter(c Config) *Router {
	r := &Router{
		sys:        c.System,
		log:        c.Log,
		limits:     c.Limits,
		accounts:   c.Accounts,
		version:    c.Version,
		hosts:      make(map[string]*Host),
		seed:       maphash.MakeSeed(),
		components: make(map[string]*componentSet),
		compOpts:   c.Components,
		deleg:      c.Delegation,
		nodeID:     c.NodeID,
	}
	for name := range c.Components {
		r.compNames = append(r.compNames, name)
	}
	sort.Strings(r.compNames)
	if r.deleg != nil {
		r.tracker = delegation.NewTracker(c.NodeID, r.deleg.Timeout, r.delegationTimeout)
	}
	for i := range r.shards {
		r.shards[i].users = make(map[string]map[string]*Session)
	}
	for _, d := range c.Hosts {
		h := &Host{Domain: d, router: r}
		h.pid = r.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return h }))
		r.hosts[d] = h
	}
	return r
}

// Stop ends every session with system-shutdown and stops the host actors.
func (r *Router) Stop() {
	for _, s := range r.allSessions() {
		s.Close(&xmpp.StreamError{Condition: "system-shutdown"})
	}
	for _, h := range r.hosts {
		r.sys.Root.Stop(h.pid)
	}
}

func (r *Router) allSessions() []*Session {
	var out []*Session
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, res := range sh.users {
			for _, s := range res {
				out = append(out, s)
			}
		}
		sh.mu.RUnlock()
	}
	r.cmu.RLock()
	for _, cs := range r.components {
		for _, c := range cs.refs {
			if c.local != nil {
				out = append(out, c.local)
			}
		}
	}
	r.cmu.RUnlock()
	return out
}

// IsHost reports whether domain is served here.
func (r *Router) IsHost(domain string) bool { _, ok := r.hosts[domain]; return ok }

func (r *Router) shard(bare string) *userShard {
	return &r.shards[maphash.String(r.seed, bare)%uint64(len(r.shards))]
}

// newSession spawns the session's writer actor.
func (r *Router) newSession(kind SessionKind, c *xmpp.Conn) *Session {
	s := &Session{Kind: kind, conn: c, router: r, w: bufio.NewWriterSize(c.Conn, 4096)}
	props := actor.PropsFromProducer(func() actor.Actor { return s })
	s.pid = r.sys.Root.Spawn(props)
	return s
}

// stopSession ends the actor after what is queued (Poison is a user message, so it is
// processed after the pending writes; Stop would overtake them).
func (r *Router) stopSession(s *Session) {
	s.Close(nil)
	r.sys.Root.Poison(s.pid)
}

// bindUser registers a bound client session; a session already bound to the same full
// JID is replaced and told so with a conflict stream error (RFC 6120 §7.7.2.2).
func (r *Router) bindUser(s *Session) {
	sh := r.shard(s.Bare)
	sh.mu.Lock()
	res := sh.users[s.Bare]
	if res == nil {
		res = make(map[string]*Session)
		sh.users[s.Bare] = res
	}
	old := res[s.Res]
	res[s.Res] = s
	sh.mu.Unlock()
	if old != nil {
		old.replaced.Store(true)
		r.goOffline(old)
		old.Close(&xmpp.StreamError{Condition: "conflict", Text: "replaced by a new session"})
	}
}

// unbindUser removes a client session if it is still the one registered.
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
}

func (r *Router) lookupFull(bare, res string) *Session {
	sh := r.shard(bare)
	sh.mu.RLock()
	s := sh.users[bare][res]
	sh.mu.RUnlock()
	return s
}

// resources returns a snapshot of a user's sessions.
func (r *Router) resources(bare string) []*Session {
	sh := r.shard(bare)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	res := sh.users[bare]
	if len(res) == 0 {
		return nil
	}
	out := make([]*Session, 0, len(res))
	for _, s := range res {
		out = append(out, s)
	}
	return out
}

func (r *Router) addComponent(s *Session) {
	r.addComponentRef(s.Bare, &compRef{local: s, key: r.nodeID + "/" + s.pid.Id})
}

func (r *Router) addComponentRef(domain string, ref *compRef) {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	old := r.components[domain]
	cs := &componentSet{}
	if old != nil {
		cs.refs = append(cs.refs, old.refs...)
		cs.next.Store(old.next.Load())
	}
	cs.refs = append(cs.refs, ref)
	r.components[domain] = cs
}

// removeComponentRef drops a connection by key; false if it was not there.
func (r *Router) removeComponentRef(domain, key string) bool {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	old := r.components[domain]
	if old == nil {
		return false
	}
	cs := &componentSet{}
	cs.next.Store(old.next.Load())
	found := false
	for _, o := range old.refs {
		if o.key == key {
			found = true
			continue
		}
		cs.refs = append(cs.refs, o)
	}
	if len(cs.refs) == 0 {
		delete(r.components, domain)
	} else {
		r.components[domain] = cs
	}
	return found
}

func (r *Router) isComponentDomain(domain string) bool {
	for _, c := range r.compNames {
		if c == domain {
			return true
		}
	}
	return false
}

// bounce answers a stanza with a stanza error sent back to its sender.
func (r *Router) bounce(sender *Session, env *xmpp.Envelope, from, to string, e *xmpp.StanzaError) {
	sender.Send(xmpp.ErrorReply(env, from, to, e))
}

// Route decides where one stanza goes. from is the sender's address as the server vouches
// for it (stamped for clients, checked for components).
func (r *Router) Route(sender *Session, from string, env *xmpp.Envelope) {
	toStr := env.To
	if toStr == "" {
		if sender.Kind == KindC2S {
			switch env.Kind {
			case xmpp.KindPresence:
				r.broadcastPresence(sender, env)
				return
			case xmpp.KindIQ:
				// No 'to': handled by the server on behalf of the account (RFC 6120 §10.3.3),
				// unless its namespace is delegated.
				h := r.hosts[sender.Host]
				if isRequest(env) && r.delegateIQ(h, sender, from, "", env) {
					return
				}
				h.serveIQ(sender, from, sender.Bare, env)
				return
			default:
				toStr = sender.Bare
			}
		} else {
			r.bounce(sender, env, "", from, xmpp.ErrBadRequest)
			return
		}
	}
	to, err := jid.Parse(toStr)
	if err != nil {
		r.bounce(sender, env, "", from, xmpp.ErrJIDMalformed)
		return
	}
	domain := to.Domainpart()
	if h := r.hosts[domain]; h != nil {
		if to.Localpart() == "" {
			if to.Resourcepart() != "" {
				r.bounce(sender, env, toStr, from, xmpp.ErrServiceUnavailable)
				return
			}
			if env.Kind == xmpp.KindIQ {
				if sender.Kind == KindComponent && !isRequest(env) && r.managingReply(h, env) {
					return
				}
				if isRequest(env) && r.delegateIQ(h, sender, from, "", env) {
					return
				}
			}
			h.toServer(sender, from, env)
			return
		}
		if env.Kind == xmpp.KindIQ && to.Resourcepart() == "" && isRequest(env) &&
			r.accounts.Exists(domain, to.Localpart()) && r.delegateIQ(h, sender, from, to.Bare().String(), env) {
			return
		}
		r.toUser(h, sender, from, to, toStr, env)
		return
	}
	if c, ok := r.pickComponent(domain, bareOf(from)); ok {
		c.send(r, r.stamp(env, from, toStr))
		return
	}
	if r.isComponentDomain(domain) {
		// A configured component that is not connected.
		r.bounce(sender, env, toStr, from, xmpp.ErrServiceUnavailable)
		return
	}
	if env.Kind == xmpp.KindPresence {
		return
	}
	r.bounce(sender, env, toStr, from, xmpp.ErrRemoteServerNotFound)
}

func isRequest(env *xmpp.Envelope) bool { return env.Type == "get" || env.Type == "set" }

func bareOf(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

// stamp returns the stanza bytes with the vouched-for from (raw bytes when unchanged).
func (r *Router) stamp(env *xmpp.Envelope, from, to string) []byte {
	if env.From == from && env.To == to {
		return env.Raw
	}
	return env.Rewrite(from, to)
}

func (r *Router) toUser(h *Host, sender *Session, from string, to jid.JID, toStr string, env *xmpp.Envelope) {
	bare := to.Bare().String()
	if res := to.Resourcepart(); res != "" {
		if s := r.lookupFull(bare, res); s != nil {
			s.Send(r.stamp(env, from, toStr))
			if env.Kind == xmpp.KindPresence && sender.Kind == KindC2S {
				r.trackDirected(sender, toStr, env)
			}
			return
		}
		// RFC 6121 §8.5.3.2: no such resource.
		switch env.Kind {
		case xmpp.KindIQ:
			r.bounce(sender, env, toStr, from, xmpp.ErrServiceUnavailable)
			return
		case xmpp.KindPresence:
			return
		}
		if env.Type == "groupchat" {
			r.bounce(sender, env, toStr, from, xmpp.ErrServiceUnavailable)
			return
		}
		// message: handled as if sent to the bare JID
	}
	switch env.Kind {
	case xmpp.KindIQ:
		h.serveIQ(sender, from, bare, env)
	case xmpp.KindMessage:
		r.messageToBare(sender, from, bare, toStr, env)
	case xmpp.KindPresence:
		if env.Type == "probe" {
			return // no roster yet: nothing to answer a probe with
		}
		for _, s := range r.resources(bare) {
			if s.available.Load() {
				s.Send(r.stamp(env, from, bare))
			}
		}
		if sender.Kind == KindC2S {
			r.trackDirected(sender, bare, env)
		}
	}
}

// messageToBare applies RFC 6121 §8.5.2: highest-priority non-negative resources (all of
// them for headlines); nobody online → service-unavailable (no offline storage).
func (r *Router) messageToBare(sender *Session, from, bare, toStr string, env *xmpp.Envelope) {
	if env.Type == "groupchat" {
		r.bounce(sender, env, toStr, from, xmpp.ErrServiceUnavailable)
		return
	}
	var targets []*Session
	best := int32(-1)
	for _, s := range r.resources(bare) {
		if !s.available.Load() {
			continue
		}
		p := s.priority.Load()
		if p < 0 {
			continue
		}
		switch {
		case env.Type == "headline":
			targets = append(targets, s)
		case p > best:
			best = p
			targets = append(targets[:0], s)
		case p == best:
			targets = append(targets, s)
		}
	}
	if len(targets) == 0 {
		r.bounce(sender, env, toStr, from, xmpp.ErrServiceUnavailable)
		return
	}
	for _, s := range targets {
		s.Send(r.stamp(env, from, env.To))
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

// broadcastPresence handles presence without 'to' (RFC 6121 §4.2, §4.4): the session's
// availability changes and the user's other available resources are told. With no
// roster yet, there are no contacts to broadcast to.
func (r *Router) broadcastPresence(s *Session, env *xmpp.Envelope) {
	switch env.Type {
	case "":
		s.priority.Store(parsePriority(env))
		data := r.stamp(env, s.Full, "")
		first := !s.available.Swap(true)
		s.lastPresence.Store(&data)
		for _, o := range r.resources(s.Bare) {
			if o == s || !o.available.Load() {
				continue
			}
			o.Send(env.Rewrite(s.Full, o.Full))
			if first {
				if p := o.lastPresence.Load(); p != nil {
					s.Send(presenceFrom(*p, o.Full, s.Full))
				}
			}
		}
	case "unavailable":
		if !s.available.Load() {
			return
		}
		r.goOfflineWith(s, env)
	}
}

// goOffline sends unavailable presence for a session that ends or is replaced.
func (r *Router) goOffline(s *Session) {
	if s.Kind != KindC2S {
		return
	}
	r.goOfflineWith(s, nil)
}

func (r *Router) goOfflineWith(s *Session, env *xmpp.Envelope) {
	wasAvailable := s.available.Swap(false)
	s.lastPresence.Store(nil)
	unavailable := func(to string) []byte {
		if env != nil {
			return env.Rewrite(s.Full, to)
		}
		return []byte("<presence type='unavailable' from='" + xmpp.Escape(s.Full) + "' to='" + xmpp.Escape(to) + "'/>")
	}
	if wasAvailable {
		for _, o := range r.resources(s.Bare) {
			if o != s && o.available.Load() {
				o.Send(unavailable(o.Full))
			}
		}
	}
	for _, to := range s.takeDirected() {
		j, err := jid.Parse(to)
		if err != nil {
			continue
		}
		if h := r.hosts[j.Domainpart()]; h != nil && j.Localpart() != "" {
			if j.Resourcepart() != "" {
				if t := r.lookupFull(j.Bare().String(), j.Resourcepart()); t != nil {
					t.Send(unavailable(to))
				}
				continue
			}
			for _, t := range r.resources(to) {
				if t.available.Load() {
					t.Send(unavailable(to))
				}
			}
			continue
		}
		if c, ok := r.pickComponent(j.Domainpart(), s.Bare); ok {
			c.send(r, unavailable(to))
		}
	}
}

// presenceFrom readdresses a stored presence stanza.
func presenceFrom(raw []byte, from, to string) []byte {
	rd := xmpp.NewReader(strings.NewReader("<stream:stream xmlns='jabber:client' xmlns:stream='"+xmpp.NSStream+"'>"+string(raw)), len(raw)+4096)
	if _, err := rd.ReadHeader(); err != nil {
		return nil
	}
	env, err := rd.Next()
	if err != nil {
		return nil
	}
	return env.Rewrite(from, to)
}

func parsePriority(env *xmpp.Envelope) int32 {
	if !strings.Contains(string(env.Content()), "priority") {
		return 0
	}
	var p struct {
		Priority *int32 `xml:"priority"`
	}
	if err := xml.Unmarshal(env.Raw, &p); err != nil || p.Priority == nil {
		return 0
	}
	v := *p.Priority
	if v < -128 {
		v = -128
	}
	if v > 127 {
		v = 127
	}
	return v
}
