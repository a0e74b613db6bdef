// Package chaos runs a Switchboard cluster of node processes on loopback under steady
// delegated load and, one after the other, kills, stops, restarts and pauses nodes, drops
// component connections and cuts etcd, and reports for each event what became of the IQs
// sent meanwhile: answered, failed, lost, answered twice, sent again, and for how long
// errors kept coming (`switchboard bench chaos`; RELIABILITY.md).
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-im/switchboard/accounts"
	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/internal/nodeproc"
)

// Options of a chaos run.
type Options struct {
	Bin   string // the switchboard binary the nodes run (`serve --config`)
	Dir   string // work directory: configs, data, logs ("": a temporary one, removed unless Keep)
	Keep  bool
	Nodes int // at least 2: the load enters node 1, the component connects to every other

	Rate              float64       // delegated IQs per second, through node 1
	Clients           int           // the clients that share Rate
	Settle            time.Duration // after each event, before the next
	Events            []string      // see Events; nil: DefaultEvents
	EtcdDown          time.Duration // how long etcd-down cuts etcd
	PauseFor          time.Duration // how long pause:N holds a node stopped
	ComponentDelay    time.Duration // the component answers each IQ this long after it came
	DelegationTimeout time.Duration // the nodes' delegation.timeout
	DrainTimeout      time.Duration // the nodes' node.drain_timeout
	// PlainCluster runs the cluster plane without its secrets (gossip keys, mutual TLS),
	// as loopback allows: for builds older than them.
	PlainCluster bool

	Progress io.Writer // a line per event as it happens (nil: none)
}

// DefaultEvents is the run the issue asks for, in order. Nodes are numbered from 1.
var DefaultEvents = []string{"kill:3", "start:3", "stop:2", "start:2", "drop-component:3", "restart-component:3", "pause:3", "etcd-down", "rolling"}

// Events explains the event names.
const Events = `kill:N            SIGKILL node N (no goodbye)
  start:N           start node N again (same name and addresses) and wait until it is ready
  stop:N            SIGTERM node N (it drains) and wait until it has exited
  drop-component:N  close the component's connection to node N abruptly; it reconnects at once
  restart-component:N
                    the component's connection to node N closes cleanly (it answers what it
                    read, then sends </stream:stream>) and connects again at once
  pause:N           SIGSTOP node N for --pause, then SIGCONT (a node that hangs)
  etcd-down         make etcd unreachable for --etcd-down (the nodes' connections are cut)
  rolling           stop and start every node in turn, load node included (its client
                    reconnects to another node and sends again what was not read)`

func (o *Options) defaults() {
	if o.Nodes < 2 {
		o.Nodes = 3
	}
	if o.Rate <= 0 {
		o.Rate = 400
	}
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Settle <= 0 {
		o.Settle = 5 * time.Second
	}
	if o.Events == nil {
		o.Events = DefaultEvents
	}
	if o.EtcdDown <= 0 {
		o.EtcdDown = 30 * time.Second
	}
	if o.PauseFor <= 0 {
		o.PauseFor = 3 * time.Second
	}
	if o.DelegationTimeout <= 0 {
		o.DelegationTimeout = 10 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = defaultDrain
	}
}

// defaultDrain is node.drain_timeout's default: a config that keeps it need not say it.
const defaultDrain = 10 * time.Second

// event is one parsed event.
type event struct {
	name string
	kind string
	node int // 0-based; -1: none
}

func parseEvents(names []string, nodes int) ([]event, error) {
	var out []event
	for _, n := range names {
		kind, arg, hasArg := strings.Cut(n, ":")
		e := event{name: n, kind: kind, node: -1}
		switch kind {
		case "kill", "start", "stop", "drop-component", "restart-component", "pause":
			i, err := strconv.Atoi(arg)
			if !hasArg || err != nil || i < 1 || i > nodes {
				return nil, fmt.Errorf("event %q: needs a node number from 1 to %d", n, nodes)
			}
			if (kind == "drop-component" || kind == "restart-component") && i == 1 {
				return nil, fmt.Errorf("event %q: the component connects to nodes 2 to %d", n, nodes)
			}
			e.node = i - 1
		case "etcd-down", "rolling":
			if hasArg {
				return nil, fmt.Errorf("event %q takes no node", n)
			}
		default:
			return nil, fmt.Errorf("unknown event %q", n)
		}
		out = append(out, e)
	}
	return out, nil
}

