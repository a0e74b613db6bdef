// Package cluster is Switchboard's membership and shared directory: memberlist finds the
// nodes (node id and actor-remoting address in each node's metadata), and the small
// directory of component sessions is kept on every node, pushed to every member on each
// change and reconciled by memberlist's push/pull anti-entropy. User sessions are not
// gossiped: each bare JID has an owner node chosen by rendezvous hashing over the live
// members (Owner), which keeps that user's resource table.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config of the membership layer.
type Config struct {
	NodeID        string
	Bind          string // memberlist host:port
	Advertise     string // optional host:port announced instead of Bind
	Remote        string // this node's actor remoting address, announced in metadata
	Admin         string // this node's admin HTTP address, announced in metadata
	Join          []string
	ProbeInterval time.Duration
	SuspicionMult int
	// Keys are the gossip keys (ParseKeys), the first used to encrypt; none: gossip in
	// the clear, unauthenticated (loopback only, or cluster.insecure).
	Keys [][]byte
	// Incarnation tells this run of the node from its earlier ones under the same name
	// (NewIncarnation); 0: one is made.
	Incarnation int64
}

// NewIncarnation is a new run's incarnation: it orders the runs of a node (the clock, in
// nanoseconds, as node states have always carried).
func NewIncarnation() int64 { return time.Now().UnixNano() }

// ActorPrefix is what the names of the session actors of one incarnation begin with, so
// that a restarted node never answers to a name its previous run gave out, and an entry
// for an actor of an earlier run is known to be stale (Listener.NodeRestarted).
func ActorPrefix(incarnation int64) string {
	return "i" + strconv.FormatInt(incarnation, 36) + "."
}

// Member is one live node.
type Member struct {
	ID     string `json:"id"`
	Gossip string `json:"gossip"`
	Remote string `json:"remote"`
	Admin  string `json:"admin"`
	State  string `json:"state"`
	// Proto is the version of the cross-node messages the node understands (see
	// ProtoVersion); 0 for a node older than versioning.
	Proto int `json:"proto,omitempty"`
	// Incarnation is the node's current run (Config.Incarnation); 0 for an older node.
	Incarnation int64 `json:"incarnation,omitempty"`
}

// ProtoVersion is the version of the cross-node messages this build understands, told to
// the other nodes in the memberlist metadata, so that during a rolling upgrade a newer
// node sends an older one only what it knows.
//
//	1: DelegationAnswers (answers batched per node)
//	2: PackedAnswers (the same, packed in one byte string)
//	3: draining (a node's state says it withdrew its component connections) and Drained
//	4: clean component closes (a node's state names them) and ComponentClosed
//	5: UserCarbon, UserRegister.carbons and CarbonsWanted (XEP-0280; an older node drops them)
//	6: SMLocate, SMTakeover, SMState.blocklist_interested and UserRegister.resumed (XEP-0198
//	   resumption on another node); BlocklistSync, UserRegister.blocklist_interested and
//	   UserPush.blocklist (XEP-0191; an older node is not waited for, and gets no
//	   blocklist push to make); S2SStanza (federation's outgoing streams, one per
//	   domain pair in the cluster)
const ProtoVersion = 6

// ComponentEntry is one connected component session somewhere in the cluster.
type ComponentEntry struct {
	Domain  string `json:"domain"`
	Node    string `json:"node"`
	Address string `json:"address"`        // actor remoting address of the node
	PID     string `json:"pid"`            // session actor id on that node
	Full    string `json:"full,omitempty"` // for a managing account's resource: its full JID
	// Clean, on an entry ComponentsChanged reports removed: the connection closed its
	// stream cleanly, and a ComponentClosed follows its answers (not gossiped).
	Clean bool `json:"-"`
}

// Key identifies the session cluster-wide.
func (e ComponentEntry) Key() string { return e.Node + "/" + e.PID }

// Listener is told about directory and membership changes (on memberlist's goroutines:
// it must not block).
type Listener interface {
	ComponentsChanged(added, removed []ComponentEntry)
	MembersChanged(members []Member, left []string)
	// NodeDraining: the node withdrew these component connections (Withdraw): they take
	// no new work, but what was sent over them is still answered there.
	NodeDraining(node string, withdrawn []ComponentEntry)
	// NodeRestarted: the node runs again under the same name, as a new incarnation;
	// whatever its earlier runs held is gone (their component connections are reported
	// removed by ComponentsChanged first).
	NodeRestarted(node string, incarnation int64)
}

