package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/actors"
	"github.com/switchboard-im/switchboard/cluster"
)

// announcedAdmin is the admin address other nodes and `switchboard members` should use:
// the bound one, or, when bound to all interfaces, the advertised host with its port.
func (n *Node) announcedAdmin() string {
	host, port, err := net.SplitHostPort(n.Addrs.Admin)
	if err != nil {
		return n.Addrs.Admin
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return n.Addrs.Admin
	}
	for _, a := range []string{n.cfg.Cluster.Advertise, n.cfg.Cluster.RemoteAdvertise} {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			return net.JoinHostPort(h, port)
		}
	}
	if h, _, err := net.SplitHostPort(n.cfg.Cluster.Bind); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
		return net.JoinHostPort(h, port)
	}
	return n.Addrs.Admin
}

// MemberInfo is a member as the admin API shows it.
type MemberInfo struct {
	cluster.Member
	Sessions   int `json:"sessions"`
	Components int `json:"components"`
}

// LocalInfo is what one node says about itself (GET /local).
type LocalInfo struct {
	Node       string `json:"node"`
	Sessions   int    `json:"sessions"`
	Components int    `json:"components"`
}

func (n *Node) serveLocal(w http.ResponseWriter, r *http.Request) {
	info := LocalInfo{Node: n.cfg.Node.ID}
	if rt := n.router; rt != nil {
		info.Sessions, info.Components = rt.Counts()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(info)
}

// serveComponents lists the component connections this node's directory holds, on every
// node, with what passes them over (GET /cluster/components).
func (n *Node) serveComponents(w http.ResponseWriter, r *http.Request) {
	conns := []actors.ConnInfo{}
	if rt := n.router; rt != nil {
		conns = rt.Components()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(conns)
}

// TraceLine is one line of /trace: an event of this node's, or the last line, which says
// how many events the trace's rate limit or queue dropped.
type TraceLine struct {
	Node string `json:"node"`
	actors.TraceEvent
	End     bool  `json:"end,omitempty"`
	Dropped int64 `json:"dropped,omitempty"`
}

// serveTrace streams, as JSON lines, the stanzas this node routes that a JID (bare: any
// of its resources) sends or is sent, for ?seconds= (default 60, at most 600) or until
// the client goes (GET /trace?jid=JID). At most 4 traces at once (else 429), each rate
// limited; `switchboard trace` asks every node.
func (n *Node) serveTrace(w http.ResponseWriter, r *http.Request) {
	rt := n.router
	if rt == nil {
		http.Error(w, "not serving", http.StatusServiceUnavailable)
		return
	}
	j, err := jid.Parse(r.URL.Query().Get("jid"))
	if err != nil {
		http.Error(w, "jid: "+err.Error(), http.StatusBadRequest)
		return
	}
	secs := 60
	if v := r.URL.Query().Get("seconds"); v != "" {
		if secs, err = strconv.Atoi(v); err != nil || secs < 1 || secs > 600 {
			http.Error(w, "seconds: from 1 to 600", http.StatusBadRequest)
			return
		}
	}
	events, dropped, stop, ok := rt.Trace(j.String())
	if !ok {
		http.Error(w, "too many traces under way on this node", http.StatusTooManyRequests)
		return
	}
	defer stop()
	w.Header().Set("Content-Type", "application/x-ndjson")
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	line := func(l TraceLine) bool {
		l.Node = n.cfg.Node.ID
		if enc.Encode(l) != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if !line(TraceLine{}) { // a first line: the trace is on
		return
	}
	end := time.NewTimer(time.Duration(secs) * time.Second)
	defer end.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-end.C:
			line(TraceLine{End: true, Dropped: dropped()})
			return
		case ev := <-events:
			if !line(TraceLine{TraceEvent: ev}) {
				return
			}
		}
	}
}

// serveMembers lists the cluster as this node sees it (GET /cluster/members).
func (n *Node) serveMembers(w http.ResponseWriter, r *http.Request) {
	var members []cluster.Member
	if n.cluster != nil {
		members = n.cluster.Members()
	} else {
		members = []cluster.Member{{ID: n.cfg.Node.ID, Admin: n.Addrs.Admin, State: "standalone"}}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(members)
}

type metrics struct {
	reg     *prometheus.Registry
	conns   *prometheus.GaugeVec
	refused prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.conns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "switchboard_connections", Help: "Open authenticated connections by kind.",
	}, []string{"kind"})
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_connections_refused_total",
		Help: "Connections closed at once: over limits.max_unauthenticated or limits.max_unauthenticated_per_ip.",
	})
	m.reg.MustRegister(m.conns, m.refused, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// bindAdmin binds the admin listener (listen.admin; empty: none), so that its address is
// known before the cluster announces it; serveAdmin serves it once the router is up.
func (n *Node) bindAdmin() error {
	if n.cfg.Listen.Admin == "" {
		return nil
	}
	l, err := net.Listen("tcp", n.cfg.Listen.Admin)
	if err != nil {
		return fmt.Errorf("listen admin %s: %w", n.cfg.Listen.Admin, err)
	}
	n.adminL = l
	n.Addrs.Admin = l.Addr().String()
	if ip := l.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		n.log.Warn("the admin listener is reachable off this machine: it has no authentication (metrics, cluster members"+
			" and, with admin.pprof, profiles); keep it on a private network", "addr", n.Addrs.Admin)
	}
	return nil
}

// stopAdmin shuts the admin server down (or closes its listener, if it never served).
func (n *Node) stopAdmin(ctx context.Context) error {
	if n.admin != nil {
		return n.admin.Shutdown(ctx)
	}
	if n.adminL != nil {
		return n.adminL.Close()
	}
	return nil
}

func (n *Node) serveAdmin() {
	if n.adminL == nil {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !n.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if n.cluster != nil && !n.cluster.Joined() {
			http.Error(w, "not joined to the cluster yet", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := n.etcd.Get(ctx, n.cfg.Etcd.Prefix+"/health", clientv3.WithCountOnly()); err != nil {
			http.Error(w, "etcd unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/cluster/members", n.serveMembers)
	mux.HandleFunc("/local", n.serveLocal)
	mux.HandleFunc("/cluster/components", n.serveComponents)
	mux.HandleFunc("/trace", n.serveTrace)
	// CPU/heap profiles under load (see BENCHMARKS.md), only when asked for: a profile
	// or trace costs the node CPU and shows its internals.
	if n.cfg.Admin.PProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	n.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = n.admin.Serve(n.adminL) }()
}

// Sessions is how many client sessions this node holds.
func (n *Node) Sessions() int {
	if n.router == nil {
		return 0
	}
	c, _ := n.router.Counts()
	return c
}