const (
	domain    = "localhost"
	component = "chaos.localhost"
	secret    = "chaos-secret"
	namespace = "urn:example:chaos"
	user      = "chaos"
	password  = "chaos"
	prefix    = "/switchboard-chaos"
)

// Run starts the cluster, runs the load and the events, and reports.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	events, err := parseEvents(o.Events, o.Nodes)
	if err != nil {
		return nil, err
	}
	if o.Bin == "" {
		if o.Bin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "switchboard-chaos-*"); err != nil {
			return nil, err
		}
		if !o.Keep {
			defer os.RemoveAll(o.Dir)
		}
	}
	c, err := startCluster(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer c.close()
	o.progressf("cluster of %d nodes ready (work dir %s)", o.Nodes, o.Dir)

	comps := make([]*compConn, o.Nodes)
	for i := 1; i < o.Nodes; i++ {
		comps[i] = newCompConn(c.nodes[i].comp, o.ComponentDelay)
		go comps[i].run(ctx)
	}
	addrs := make([]string, o.Nodes)
	for i, n := range c.nodes {
		addrs[i] = n.c2s
	}
	l := newLoad(addrs, o.Rate, o.Clients, o.DelegationTimeout)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { l.run(loadCtx); close(loadDone) }()
	if err := l.waitFlowing(ctx, 30*time.Second); err != nil {
		stopLoad()
		return nil, err
	}
	l.mark("steady load")
	o.progressf("steady load: %.0f IQs/s through node 1 from %d clients", o.Rate, o.Clients)
	sleep(ctx, o.Settle)

	for _, e := range events {
		if ctx.Err() != nil {
			break
		}
		l.mark(e.name)
		o.progressf("event %s", e.name)
		if err := c.apply(ctx, e, comps); err != nil {
			o.progressf("event %s: %v", e.name, err)
			l.note(err.Error())
		}
		sleep(ctx, o.Settle)
	}
	stopLoad()
	<-loadDone
	l.drainAnswers(o.DelegationTimeout + 5*time.Second)
	for _, cc := range comps {
		if cc != nil {
			cc.stop()
		}
	}
	return l.result(), nil
}

func (o *Options) progressf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// node is one node of the chaos cluster.
type node struct {
	proc              *nodeproc.Process
	c2s, comp, admin  string
	logFile           *os.File
	gossip, remoteAdr string
}

// chaosCluster is the nodes, their etcd and the relay that can cut it.
type chaosCluster struct {
	o     *Options
	etcd  *etcdx.Embedded
	proxy *etcdx.CutProxy
	nodes []*node
}

