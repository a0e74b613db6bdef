// Package node wires one Switchboard node together: etcd (embedded or external), the
// account cache, the actor system and router, the listeners and the admin HTTP server.
// Subsystems start in order in Start and stop in reverse order in Stop.
// node.go holds the Node, New, Reload, Start, Stop and the config wiring helpers; listen.go
// the C2S and component listeners and the SASL authenticator; tls.go the certificates;
// remote.go protoactor remoting; admin.go the admin HTTP server and metrics; etcdmon.go
// the etcd health monitor.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/accounts"
	"github.com/switchboard-im/switchboard/actors"
	"github.com/switchboard-im/switchboard/blocking"
	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/offline"
	"github.com/switchboard-im/switchboard/privileges"
	"github.com/switchboard-im/switchboard/roster"
)

// Version is set at build time (-ldflags "-X .../node.Version=...").
var Version = "dev"

// Addrs are the addresses the listeners actually bound (useful with port 0).
type Addrs struct {
	C2S, C2STLS, Component, Admin, S2S string
	Remote, Gossip                     string
	EtcdClient                         []string
}

// Node is one running Switchboard node.
type Node struct {
	cfg  *config.Config                // as started: what needs a restart to change
	live atomic.Pointer[config.Config] // as last (re)loaded: limits, components, delegations
	log  *slog.Logger

	embedded *etcdx.Embedded
	remote   *remote.Remote
	cluster  *cluster.Cluster
	etcd     *clientv3.Client
	accounts *accounts.Cache
	rules    *delegation.Manager
	privs    *privileges.Watcher
	rosters  *roster.Store
	offline  *offline.Store
	blocks   *blocking.Cache
	sys      *actor.ActorSystem
	router   *actors.Router
	link     *nodelink.Link
	tls      *tls.Config
	s2s      s2sState // federation (s2s.go)

	listeners []net.Listener
	admin     *http.Server
	adminL    net.Listener // bound before the router starts; admin serves it after
	conns     sync.WaitGroup
	ready     atomic.Bool
	etcdUp    atomic.Bool

	monitorDone chan struct{}
	metrics     *metrics
	running     []subsystem // started, in order
	preauth     preauth     // connections still negotiating (preauth.go)
	authLimit   authLimit   // failed authentications by address (authlimit.go)

	Addrs Addrs
}

// New prepares a node; nothing runs until Start.
func New(cfg *config.Config, log *slog.Logger) *Node {
	n := &Node{cfg: cfg, log: log.With("node", cfg.Node.ID)}
	n.live.Store(cfg)
	return n
}

func routerLimits(c *config.Config) actors.Limits {
	return actors.Limits{
		MaxSendQueue:    int64(c.Limits.MaxSendQueueBytes),
		CSIMaxHeld:      c.Limits.CSIMaxHeldBytes,
		SMResume:        c.Limits.SMResumeTimeout.D(),
		SMMaxUnacked:    c.Limits.SMMaxUnacked,
		SMMaxUnackedB:   c.Limits.SMMaxUnackedBytes,
		WriteTimeout:    c.Limits.WriteTimeout.D(),
		IdleTimeout:     c.Limits.IdleTimeout.D(),
		ParkAfter:       c.Limits.ParkAfter.D(),
		PendingWork:     int64(c.Limits.MaxPendingWork),
		InflightIQs:     int64(c.Limits.MaxInflightIQs),
		SessionsPerUser: int64(c.Limits.MaxSessionsPerUser),
		ClientBytes:     float64(c.Limits.ClientBytesPerSecond),
		ClientStanzas:   float64(c.Limits.ClientStanzasPerSecond),
		ClientBurst:     c.Limits.ClientRateBurst.D(),
		S2SBytes:        float64(c.S2S.BytesPerSecond),
		S2SStanzas:      float64(c.S2S.StanzasPerSecond),
	}
}

func componentOptions(c *config.Config) map[string]actors.ComponentOptions {
	comps := make(map[string]actors.ComponentOptions)
	for _, cc := range c.Components {
		comps[cc.JID] = actors.ComponentOptions{DelegationNS: cc.DelegationNS, Balance: cc.Balance,
			Privileges: cc.Privileges}
	}
	return comps
}