type meta struct {
	ID     string `json:"id"`
	Remote string `json:"remote"`
	Admin  string `json:"admin"`
	Proto  int    `json:"proto,omitempty"`
	Inc    int64  `json:"inc,omitempty"`
}

// nodeState is what one node says about its own component sessions. (Incarnation,
// Version) orders states: a restarted node starts a new incarnation.
type nodeState struct {
	Node        string           `json:"node"`
	Incarnation int64            `json:"inc"`
	Version     uint64           `json:"ver"`
	Components  []ComponentEntry `json:"components"`
	// Draining: the node is on its way out (Withdraw); its components take no new work.
	Draining bool `json:"draining,omitempty"`
	// Clean: the keys of the connections this version removed that closed their stream
	// cleanly (RemoveComponent).
	Clean []string `json:"clean,omitempty"`
}

func (s nodeState) newer(o nodeState) bool {
	if s.Incarnation != o.Incarnation {
		return s.Incarnation > o.Incarnation
	}
	return s.Version > o.Version
}

// Cluster is this node's view of the cluster.
type Cluster struct {
	cfg      Config
	log      *slog.Logger
	listener Listener
	ml       atomic.Pointer[memberlist.Memberlist] // set once Create returns; callbacks may run before

	mu      sync.RWMutex
	members map[string]Member
	own     nodeState
	states  map[string]nodeState // other nodes
	// early: the newest state of each node that sent one before this node saw it join
	// (a restarted node announces its components as soon as it knows the others, which
	// may be before their memberlist hears of it); applied when it joins.
	early   map[string]nodeState
	stopped chan struct{}
	wg      sync.WaitGroup
	joined  atomic.Bool
	keyring *memberlist.Keyring // nil: gossip unencrypted
}

// Joined reports whether the node is part of a cluster: it has no seeds (it forms
// one), it reached a seed, or another member reached it.
func (c *Cluster) Joined() bool {
	if len(c.cfg.Join) == 0 || c.joined.Load() {
		return true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.members) > 1
}

// New prepares the membership layer; Start joins.
func New(cfg Config, log *slog.Logger) *Cluster {
	if cfg.Incarnation == 0 {
		cfg.Incarnation = NewIncarnation()
	}
	return &Cluster{
		cfg: cfg, log: log.With("subsystem", "cluster"),
		members: make(map[string]Member),
		own:     nodeState{Node: cfg.NodeID, Incarnation: cfg.Incarnation},
		states:  make(map[string]nodeState),
		early:   make(map[string]nodeState),
		stopped: make(chan struct{}),
	}
}

// Start creates the memberlist and keeps trying to join the seeds in the background until
// at least one answers (a node that starts first simply forms the cluster). l is told of
// every change from then on; it is given here, not to New, so that what it calls back
// (the router) can be built with the cluster in hand.
func (c *Cluster) Start(ctx context.Context, l Listener) error {
	c.listener = l
	host, port, err := splitHostPort(c.cfg.Bind)
	if err != nil {
		return fmt.Errorf("cluster.bind: %w", err)
	}
	mc := memberlist.DefaultLocalConfig()
	mc.Name = c.cfg.NodeID
	mc.BindAddr, mc.BindPort = host, port
	if c.cfg.Advertise != "" {
		ah, ap, err := splitHostPort(c.cfg.Advertise)
		if err != nil {
			return fmt.Errorf("cluster.advertise: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if c.cfg.ProbeInterval > 0 {
		mc.ProbeInterval = c.cfg.ProbeInterval
	}
	if c.cfg.SuspicionMult > 0 {
		mc.SuspicionMult = c.cfg.SuspicionMult
	}
	mc.PushPullInterval = 5 * time.Second
	// A node restarted under the same name with a new address (a rescheduled pod) is
	// accepted once its old self has been dead this long.
	mc.DeadNodeReclaimTime = 30 * time.Second
	if len(c.cfg.Keys) > 0 {
		kr, err := newKeyring(c.cfg.Keys)
		if err != nil {
			return fmt.Errorf("cluster.secret_key_file: %w", err)
		}
		c.keyring = kr
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("memberlist: %w", err)
	}
	c.ml.Store(ml)
	if len(c.cfg.Join) > 0 {
		c.wg.Add(2)
		go c.joinLoop()
		go c.rejoinLoop()
	}
	return nil
}

// rejoinLoop heals partitions: once both sides of a cut have declared each other dead,
// memberlist stops talking to them, so every rejoinInterval the seeds that are not live
// members are joined again.
func (c *Cluster) rejoinLoop() {
	defer c.wg.Done()
	t := time.NewTicker(rejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stopped:
			return
		case <-t.C:
		}
		ml := c.ml.Load()
		if ml == nil {
			continue
		}
		live := map[string]bool{}
		for _, n := range ml.Members() {
			live[n.Address()] = true
		}
		self := ml.LocalNode().Address()
		var missing []string
		for _, seed := range c.cfg.Join {
			h, p, err := net.SplitHostPort(seed)
			if err != nil {
				continue
			}
			addrs, err := net.LookupHost(h)
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if ap := net.JoinHostPort(a, p); ap != self && !live[ap] {
					missing = append(missing, ap)
				}
			}
		}
		if len(missing) > 0 {
			if n, err := ml.Join(missing); n > 0 {
				c.log.Info("rejoined seeds", "seeds", missing, "contacted", n)
			} else {
				c.log.Debug("seeds still unreachable", "seeds", missing, "err", err)
			}
		}
	}
}