func startCluster(ctx context.Context, o *Options) (_ *chaosCluster, err error) {
	c := &chaosCluster{o: o}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	addrs, err := etcdx.FreeAddrs("127.0.0.1", 2)
	if err != nil {
		return nil, err
	}
	c.etcd, err = etcdx.StartEmbedded(ctx, etcdx.EmbeddedConfig{Dir: filepath.Join(o.Dir, "etcd"),
		ClientAddr: addrs[0], PeerAddr: addrs[1], Name: "chaos"}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	c.proxy, err = etcdx.NewCutProxy(strings.TrimPrefix(c.etcd.Endpoints()[0], "http://"))
	if err != nil {
		return nil, err
	}
	endpoints := []string{"http://" + c.proxy.Addr()}
	var names []string
	for i := range o.Nodes {
		names = append(names, fmt.Sprintf("node%d", i+1))
	}
	secrets := filepath.Join(o.Dir, "secrets")
	if _, err := os.Stat(filepath.Join(secrets, "gossip.key")); err != nil && !o.PlainCluster {
		if err := cluster.WriteSecrets(secrets, names); err != nil {
			return nil, err
		}
	}
	for range o.Nodes {
		ports, err := etcdx.FreeAddrs("127.0.0.1", 5)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &node{c2s: ports[0], comp: ports[1], admin: ports[2], gossip: ports[3], remoteAdr: ports[4]})
	}
	for i, n := range c.nodes {
		path := filepath.Join(o.Dir, names[i]+".yaml")
		if err := writeConfig(path, o, names[i], n, c.nodes, endpoints, secrets); err != nil {
			return nil, err
		}
		if n.logFile, err = os.OpenFile(filepath.Join(o.Dir, names[i]+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return nil, err
		}
		n.proc = &nodeproc.Process{ID: names[i], Admin: n.admin, Logs: n.logFile, Command: func() *exec.Cmd {
			return exec.Command(o.Bin, "serve", "--config", path)
		}}
		if err := n.proc.Start(); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if err := n.proc.WaitReady(wctx); err != nil {
			return nil, err
		}
	}
	for _, n := range c.nodes {
		if err := n.proc.WaitMembers(wctx, o.Nodes); err != nil {
			return nil, err
		}
	}
	cli, err := etcdx.Connect(wctx, c.etcd.Endpoints(), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	store := accounts.New(cli, prefix)
	for i := range o.Clients {
		if err := store.Add(wctx, domain, fmt.Sprintf("%s%d", user, i), password, 4096); err != nil && !errors.Is(err, accounts.ErrExists) {
			return nil, err
		}
	}
	return c, nil
}

// writeConfig writes node n's config: only the keys the run needs, so that the same
// tool can run an older build (--bin), whose config has fewer keys (with --plain-cluster
// when it predates the cluster's secrets).
func writeConfig(path string, o *Options, name string, n *node, all []*node, endpoints []string, secrets string) error {
	var join []string
	for _, m := range all {
		if m != n {
			join = append(join, m.gossip)
		}
	}
	nodeCfg := map[string]any{"id": name, "data_dir": filepath.Join(o.Dir, name)}
	if o.DrainTimeout != defaultDrain {
		nodeCfg["drain_timeout"] = o.DrainTimeout.String()
	}
	clusterCfg := map[string]any{"bind": n.gossip, "remote": n.remoteAdr, "join": join}
	if !o.PlainCluster {
		clusterCfg["secret_key_file"] = filepath.Join(secrets, "gossip.key")
		clusterCfg["tls"] = map[string]string{"cert": filepath.Join(secrets, name+".pem"),
			"key": filepath.Join(secrets, name+".key"), "ca": filepath.Join(secrets, "ca.pem")}
	}
	cfg := map[string]any{
		"node":       nodeCfg,
		"listen":     map[string]string{"c2s": n.c2s, "c2s_tls": "", "component": n.comp, "admin": n.admin},
		"etcd":       map[string]any{"endpoints": endpoints, "prefix": prefix},
		"cluster":    clusterCfg,
		"hosts":      []any{map[string]any{"domain": domain, "delegations": map[string]any{namespace: map[string]string{"jid": component}}}},
		"components": []any{map[string]string{"jid": component, "secret": secret}},
		"delegation": map[string]string{"timeout": o.DelegationTimeout.String()},
		"log":        map[string]string{"level": "info"},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// apply carries out one event.
func (c *chaosCluster) apply(ctx context.Context, e event, comps []*compConn) error {
	switch e.kind {
	case "kill":
		c.nodes[e.node].proc.Kill()
	case "start":
		return c.start(ctx, e.node)
	case "stop":
		return c.nodes[e.node].proc.Stop(c.o.DrainTimeout + 20*time.Second)
	case "drop-component":
		comps[e.node].drop()
	case "restart-component":
		comps[e.node].restart()
	case "pause":
		c.nodes[e.node].proc.Pause()
		sleep(ctx, c.o.PauseFor)
		c.nodes[e.node].proc.Resume()
	case "etcd-down":
		c.proxy.Cut()
		sleep(ctx, c.o.EtcdDown)
		return c.proxy.Restore()
	case "rolling":
		// As an operator's rolling restart: each node back and settled (its clients
		// and component connections back) before the next one goes.
		for i := range c.nodes {
			if err := c.nodes[i].proc.Stop(c.o.DrainTimeout + 20*time.Second); err != nil {
				return err
			}
			if err := c.start(ctx, i); err != nil {
				return err
			}
			sleep(ctx, c.o.Settle/2)
		}
	}
	return nil
}

// start starts node i again and waits until it is ready and a member.
func (c *chaosCluster) start(ctx context.Context, i int) error {
	p := c.nodes[i].proc
	if p.Running() {
		return nil
	}
	if err := p.Start(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.WaitReady(wctx); err != nil {
		return err
	}
	return p.WaitMembers(wctx, len(c.nodes))
}

func (c *chaosCluster) close() {
	for _, n := range c.nodes {
		if n.proc != nil {
			_ = n.proc.Stop(c.o.DrainTimeout + 20*time.Second)
		}
		if n.logFile != nil {
			n.logFile.Close()
		}
	}
	if c.proxy != nil {
		c.proxy.Cut()
	}
	if c.etcd != nil {
		_ = c.etcd.Stop(context.Background())
	}
}