func staticLayer(c *config.Config) (map[string]map[string]delegation.Rule, error) {
	static := make(map[string]map[string]delegation.Rule)
	for i, h := range c.Hosts {
		static[h.Domain] = staticRules(h)
		for ns, r := range static[h.Domain] {
			if err := delegation.Validate(ns, r); err != nil {
				return nil, fmt.Errorf("hosts[%d].delegations: %w", i, err)
			}
		}
	}
	return static, nil
}

// Reload applies a new configuration without dropping connections (SIGHUP): delegation
// rules of the file, components (added, removed, secrets, options) and limits. Changes
// that need a restart (listeners, hosts, TLS, etcd, cluster, node) are logged and ignored.
func (n *Node) Reload(cfg *config.Config) error {
	static, err := staticLayer(cfg)
	if err != nil {
		return err
	}
	old := n.cfg
	var restart []string
	if old.Node != cfg.Node {
		restart = append(restart, "node")
	}
	if old.Listen != cfg.Listen {
		restart = append(restart, "listen")
	}
	if old.TLS != cfg.TLS {
		restart = append(restart, "tls")
	}
	if !reflect.DeepEqual(old.Etcd, cfg.Etcd) {
		restart = append(restart, "etcd")
	}
	if !reflect.DeepEqual(old.Cluster, cfg.Cluster) {
		restart = append(restart, "cluster")
	}
	var oldHosts, newHosts []string
	for _, h := range old.Hosts {
		oldHosts = append(oldHosts, h.Domain)
	}
	for _, h := range cfg.Hosts {
		newHosts = append(newHosts, h.Domain)
	}
	if !reflect.DeepEqual(oldHosts, newHosts) {
		restart = append(restart, "hosts (domains)")
	}
	if len(restart) > 0 {
		n.log.Warn("configuration changes that need a restart were ignored", "keys", restart)
	}
	// The gossip key file is read again (key rotation, see cluster.secret_key_file); a
	// file that does not parse leaves the keys in use, and so does a node started
	// without encryption, which needs a restart to switch it on.
	if f := old.Cluster.SecretKeyFile; f != "" && n.cluster != nil {
		keys, err := cluster.ReadKeys(f)
		if err == nil {
			err = n.cluster.SetKeys(keys)
		}
		if err != nil {
			return fmt.Errorf("cluster.secret_key_file: %w", err)
		}
		n.log.Info("gossip keys reloaded", "keys", len(keys))
	}
	n.live.Store(cfg)
	n.router.SetSettings(routerLimits(cfg), componentOptions(cfg))
	n.rosters.SetMaxItems(cfg.Limits.MaxRosterItems)
	n.offline.SetLimits(cfg.Limits.OfflineMaxMessages, cfg.Limits.OfflineMaxBytes)
	n.blocks.Store().SetMaxItems(cfg.Limits.BlocklistMaxItems)
	n.rosters.SetMaxRequests(cfg.Limits.MaxEtcdRequests)
	n.link.SetMaxQueued(int64(cfg.Cluster.MaxQueuedBytes))
	n.accounts.SetMaxIterations(cfg.Accounts.MaxSCRAMIterations)
	n.rules.SetStatic(static)
	n.log.Info("configuration reloaded", "components", len(cfg.Components))
	return nil
}

// subsystem is one part of a running node, with how to stop it.
type subsystem struct {
	name string
	stop func(context.Context) error
}

// started registers a subsystem that is up; Stop stops them in reverse order.
func (n *Node) started(name string, stop func(context.Context) error) {
	n.running = append(n.running, subsystem{name, stop})
}