// rejoinInterval is how often seeds missing from the membership are tried again.
const rejoinInterval = 10 * time.Second

func (c *Cluster) joinLoop() {
	defer c.wg.Done()
	backoff := 200 * time.Millisecond
	for {
		n, err := c.ml.Load().Join(c.cfg.Join)
		if n > 0 {
			c.joined.Store(true)
			c.log.Info("joined the cluster", "seeds", c.cfg.Join, "contacted", n)
			return
		}
		c.log.Warn("cannot join the cluster yet, retrying", "seeds", c.cfg.Join, "err", err)
		select {
		case <-c.stopped:
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// Stop leaves the cluster cleanly (others drop this node at once rather than after the
// failure-detection time) and shuts memberlist down.
func (c *Cluster) Stop(ctx context.Context) error {
	select {
	case <-c.stopped:
		return nil
	default:
		close(c.stopped)
	}
	c.wg.Wait()
	ml := c.ml.Load()
	if ml == nil {
		return nil
	}
	timeout := leaveTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), 0)
	}
	leaveErr := ml.Leave(timeout)
	return errors.Join(leaveErr, ml.Shutdown())
}

// leaveTimeout bounds how long Stop waits for the leave to be gossiped.
const leaveTimeout = 5 * time.Second

// HealthScore is memberlist's awareness score (0 = healthy).
func (c *Cluster) HealthScore() int {
	if ml := c.ml.Load(); ml != nil {
		return ml.GetHealthScore()
	}
	return 0
}

// Members returns the live members (this node included), sorted by id.
func (c *Cluster) Members() []Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Remote returns a member's remoting address.
func (c *Cluster) Remote(node string) (string, bool) {
	c.mu.RLock()
	m, ok := c.members[node]
	c.mu.RUnlock()
	return m.Remote, ok
}

// Proto is the cross-node message version a member understands (0 if unknown or gone).
func (c *Cluster) Proto(node string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.members[node].Proto
}

// Owner is the node owning a key (a bare JID): highest rendezvous hash over live members.
func (c *Cluster) Owner(key string) Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return ownerOf(c.members, key)
}

// OwnerAmong is Owner's choice among the given members only (the live ones less those
// known unreachable): the one Owner picks once the others are gone.
func OwnerAmong(members []Member, key string) Member {
	m := make(map[string]Member, len(members))
	for _, x := range members {
		m[x.ID] = x
	}
	return ownerOf(m, key)
}

func ownerOf(members map[string]Member, key string) Member {
	var best Member
	var bestH uint64
	for id, m := range members {
		h := fnv.New64a()
		_, _ = io.WriteString(h, id)
		_, _ = h.Write([]byte{0})
		_, _ = io.WriteString(h, key)
		v := mix(h.Sum64())
		if best.ID == "" || v > bestH || (v == bestH && id < best.ID) {
			best, bestH = m, v
		}
	}
	return best
}

// mix is a 64-bit finalizer so that nearby FNV values spread evenly.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// AddComponent publishes a local component session.
func (c *Cluster) AddComponent(e ComponentEntry) {
	c.mu.Lock()
	c.own.Clean = nil
	c.own.Components = append(c.own.Components, e)
	c.own.Version++
	st := c.copyOwn()
	c.mu.Unlock()
	c.publish(st)
}

