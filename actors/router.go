package actors

import (
	"context"
	"encoding/xml"
	"hash/maphash"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-im/switchboard/blocking"
	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/directory"
	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/offline"
	"github.com/switchboard-im/switchboard/roster"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Accounts answers whether a local account exists (for RFC 6121 §8.5 routing).
type Accounts interface {
	Exists(host, localpart string) bool
}

// Rosters are the users' rosters (roster.Store: etcd, compare-and-swap).
type Rosters interface {
	// Get returns a user's roster (empty, Ver 0, if none was ever stored).
	Get(ctx context.Context, host, localpart string) (*roster.Roster, error)
	// Update applies fn and stores the result if fn reports a change, retrying on a
	// concurrent write; it returns the roster as stored and whether it was written.
	Update(ctx context.Context, host, localpart string, fn func(*roster.Roster) (bool, error)) (*roster.Roster, bool, error)
}

// Limits the router enforces on sessions.
type Limits struct {
	MaxSendQueue int64
	CSIMaxHeld   int // bytes an inactive client's session may hold back (XEP-0352; 0: none)
	// XEP-0198: the longest a detached session waits to be resumed (0: no resumption),
	// and the stanzas and bytes it keeps until the client acknowledges them.
	SMResume                    time.Duration
	SMMaxUnacked, SMMaxUnackedB int
	WriteTimeout                time.Duration
	IdleTimeout                 time.Duration
	ParkAfter                   time.Duration // a client session silent this long parks (0: never)
	PendingWork                 int64         // a session with more work started is not read until it drains (0: no limit)
	InflightIQs                 int64         // IQs a session may have waiting for another entity's answer (0: no limit)
	SessionsPerUser             int64         // sessions one account may have bound at once, cluster-wide (0: no limit)
	// ClientBytes and ClientStanzas shape what a bound client sends (per second, with a
	// burst of ClientBurst; 0: no limit); S2SBytes and S2SStanzas what an incoming
	// server stream sends.
	ClientBytes, ClientStanzas float64
	S2SBytes, S2SStanzas       float64
	ClientBurst                time.Duration
}

// Router is the node-local stanza switch: construction and lifecycle, the routing
// decision (route.go) and the reading side of connections (serve.go); its parts do the
// protocol work.
// It is safe for concurrent use by every connection's reader goroutine; the user table is
// sharded by bare JID so that no lock is shared by all sessions.
type Router struct {
	sys      *actor.ActorSystem
	link     Link // what crosses nodes
	log      *slog.Logger
	settings atomic.Pointer[settings] // what a config reload may change
	accounts Accounts
	version  string

	hosts map[string]*Host

	// The router's parts, each over the router's shared state.
	users *users
	del   *delegator
	priv  *privileged
	subs  *subscriptions
	comps *components

	deleg   *Delegation    // nil: no XEP-0355
	rosters Rosters        // nil: no roster storage (empty rosters are answered)
	offline *offline.Store // nil: no offline storage (messages to offline users bounce)
	// blocklists are every user's XEP-0191 blocklist (nil: nobody blocks anyone, and
	// blocking IQs find no storage)
	blocklists *blocking.Cache

	nodeID  string
	metrics *Metrics
	cluster Cluster // nil: standalone

	unreachableFor time.Duration // Config.UnreachableFor
	unwatch        func()        // ends the watch of the transport's failures
	drain          drainState    // a graceful stop (drain.go)
	traces         traces        // live traces of JIDs (trace.go)
	actorPrefix    string        // Config.ActorPrefix

	disp *Dispatcher // runs every mailbox of the router's actors
	jids *jidCache
	s2s  *s2sOut // outgoing server streams (s2s.go)
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
	System   *actor.ActorSystem
	Log      *slog.Logger
	Limits   Limits
	Accounts Accounts
	// Link carries what crosses nodes (nil: a standalone link); Cluster is the
	// membership (nil: standalone). Both are made before the router, which is given to
	// them as their handler and listener when they start.
	Link    Link
	Cluster Cluster
	// Dispatcher runs the router's actors (nil: one of its own); the node link's actors
	// should share it.
	Dispatcher *Dispatcher
	Hosts      []string
	Components map[string]ComponentOptions // configured components (listed in the server's disco#items)
	Version    string
	NodeID     string
	Delegation *Delegation // nil: no XEP-0355
	Metrics    *Metrics    // nil: not counted
	Rosters    Rosters     // nil: no roster storage
	// PrivilegedTimeout bounds how long an IQ a privileged entity sends on behalf of a
	// user waits for its answer (default: the delegation timeout, else 30s).
	PrivilegedTimeout time.Duration
	// UnreachableFor is how long the component connections of a node whose transport
	// failed are passed over, unless the node announces components again first; by then
	// the membership has declared it dead, or it was a passing fault (default 5s).
	UnreachableFor time.Duration
	// Offline stores messages for users with no available resource (XEP-0160; nil: none).
	Offline *offline.Store
	// Blocklists are the users' XEP-0191 blocklists, this node's copy of them and their
	// store (nil: none).
	Blocklists *blocking.Cache
	// ActorPrefix begins the names of session actors: cluster.ActorPrefix of this run's
	// incarnation, so that no name is given out again by a later run.
	ActorPrefix string
	// S2S is federation (zero: none; stanzas to other domains get remote-server-not-found).
	S2S S2S
}

// Metrics are the router's Prometheus counters.
type Metrics struct {
	RoutingErrors *prometheus.CounterVec // stanza errors sent, by condition
	Parked        prometheus.Gauge       // client sessions parked (limits.park_after)
	Parks         prometheus.Counter     // times a client session parked
	// S2S: outgoing server streams up, and those that could not be opened, by the
	// condition what waited for them was bounced with.
	S2SStreams  *prometheus.GaugeVec // by direction (in, out) and remote domain
	S2SFailures *prometheus.CounterVec
	S2SOut      prometheus.Counter // stanzas written to outgoing server streams here

	// stanzas counts stanzas in (by kind and source) and out (switchboard_stanzas_in_total,
	// switchboard_stanzas_out_total), striped: see stripedCounter.
	stanzas *stanzaCounters
}

// Sources of stanzas, for Metrics.stanzaIn.
const (
	fromC2S = iota
	fromComponent
	fromS2S
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
	m.S2SStreams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "switchboard_s2s_streams", Help: "Server-to-server streams up on this node, by direction (in, out) and remote domain.",
	}, []string{"direction", "remote"})
	m.S2SOut = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_s2s_stanzas_out_total", Help: "Stanzas handed to outgoing server-to-server streams on this node (those from other nodes included).",
	})
	m.S2SFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_s2s_failures_total", Help: "Outgoing server-to-server streams that could not be opened, by the condition their stanzas were bounced with.",
	}, []string{"condition"})
	reg.MustRegister(m.stanzas, m.RoutingErrors, m.Parked, m.Parks, m.S2SStreams, m.S2SFailures, m.S2SOut)
	return m
}