// Start brings every subsystem up, in order, registering each as it comes up; on error
// what started is stopped again, in reverse.
func (n *Node) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = n.Stop(context.Background())
		}
	}()
	cfg := n.cfg
	// The actor system and its gRPC remoting come first: remote.Start sets gRPC's global
	// logger, which must happen before any other gRPC user (etcd) runs in this process.
	n.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return n.log.With("lib", "protoactor")
	}))
	n.started("actor system", func(context.Context) error { n.sys.Shutdown(); return nil })
	if cfg.Cluster.Bind != "" {
		if err = n.startRemote(); err != nil {
			return err
		}
		n.started("remoting", func(context.Context) error { n.remote.Shutdown(false); return nil })
	}
	if err = n.startStore(ctx); err != nil {
		return err
	}
	// The admin listener is bound before the cluster is made, so that its real address
	// is announced; it serves once the router is up.
	if err = n.bindAdmin(); err != nil {
		return err
	}
	n.started("admin HTTP", n.stopAdmin)
	if err = n.startRouter(ctx); err != nil {
		return err
	}
	n.serveAdmin()
	if err = n.link.Start(ctx, n.router.Inbound()); err != nil {
		return fmt.Errorf("node link: %w", err)
	}
	n.started("node link", n.link.Stop)
	if n.cluster != nil {
		if err = n.cluster.Start(ctx, n.router); err != nil {
			return err
		}
		n.started("cluster membership", n.cluster.Stop)
	}
	// Rules are loaded (and watched) only once the router can take changes.
	n.rules.Subscribe(n.router.RulesChanged)
	if err = n.rules.Start(ctx); err != nil {
		return fmt.Errorf("delegation rules: %w", err)
	}
	n.started("delegation rules", n.rules.Stop)
	// XEP-0356 privileges stored in etcd, per host and component, override the file's.
	n.privs = privileges.NewWatcher(privileges.NewStore(n.etcd, cfg.Etcd.Prefix), n.log, n.router.SetDynamicPrivileges)
	if err = n.privs.Start(ctx); err != nil {
		return fmt.Errorf("privileges: %w", err)
	}
	n.started("privileges", n.privs.Stop)
	if err = n.startListeners(); err != nil {
		return err
	}
	monitorCtx, stopMonitor := context.WithCancel(context.Background())
	n.monitorDone = make(chan struct{})
	go n.monitorEtcd(monitorCtx)
	n.started("etcd monitor", func(context.Context) error { stopMonitor(); <-n.monitorDone; return nil })
	n.ready.Store(true)
	n.log.Info("node ready", "c2s", n.Addrs.C2S, "c2s_tls", n.Addrs.C2STLS, "component", n.Addrs.Component,
		"admin", n.Addrs.Admin, "hosts", n.hosts())
	return nil
}

func (n *Node) hosts() []string {
	var hosts []string
	for _, h := range n.cfg.Hosts {
		hosts = append(hosts, h.Domain)
	}
	return hosts
}

// startStore brings up etcd (embedded, or a client of the configured one) and the
// account cache.
func (n *Node) startStore(ctx context.Context) (err error) {
	cfg := n.cfg
	endpoints := cfg.Etcd.Endpoints
	if cfg.EmbeddedEtcd() {
		n.embedded, err = etcdx.StartEmbedded(ctx, etcdx.EmbeddedConfig{
			Dir:        filepath.Join(cfg.Node.DataDir, "etcd"),
			ClientAddr: cfg.Etcd.Embedded.Client,
			PeerAddr:   cfg.Etcd.Embedded.Peer,
			Name:       cfg.Node.ID,
		}, n.log)
		if err != nil {
			return fmt.Errorf("embedded etcd: %w", err)
		}
		n.started("embedded etcd", n.embedded.Stop)
		endpoints = n.embedded.Endpoints()
		n.log.Info("embedded etcd running", "dir", filepath.Join(cfg.Node.DataDir, "etcd"), "client", endpoints)
	}
	n.Addrs.EtcdClient = endpoints
	n.etcd, err = etcdx.Connect(ctx, endpoints, cfg.Etcd.DialTimeout.D(), etcdx.MaxResponse(cfg.Etcd.MaxResponseBytes))
	if err != nil {
		return err
	}
	n.started("etcd client", func(context.Context) error { return n.etcd.Close() })
	n.accounts = accounts.NewCache(accounts.New(n.etcd, cfg.Etcd.Prefix), n.log)
	n.accounts.SetMaxIterations(cfg.Accounts.MaxSCRAMIterations)
	if err = n.accounts.Start(ctx); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	n.started("accounts", n.accounts.Stop)
	return nil
}