// RemoveComponent withdraws a local component session; clean: it closed its stream
// cleanly (the others then wait for its ComponentClosed before they move what waits on
// it, rather than fail it).
func (c *Cluster) RemoveComponent(e ComponentEntry, clean bool) {
	c.mu.Lock()
	c.own.Clean = nil
	if clean {
		c.own.Clean = []string{e.Key()}
	}
	out := c.own.Components[:0]
	for _, o := range c.own.Components {
		if o.Key() != e.Key() {
			out = append(out, o)
		}
	}
	c.own.Components = out
	c.own.Version++
	st := c.copyOwn()
	c.mu.Unlock()
	c.publish(st)
}

// Withdraw is the first step of a graceful stop: this node's state says it is draining,
// sent to every member at once (and kept for push/pull), so that the others stop picking
// its component connections while what they already sent over them is answered. It
// returns once every member has been told, or ctx ends.
func (c *Cluster) Withdraw(ctx context.Context) error {
	c.mu.Lock()
	c.own.Clean = nil
	c.own.Draining = true
	c.own.Version++
	st := c.copyOwn()
	c.mu.Unlock()
	done, errs := c.send(st)
	select {
	case <-done:
		return errs()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Cluster) copyOwn() nodeState {
	st := c.own
	st.Components = append([]ComponentEntry(nil), c.own.Components...)
	return st
}

// RemoteComponents returns every component session on other nodes.
func (c *Cluster) RemoteComponents() []ComponentEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []ComponentEntry
	for _, st := range c.states {
		out = append(out, st.Components...)
	}
	return out
}

// publish sends this node's state to every member over memberlist's reliable channel
// (what does not arrive, push/pull repairs).
func (c *Cluster) publish(st nodeState) { c.send(st) }

// send sends a state of this node to every other member at once; done is closed when
// every send has ended, and errs then says which failed.
func (c *Cluster) send(st nodeState) (done <-chan struct{}, errs func() error) {
	ch := make(chan struct{})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []error
	)
	errs = func() error {
		mu.Lock()
		defer mu.Unlock()
		return errors.Join(failed...)
	}
	ml := c.ml.Load()
	b, err := json.Marshal([]nodeState{st})
	if ml == nil || err != nil {
		close(ch)
		return ch, func() error { return err }
	}
	for _, n := range ml.Members() {
		if n.Name == c.cfg.NodeID {
			continue
		}
		// A copy: memberlist updates its Node in place while the send reads it.
		dst := &memberlist.Node{Name: n.Name, Addr: n.Addr, Port: n.Port}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ml.SendReliable(dst, b); err != nil {
				c.log.Debug("directory push failed (push/pull will repair it)", "to", dst.Name, "err", err)
				mu.Lock()
				failed = append(failed, fmt.Errorf("%s: %w", dst.Name, err))
				mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(ch) }()
	return ch, errs
}

// merge applies states received from another node.
func (c *Cluster) merge(states []nodeState) {
	var (
		added, removed []ComponentEntry
		draining       []nodeState
		restarted      []nodeState
	)
	c.mu.Lock()
	for _, st := range states {
		if st.Node == c.cfg.NodeID {
			continue
		}
		m, alive := c.members[st.Node]
		if !alive {
			// A node that left (a stale copy), or one that joins and is not known here
			// yet: kept until it does.
			if e, ok := c.early[st.Node]; !ok || st.newer(e) {
				c.early[st.Node] = st
			}
			continue
		}
		if st.Incarnation < m.Incarnation {
			continue // a stale copy of an earlier run
		}
		old, known := c.states[st.Node]
		if known && !st.newer(old) {
			continue
		}
		if known && st.Incarnation > old.Incarnation {
			restarted = append(restarted, st)
		}
		a, r := diff(old.Components, st.Components)
		if st.Version == old.Version+1 && st.Incarnation == old.Incarnation {
			// The very change that removed them: its clean closes are known.
			for i := range r {
				r[i].Clean = slices.Contains(st.Clean, r[i].Key())
			}
		}
		added, removed = append(added, a...), append(removed, r...)
		if st.Draining && (!known || !old.Draining || old.Incarnation != st.Incarnation) {
			draining = append(draining, st)
		}
		c.states[st.Node] = st
	}
	c.mu.Unlock()
	if c.listener == nil {
		return
	}
	if len(added)+len(removed) > 0 {
		c.listener.ComponentsChanged(added, removed)
	}
	for _, st := range restarted {
		c.listener.NodeRestarted(st.Node, st.Incarnation)
	}
	for _, st := range draining {
		c.listener.NodeDraining(st.Node, st.Components)
	}
}