func (m *Metrics) s2sStreams(dir, remote string, d float64) {
	m.S2SStreams.WithLabelValues(dir, remote).Add(d)
}
func (m *Metrics) s2sFailures(cond string) { m.S2SFailures.WithLabelValues(cond).Inc() }

// NewRouter builds the router; Start spawns its actors.
func NewRouter(c Config) *Router {
	r := &Router{
		sys:      c.System,
		link:     c.Link,
		cluster:  c.Cluster,
		log:      c.Log,
		accounts: c.Accounts,
		version:  c.Version,
		hosts:    make(map[string]*Host),
		deleg:    c.Delegation,
		nodeID:   c.NodeID,
		metrics:  c.Metrics,
		rosters:  c.Rosters,
		disp:     c.Dispatcher,
		jids:     newJIDCache(),
	}
	r.s2s = &s2sOut{r: r, cfg: c.S2S}
	r.drain.stopping = make(chan struct{})
	r.drain.handover = make(chan struct{})
	r.actorPrefix = c.ActorPrefix
	r.offline = c.Offline
	r.blocklists = c.Blocklists
	r.users = &users{r: r, sessions: directory.NewSessions[*Session](), owners: directory.NewOwners[*Session]()}
	r.users.offline.seed = maphash.MakeSeed()
	r.del, r.priv, r.subs = &delegator{r: r}, &privileged{r: r}, &subscriptions{r}
	r.comps = &components{r: r, dir: directory.NewComponents[*Session]()}
	if r.metrics == nil {
		r.metrics = NewMetrics(prometheus.NewRegistry())
	}
	if r.disp == nil {
		r.disp = NewDispatcher()
	}
	if r.link == nil {
		r.link = nodelink.New(c.System, c.NodeID, nil, c.Log)
	}
	r.SetSettings(c.Limits, c.Components)
	if r.deleg != nil {
		r.del.tracker = delegation.NewTracker(c.NodeID, r.deleg.Timeout, r.del.delegationTimeout)
		r.del.tracker.StallAfter = r.deleg.StallAfter
		r.del.tracker.OnStall = r.comps.stalled
	}
	r.unreachableFor = c.UnreachableFor
	if r.unreachableFor <= 0 {
		r.unreachableFor = 5 * time.Second
	}
	pt := c.PrivilegedTimeout
	if pt <= 0 && r.deleg != nil {
		pt = r.deleg.Timeout
	}
	if pt <= 0 {
		pt = 30 * time.Second
	}
	r.priv.tracker = delegation.NewTaggedTracker(delegation.TagPrivileged, c.NodeID, pt, r.priv.privilegedTimeout)
	// Every IQ waiting for another entity's answer counts against its requester's
	// limits.max_inflight_iqs until it ends, however it ends.
	inflightDone := func(p *delegation.Pending[*Session]) { p.Requester.inflight.Add(-1) }
	r.priv.tracker.OnDone = inflightDone
	if r.del.tracker != nil {
		r.del.tracker.OnDone = inflightDone
	}
	for _, d := range c.Hosts {
		r.hosts[d] = &Host{Domain: d, router: r}
	}
	return r
}