// startRouter builds what routing needs, in the order each needs the other: the
// membership (not started yet), the node link, then the router, which is given to both
// when they start; then it starts the router.
func (n *Node) startRouter(ctx context.Context) (err error) {
	cfg := n.cfg
	static, err := staticLayer(cfg)
	if err != nil {
		return err
	}
	n.metrics = newMetrics()
	n.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_etcd_up", Help: "1 while etcd answers this node's health checks.",
	}, func() float64 {
		if n.etcdUp.Load() {
			return 1
		}
		return 0
	}), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_connections_unauthenticated",
		Help: "Connections still negotiating (TLS, SASL, bind, component handshake).",
	}, func() float64 { return float64(n.preauth.count()) }))
	n.rules = delegation.NewManager(delegation.NewStore(n.etcd, cfg.Etcd.Prefix), static, n.log)
	n.tls, err = loadTLS(cfg.TLS.Cert, cfg.TLS.Key, cfg.Node.DataDir, n.hosts(), n.log)
	if err != nil {
		return err
	}
	fed, err := n.setupS2S()
	if err != nil {
		return err
	}
	n.rosters = roster.New(n.etcd, cfg.Etcd.Prefix, cfg.Limits.MaxRosterItems)
	n.rosters.SetMaxRequests(cfg.Limits.MaxEtcdRequests)
	n.offline = offline.New(n.etcd, cfg.Etcd.Prefix, cfg.Limits.OfflineMaxMessages, cfg.Limits.OfflineMaxBytes)
	// Every blocklist, in memory before the first stanza is routed (XEP-0191).
	n.blocks = blocking.NewCache(blocking.New(n.etcd, cfg.Etcd.Prefix, cfg.Limits.BlocklistMaxItems), n.log)
	if err = n.blocks.Start(ctx); err != nil {
		return fmt.Errorf("blocklists: %w", err)
	}
	n.started("blocklists", n.blocks.Stop)
	var (
		members nodelink.Members // nil: standalone
		cl      actors.Cluster   // nil: standalone
	)
	incarnation := cluster.NewIncarnation()
	if cfg.Cluster.Bind != "" {
		if n.cluster, err = n.newCluster(incarnation); err != nil {
			return err
		}
		members, cl = n.cluster, n.cluster
	}
	disp := actors.NewDispatcher()
	n.link = nodelink.New(n.sys, cfg.Node.ID, members, n.log, disp.Props())
	n.link.SetMaxQueued(int64(cfg.Cluster.MaxQueuedBytes))
	n.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "switchboard_node_link_dropped_total",
		Help: "Messages for another node dropped because what waited for it passed cluster.max_queued_bytes.",
	}, func() float64 { return float64(n.link.Dropped()) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_node_link_queued_bytes",
		Help: "Bytes of messages waiting in the transport for other nodes (cluster.max_queued_bytes caps each node's).",
	}, func() float64 { return float64(cluster.QueuedTotal()) }))
	n.router = actors.NewRouter(actors.Config{
		System:     n.sys,
		Log:        n.log,
		Link:       n.link,
		Cluster:    cl,
		Dispatcher: disp,
		Limits:     routerLimits(cfg),
		Accounts:   n.accounts,
		Hosts:      n.hosts(),
		Components: componentOptions(cfg),
		Version:    Version,
		NodeID:     cfg.Node.ID,
		Delegation: &actors.Delegation{
			Rules:      n.rules,
			Disco:      delegation.NewDiscoCache(),
			Metrics:    delegation.NewMetrics(n.metrics.reg),
			Timeout:    cfg.Delegation.Timeout.D(),
			StallAfter: cfg.Delegation.StallAfter.D(),
		},
		Metrics:    actors.NewMetrics(n.metrics.reg),
		Rosters:    n.rosters,
		Offline:    n.offline,
		Blocklists: n.blocks,
		// Long enough for the membership to declare a dead node dead (probe interval ×
		// suspicion multiplier, plus probe timeouts).
		UnreachableFor: max(time.Second, cfg.Cluster.ProbeInterval.D()*time.Duration(cfg.Cluster.SuspicionMult+3)),
		ActorPrefix:    cluster.ActorPrefix(incarnation),
		S2S:            fed,
	})
	if err = n.router.Start(ctx); err != nil {
		return err
	}
	n.started("router", n.stopRouter)
	return nil
}

