package actors

import (
	"encoding/xml"
	"hash/maphash"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/roster"
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
	ParkAfter    time.Duration // a client session silent this long parks (0: never)
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
	link     link // to actors on other nodes
	log      *slog.Logger
	settings atomic.Pointer[settings] // what a config reload may change
	accounts Accounts
	version  string

	hosts map[string]*Host

	seed   maphash.Seed
	shards [64]userShard  // local client sessions
	owned  [64]ownerShard // owner tables of the users this node owns

	// components maps a component's domain to its connections. The map is replaced,
	// never written (cmu serializes the writers), so a lookup per delegated IQ takes no
	// lock: a read lock's shared counter bounced between the cores on every IQ.
	cmu        sync.Mutex
	components atomic.Pointer[map[string]*componentSet]

	deleg   *Delegation
	tracker *delegation.Tracker[*Session]

	rosters     *roster.Store // nil: no roster storage (empty rosters are answered)
	dynPrivs    atomic.Pointer[dynamicPrivileges]
	privTracker *delegation.Tracker[*Session] // XEP-0356 IQs sent on behalf of users
	privPID     *actor.PID                    // receives the router's answers to those IQs

	nodeID  string
	metrics *Metrics
	cluster Cluster // nil: standalone
	self    *actor.PID

	replyWorkers []*actor.PID // see receive (cluster.go)
	replyNext    atomic.Uint64

	disp *workerDispatcher // runs every mailbox of the router's actors
	jids *jidCache
}

type userShard struct {
	mu    sync.RWMutex
	users map[string]map[string]*Session // bare → resource → session
}

// componentSet is every connection of one component, here and on other nodes.
// Copy-on-write: readers take the pointer from the map and use it freely.
type componentSet struct {
	refs []*compRef
	next atomic.Uint64
}

// settings are swapped whole on reload; readers load the pointer once.
type settings struct {
	limits    Limits
	compOpts  map[string]ComponentOptions
	compNames []string
}

// SetSettings applies limits and component options (at start and on reload). Components
// that are no longer configured are disconnected.
func (r *Router) SetSettings(l Limits, comps map[string]ComponentOptions) {
	st := &settings{limits: l, compOpts: make(map[string]ComponentOptions, len(comps))}
	for name, o := range comps {
		o.Privileges = o.Privileges.Normalized()
		st.compOpts[name] = o
		st.compNames = append(st.compNames, name)
	}
	sort.Strings(st.compNames)
	r.settings.Store(st)
	for _, s := range r.allSessions() {
		if _, ok := comps[s.Bare]; s.Kind == KindComponent && !ok {
			s.Close(&xmpp.StreamError{Condition: "policy-violation", Text: "component removed from the configuration"})
		}
	}
}

func (r *Router) limits() Limits { return r.settings.Load().limits }

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
	Metrics    *Metrics    // nil: not counted
	Rosters    *roster.Store
	// PrivilegedTimeout bounds how long an IQ a privileged entity sends on behalf of a
	// user waits for its answer (default: the delegation timeout, else 30s).
	PrivilegedTimeout time.Duration
}

// Metrics are the router's Prometheus counters.
type Metrics struct {
	RoutingErrors *prometheus.CounterVec // stanza errors sent, by condition
	Parked        prometheus.Gauge       // client sessions parked (limits.park_after)
	Parks         prometheus.Counter     // times a client session parked

	// stanzas counts stanzas in (by kind and source) and out (switchboard_stanzas_in_total,
	// switchboard_stanzas_out_total), striped: see stripedCounter.
	stanzas *stanzaCounters
}

// Sources of stanzas, for Metrics.stanzaIn.
const (
	fromC2S = iota
	fromComponent
)

// stanzaIn counts a stanza read from a session; by is the session or connection (it picks
// the stripe).
func (m *Metrics) stanzaIn(k xmpp.Kind, source int, by unsafe.Pointer) {
	if k >= xmpp.KindMessage && k <= xmpp.KindIQ {
		m.stanzas.in[source][k].inc(by)
	}
}

// NewMetrics registers the router's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		stanzas: newStanzaCounters(),
		RoutingErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_routing_errors_total", Help: "Stanza errors the router answered with, by condition.",
		}, []string{"condition"}),
	}
	m.Parked = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "switchboard_c2s_parked", Help: "Client sessions idle past limits.park_after, waiting for input on a minimal goroutine.",
	})
	m.Parks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_c2s_parks_total", Help: "Times a client session parked (went silent for limits.park_after).",
	})
	reg.MustRegister(m.stanzas, m.RoutingErrors, m.Parked, m.Parks)
	return m
}