// Start spawns the host actors (one per served domain) and the actor that takes the
// answers to privileged IQs. Sessions are served from then on.
func (r *Router) Start(ctx context.Context) error {
	if r.cluster != nil {
		// A connection to another node that is refused or reset ends its endpoint:
		// stop routing to that node's components now, not when the membership decides.
		sub := r.sys.EventStream.Subscribe(func(evt any) {
			if e, ok := evt.(*remote.EndpointTerminatedEvent); ok {
				r.comps.nodeUnreachable(e.Address)
				if id := r.memberAt(e.Address); id != "" {
					go r.s2s.ownerGone(id)
				}
			}
		})
		r.unwatch = func() { r.sys.EventStream.Unsubscribe(sub) }
	}
	r.priv.pid = r.sys.Root.Spawn(actor.PropsFromFunc(r.priv.privilegedActor, r.onWorkers()))
	for _, h := range r.hosts {
		h.pid = r.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return h }, r.onWorkers()))
	}
	return nil
}

// Stop answers what waits for a managing entity, ends every session with
// system-shutdown and stops the host actors.
func (r *Router) Stop(ctx context.Context) error {
	if r.unwatch != nil {
		r.unwatch()
	}
	// IQs still waiting for a managing entity are answered now: nobody will later.
	if r.del.tracker != nil {
		for _, p := range r.del.tracker.FailAll() {
			r.del.fail(p)
		}
	}
	r.priv.tracker.FailAll()
	for _, s := range r.allSessions() {
		s.Close(&xmpp.StreamError{Condition: "system-shutdown"})
	}
	r.s2s.stop()
	r.stopDraining() // after the closes: a paused reader's session ends behind its close
	for _, h := range r.hosts {
		if h.pid != nil {
			r.sys.Root.Stop(h.pid)
		}
	}
	r.disp.Stop()
	return nil
}

func (r *Router) allSessions() []*Session {
	return append(r.users.sessions.All(), r.comps.dir.AllLocals()...)
}

// IsHost reports whether domain is served here.
func (r *Router) IsHost(domain string) bool { _, ok := r.hosts[domain]; return ok }

// newSession spawns the session's writer actor.
func (r *Router) newSession(kind SessionKind, c *xmpp.Conn, init ...func(*Session)) *Session {
	s := &Session{Kind: kind, router: r}
	s.conn.Store(c)
	for _, f := range init {
		f(s) // before its actor runs
	}
	props := actor.PropsFromProducer(func() actor.Actor { return s }, r.onWorkers(),
		actor.WithMailbox(actor.Unbounded(remoteBytes{s})))
	s.pid = r.sys.Root.SpawnPrefix(props, r.actorPrefix)
	return s
}