func diff(old, new []ComponentEntry) (added, removed []ComponentEntry) {
	o := map[string]bool{}
	for _, e := range old {
		o[e.Key()] = true
	}
	n := map[string]bool{}
	for _, e := range new {
		n[e.Key()] = true
		if !o[e.Key()] {
			added = append(added, e)
		}
	}
	for _, e := range old {
		if !n[e.Key()] {
			removed = append(removed, e)
		}
	}
	return added, removed
}

func (c *Cluster) snapshot() []nodeState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := []nodeState{c.copyOwn()}
	for _, st := range c.states {
		out = append(out, st)
	}
	return out
}

func (c *Cluster) memberJoined(n *memberlist.Node) {
	var m meta
	if err := json.Unmarshal(n.Meta, &m); err != nil || m.ID == "" {
		m.ID = n.Name
	}
	c.mu.Lock()
	c.members[n.Name] = Member{ID: n.Name, Gossip: n.Address(), Remote: m.Remote, Admin: m.Admin, State: "alive",
		Proto: m.Proto, Incarnation: m.Inc}
	// A new run of a node that was not seen to die (restarted within the failure
	// detector's time): what its earlier run announced is gone, now.
	var stale []ComponentEntry
	old, known := c.states[n.Name]
	restarted := known && m.Inc > old.Incarnation && n.Name != c.cfg.NodeID
	if restarted {
		stale = old.Components
		c.states[n.Name] = nodeState{Node: n.Name, Incarnation: m.Inc}
	}
	members := c.membersLocked()
	early, hasEarly := c.early[n.Name]
	if hasEarly && early.Incarnation < m.Inc {
		hasEarly = false // of an earlier run
	}
	delete(c.early, n.Name)
	c.mu.Unlock()
	c.log.Info("member up", "member", n.Name, "gossip", n.Address(), "remote", m.Remote, "incarnation", m.Inc)
	if c.listener != nil {
		if restarted {
			c.log.Warn("member restarted: what its earlier run announced is dropped", "member", n.Name, "components", len(stale))
			if len(stale) > 0 {
				c.listener.ComponentsChanged(nil, stale)
			}
			c.listener.NodeRestarted(n.Name, m.Inc)
		}
		c.listener.MembersChanged(members, nil)
	}
	if hasEarly {
		c.merge([]nodeState{early})
	}
	if n.Name != c.cfg.NodeID {
		// Tell the newcomer what we have at once (push/pull would, later).
		c.mu.RLock()
		st := c.copyOwn()
		c.mu.RUnlock()
		if b, err := json.Marshal([]nodeState{st}); err == nil {
			if ml := c.ml.Load(); ml != nil {
				// A copy: memberlist updates its Node in place (state, incarnation) while
				// the send reads the address, which the race detector saw.
				dst := &memberlist.Node{Name: n.Name, Addr: n.Addr, Port: n.Port}
				go func() { _ = ml.SendReliable(dst, b) }()
			}
		}
	}
}

func (c *Cluster) memberLeft(n *memberlist.Node) {
	c.mu.Lock()
	delete(c.members, n.Name)
	st := c.states[n.Name]
	delete(c.states, n.Name)
	delete(c.early, n.Name)
	members := c.membersLocked()
	c.mu.Unlock()
	c.log.Warn("member gone", "member", n.Name)
	if c.listener != nil {
		if len(st.Components) > 0 {
			c.listener.ComponentsChanged(nil, st.Components)
		}
		c.listener.MembersChanged(members, []string{n.Name})
	}
}

func (c *Cluster) membersLocked() []Member {
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

type delegate Cluster

func (d *delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(meta{ID: d.cfg.NodeID, Remote: d.cfg.Remote, Admin: d.cfg.Admin, Proto: ProtoVersion, Inc: d.cfg.Incarnation})
	if len(b) > limit {
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	var states []nodeState
	if err := json.Unmarshal(b, &states); err != nil {
		return
	}
	(*Cluster)(d).merge(states)
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

func (d *delegate) LocalState(join bool) []byte {
	b, _ := json.Marshal((*Cluster)(d).snapshot())
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	d.NotifyMsg(buf)
}

type events Cluster

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Cluster)(e).memberJoined(n) }
func (e *events) NotifyLeave(n *memberlist.Node)  { (*Cluster)(e).memberLeft(n) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Cluster)(e).memberJoined(n) }

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, errors.New("bad port " + p)
	}
	if ips, err := net.LookupHost(h); err == nil && len(ips) > 0 && net.ParseIP(h) == nil {
		h = ips[0]
	}
	return h, port, nil
}