// NewRouter builds the router and spawns one host actor per domain.
func NewRouter(c Config) *Router {
	r := &Router{
		sys:      c.System,
		link:     actorLink{c.System},
		log:      c.Log,
		accounts: c.Accounts,
		version:  c.Version,
		hosts:    make(map[string]*Host),
		seed:     maphash.MakeSeed(),
		deleg:    c.Delegation,
		nodeID:   c.NodeID,
		metrics:  c.Metrics,
		rosters:  c.Rosters,
		disp:     newWorkerDispatcher(300, 256),
		jids:     newJIDCache(),
	}
	if r.metrics == nil {
		r.metrics = NewMetrics(prometheus.NewRegistry())
	}
	r.SetSettings(c.Limits, c.Components)
	if r.deleg != nil {
		r.tracker = delegation.NewTracker(c.NodeID, r.deleg.Timeout, r.delegationTimeout)
	}
	pt := c.PrivilegedTimeout
	if pt <= 0 && r.deleg != nil {
		pt = r.deleg.Timeout
	}
	if pt <= 0 {
		pt = 30 * time.Second
	}
	r.privTracker = delegation.NewTaggedTracker(delegation.TagPrivileged, c.NodeID, pt, r.privilegedTimeout)
	r.privPID = r.sys.Root.Spawn(actor.PropsFromFunc(r.privilegedActor, r.onWorkers()))
	for i := range r.shards {
		r.shards[i].users = make(map[string]map[string]*Session)
		r.owned[i].users = make(map[string]map[string]*resEntry)
	}
	for _, d := range c.Hosts {
		h := &Host{Domain: d, router: r}
		h.pid = r.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return h }, r.onWorkers()))
		r.hosts[d] = h
	}
	return r
}

// Stop ends every session with system-shutdown and stops the host actors.
func (r *Router) Stop() {
	// IQs still waiting for a managing entity are answered now: nobody will later.
	if r.tracker != nil {
		for _, p := range r.tracker.FailAll() {
			r.deleg.Metrics.Done(&p.Request, delegation.OutcomeUnavailable)
			p.Requester.Send(iqError(&p.Request, xmpp.ErrServiceUnavailable))
		}
	}
	r.privTracker.FailAll()
	for _, s := range r.allSessions() {
		s.Close(&xmpp.StreamError{Condition: "system-shutdown"})
	}
	for _, h := range r.hosts {
		r.sys.Root.Stop(h.pid)
	}
	r.disp.stop()
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
	for _, cs := range r.componentMap() {
		for _, c := range cs.refs {
			if c.local != nil {
				out = append(out, c.local)
			}
		}
	}
	return out
}

// IsHost reports whether domain is served here.
func (r *Router) IsHost(domain string) bool { _, ok := r.hosts[domain]; return ok }

func (r *Router) shard(bare string) *userShard {
	return &r.shards[hashString(r.seed, bare)%uint64(len(r.shards))]
}

func hashString(seed maphash.Seed, s string) uint64 { return maphash.String(seed, s) }

// newSession spawns the session's writer actor.
func (r *Router) newSession(kind SessionKind, c *xmpp.Conn) *Session {
	s := &Session{Kind: kind, conn: c, router: r}
	props := actor.PropsFromProducer(func() actor.Actor { return s }, r.onWorkers())
	s.pid = r.sys.Root.Spawn(props)
	return s
}

// stopSession ends the actor after what is queued (Poison is a user message, so it is
// processed after the pending writes; Stop would overtake them).
func (r *Router) stopSession(s *Session) {
	s.Close(nil)
	r.sys.Root.Poison(s.pid)
}

func (r *Router) addComponent(s *Session) {
	r.addComponentRef(s.Bare, &compRef{target: localTarget(s), key: r.sessionKey(s)})
}

// componentMap is the current map of components (nil: none yet). Do not write it.
func (r *Router) componentMap() map[string]*componentSet {
	if m := r.components.Load(); m != nil {
		return *m
	}
	return nil
}

// setComponents replaces domain's entry (cs nil: removes it); r.cmu held.
func (r *Router) setComponents(domain string, cs *componentSet) {
	next := maps.Clone(r.componentMap())
	if next == nil {
		next = make(map[string]*componentSet)
	}
	if cs == nil {
		delete(next, domain)
	} else {
		next[domain] = cs
	}
	r.components.Store(&next)
}

func (r *Router) addComponentRef(domain string, ref *compRef) {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	old := r.componentMap()[domain]
	cs := &componentSet{}
	if old != nil {
		cs.refs = append(cs.refs, old.refs...)
		cs.next.Store(old.next.Load())
	}
	cs.refs = append(cs.refs, ref)
	r.setComponents(domain, cs)
}

// removeComponentRef drops a connection by key; false if it was not there.
func (r *Router) removeComponentRef(domain, key string) bool {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	old := r.componentMap()[domain]
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
		cs = nil
	}
	r.setComponents(domain, cs)
	return found
}

func (r *Router) isComponentDomain(domain string) bool {
	for _, c := range r.settings.Load().compNames {
		if c == domain {
			return true
		}
	}
	return false
}

// stamp returns the stanza bytes with the vouched-for from (raw bytes when unchanged).
func (r *Router) stamp(env *xmpp.Envelope, from, to string) []byte {
	if env.From == from && env.To == to {
		return env.Raw
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