// stopSession ends the actor after what is queued (Poison is a user message, so it is
// processed after the pending writes; Stop would overtake them).
func (r *Router) stopSession(s *Session) {
	s.Close(nil)
	r.sys.Root.Poison(s.pid)
}

// stamp returns the stanza bytes with the vouched-for from (raw bytes when unchanged).
// What a component or a remote server sent is in jabber:component:accept or
// jabber:server (the reader makes each stanza self-contained): it is routed in
// jabber:client, as clients expect it.
func stamp(env *xmpp.Envelope, from, to string) []byte {
	if env.Name.Space != xmpp.NSClient { // a component's or a remote server's

		return env.RewriteNS(from, to, xmpp.NSClient)
	}
	if env.From == from && env.To == to {
		return env.Raw
	}
	return env.Rewrite(from, to)
}

// stampIn is stamp for a stanza written to a stream whose namespace is ns, whatever
// stream it came from: a component's (jabber:component:accept, XEP-0114) or another
// server's (jabber:server).
func stampIn(env *xmpp.Envelope, from, to, ns string) []byte {
	if env.Name.Space == ns && env.From == from && env.To == to {
		return env.Raw
	}
	return env.RewriteNS(from, to, ns)
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

// RulesChanged applies a change of a host's delegation rules (delegation.Manager's
// subscribers): affected managing entities are advertised again.
func (r *Router) RulesChanged(ch delegation.Change) { r.del.rulesChanged(ch) }

// SetDynamicPrivileges replaces the XEP-0356 privileges stored in etcd (host →
// component → privileges; an entry overrides the component's configured privileges on
// that host).
func (r *Router) SetDynamicPrivileges(m map[string]map[string]config.Privileges) {
	r.priv.setDynamic(m)
}

// ComponentsChanged applies the cluster directory's news about other nodes' component
// sessions (cluster.Listener).
func (r *Router) ComponentsChanged(added, removed []cluster.ComponentEntry) {
	r.comps.componentsChanged(added, removed)
}

func (r *Router) componentOpts(domain string) ComponentOptions {
	o := r.settings.Load().compOpts[domain]
	if o.DelegationNS == "" {
		o.DelegationNS = delegation.NS2
	}
	return o
}

func (r *Router) sortedHosts() []string {
	out := make([]string, 0, len(r.hosts))
	for d := range r.hosts {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// onWorkers is the spawn option that puts an actor on the router's workers.
func (r *Router) onWorkers() actor.PropsOption { return r.disp.Props() }

// Inbound is the router's nodelink.Handler: what other nodes send this node.
func (r *Router) Inbound() nodelink.Handler { return inbound{r} }

// NodeRestarted is told that a node runs again as a new incarnation (cluster.Listener):
// the sessions of its earlier runs leave the owner tables here, and its address, which
// the transport may have found unreachable when the earlier run died, is used again.
func (r *Router) NodeRestarted(node string, incarnation int64) {
	r.users.nodeRestarted(node, cluster.ActorPrefix(incarnation))
	if r.cluster == nil {
		return
	}
	for _, m := range r.cluster.Members() {
		if m.ID == node {
			r.comps.dir.MarkUp(m.Remote)
		}
	}
	r.log.Info("node restarted: its earlier run's sessions are dropped", "node", node)
}

// MembersChanged is told about membership (cluster.Listener); users move owners (owners.go).
func (r *Router) MembersChanged(members []cluster.Member, left []string) {
	r.users.membersChanged(members, left)
	r.s2s.rehome()
	for _, n := range left {
		r.s2s.ownerGone(n)
	}
}

// memberAt is the member whose remote address is addr ("" if none is known).
func (r *Router) memberAt(addr string) string {
	for _, m := range r.cluster.Members() {
		if m.Remote == addr {
			return m.ID
		}
	}
	return ""
}

// ConnInfo is one component connection as the directory lists it.
type ConnInfo = directory.ConnInfo

// Components lists the component connections (and managing accounts' resources) this
// node knows, here and on other nodes, as it would pick them.
func (r *Router) Components() []ConnInfo { return r.comps.dir.Snapshot() }

// Counts returns how many client and component sessions this node holds.
func (r *Router) Counts() (clients, components int) {
	for _, s := range r.allSessions() {
		if s.Kind == KindC2S {
			clients++
		} else {
			components++
		}
	}
	return clients, components
}