// stopRouter ends every session (system-shutdown) and waits, a few seconds at most, for
// their connections to finish.
func (n *Node) stopRouter(ctx context.Context) error {
	err := n.router.Stop(ctx)
	done := make(chan struct{})
	go func() { n.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
	n.router = nil
	return err
}

// newCluster prepares the membership layer (started later, with the router), with the
// gossip keys of cluster.secret_key_file if set.
func (n *Node) newCluster(incarnation int64) (*cluster.Cluster, error) {
	cfg := n.cfg
	var keys [][]byte
	if f := cfg.Cluster.SecretKeyFile; f != "" {
		var err error
		if keys, err = cluster.ReadKeys(f); err != nil {
			return nil, fmt.Errorf("cluster.secret_key_file: %w", err)
		}
	}
	cl := cluster.New(cluster.Config{
		NodeID:        cfg.Node.ID,
		Bind:          cfg.Cluster.Bind,
		Advertise:     cfg.Cluster.Advertise,
		Remote:        n.sys.Address(),
		Admin:         n.announcedAdmin(),
		Join:          cfg.Cluster.Join,
		ProbeInterval: cfg.Cluster.ProbeInterval.D(),
		SuspicionMult: cfg.Cluster.SuspicionMult,
		Keys:          keys,
		Incarnation:   incarnation,
	}, n.log)
	n.metrics.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_cluster_members", Help: "Live cluster members as this node sees them.",
		}, func() float64 { return float64(len(cl.Members())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_gossip_health_score", Help: "memberlist's awareness health score (0 is healthy; higher means this node is slow to gossip).",
		}, func() float64 { return float64(cl.HealthScore()) }),
	)
	return cl, nil
}

// drain is a graceful stop's first part, for node.drain_timeout at most (0: none): no
// new connections; this node's component connections withdrawn, here and on every
// member, which say when what they sent over them is answered; then clients no longer
// read and their delegated IQs answered (actors/drain.go). Stop closes the streams after.
func (n *Node) drain(ctx context.Context) {
	d := n.cfg.Node.DrainTimeout.D()
	if d <= 0 || n.router == nil {
		return
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	n.closeListeners()
	n.router.Withdraw()
	if n.cluster != nil {
		if err := n.cluster.Withdraw(dctx); err != nil {
			n.log.Warn("draining: not every member was told", "err", err)
		}
	}
	if err := n.router.Drain(dctx); err != nil {
		n.log.Warn("draining: node.drain_timeout passed", "waited", time.Since(start).Round(time.Millisecond), "err", err)
		return
	}
	n.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
}

// Stop drains a node that was ready (drain), then stops every subsystem that started,
// in reverse order: the etcd monitor, the listeners (no new connections), the watches,
// the cluster membership (the node leaves), the node link, the admin server, the router
// (sessions end with system-shutdown), the account cache, etcd, remoting and the actor
// system. It returns what went wrong.
func (n *Node) Stop(ctx context.Context) error {
	if n.ready.Swap(false) {
		n.drain(ctx)
	}
	var errs []error
	for i := len(n.running) - 1; i >= 0; i-- {
		s := n.running[i]
		if err := s.stop(ctx); err != nil {
			n.log.Warn("stopping "+s.name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	n.running = nil
	return errors.Join(errs...)
}

func staticRules(h config.HostConfig) map[string]delegation.Rule {
	out := make(map[string]delegation.Rule, len(h.Delegations))
	for ns, r := range h.Delegations {
		out[ns] = delegation.Rule{Namespace: ns, JID: r.JID, Filtering: r.Filtering, Source: delegation.SourceConfig}
	}
	return out
}
