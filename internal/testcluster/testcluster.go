// Package testcluster runs real multi-node Switchboard clusters for tests: every node is a
// subprocess (the test binary re-executed in node mode), on its own 127.0.0.x address,
// against one real etcd embedded in the test process. Subprocesses keep protoactor's
// gRPC remoting and etcd's gRPC client in different processes (DESIGN.md §Cluster: the
// global gRPC logger race), and let a test kill -9 a node.
package testcluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/accounts"
	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/internal/nodeproc"
	"github.com/switchboard-im/switchboard/internal/xmpptest"
	"github.com/switchboard-im/switchboard/node"
)

const nodeEnv = "SB_TESTCLUSTER_NODE_CONFIG"

// Main is the TestMain of a package using testcluster: in node mode it runs one node
// (until SIGTERM) instead of the tests; otherwise it starts the shared etcd and runs m.
func Main(m *testing.M) {
	if path := os.Getenv(nodeEnv); path != "" {
		os.Exit(runNode(path))
	}
	dir, err := os.MkdirTemp("", "sb-testcluster-etcd-*")
	if err != nil {
		panic(err)
	}
	addrs, err := etcdx.FreeAddrs("127.0.0.1", 2)
	if err != nil {
		panic(err)
	}
	etcdCfg = etcdx.EmbeddedConfig{Dir: dir, ClientAddr: addrs[0], PeerAddr: addrs[1], Name: "testcluster"}
	if err := StartEtcd(); err != nil {
		panic(err)
	}
	code := m.Run()
	StopEtcd()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	etcdEndpoints []string
	etcdCfg       etcdx.EmbeddedConfig
	etcdMu        sync.Mutex
	etcdRunning   *etcdx.Embedded
)

// StopEtcd stops the shared etcd (to test a cluster riding out an outage).
func StopEtcd() {
	etcdMu.Lock()
	defer etcdMu.Unlock()
	if etcdRunning != nil {
		_ = etcdRunning.Stop(context.Background())
		etcdRunning = nil
	}
}

// StartEtcd starts the shared etcd again, same data and addresses.
func StartEtcd() error {
	etcdMu.Lock()
	defer etcdMu.Unlock()
	if etcdRunning != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	emb, err := etcdx.StartEmbedded(ctx, etcdCfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	etcdRunning = emb
	etcdEndpoints = emb.Endpoints()
	return nil
}

func runNode(path string) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}))
	n := node.New(cfg, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := n.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 1
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Node.DrainTimeout.D()+10*time.Second)
	defer cancel()
	_ = n.Stop(sctx)
	return 0
}

// Node is one subprocess node.
type Node struct {
	ID                                    string
	IP                                    string
	C2S, Component, Admin, Gossip, Remote string
	cfg                                   *config.Config
	cfgPath                               string
	proc                                  *nodeproc.Process
	logs                                  *xmpptest.LockedBuffer
}

// Cluster is a running test cluster.
type Cluster struct {
	t       *testing.T
	Nodes   []*Node
	Prefix  string
	Store   *accounts.Store
	Secrets string // the cluster's secrets (cluster.WriteSecrets): gossip.key, ca.pem, nodeN.pem/.key
}

// Start runs n nodes on 127.0.0.(11..) with a fast failure detector, the gossip encrypted
// and mutual TLS between them (secrets from cluster.WriteSecrets, in Secrets); mutate
// adjusts each node's config (hosts, components, delegations...).
func Start(t *testing.T, n int, mutate func(i int, c *config.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Prefix: fmt.Sprintf("/sbcluster/%s/%d", filepath.Base(t.Name()), time.Now().UnixNano())}
	dir := t.TempDir()
	c.Secrets = filepath.Join(dir, "secrets")
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("node%d", i+1))
	}
	if err := cluster.WriteSecrets(c.Secrets, names); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		c.Nodes = append(c.Nodes, newNode(t, fmt.Sprintf("node%d", i+1), fmt.Sprintf("127.0.0.%d", 11+i)))
	}
	for i, nd := range c.Nodes {
		cfg := c.nodeConfig(nd, dir)
		cfg.Cluster.SecretKeyFile = filepath.Join(c.Secrets, "gossip.key")
		cfg.Cluster.TLS = config.ClusterTLS{Cert: filepath.Join(c.Secrets, nd.ID+".pem"),
			Key: filepath.Join(c.Secrets, nd.ID+".key"), CA: filepath.Join(c.Secrets, "ca.pem")}
		if mutate != nil {
			mutate(i, cfg)
		}
		nd.cfg = cfg
		nd.cfgPath = filepath.Join(dir, nd.ID+".yaml")
		if err := nodeproc.WriteConfig(nd.cfgPath, cfg); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.Nodes {
		c.StartNode(i)
	}
	t.Cleanup(func() {
		for i := range c.Nodes {
			c.Kill(i)
		}
		for _, nd := range c.Nodes {
			// Nodes run the test binary: under -race their reports land in their logs.
			if strings.Contains(nd.logs.String(), "WARNING: DATA RACE") {
				t.Errorf("%s: data race reported", nd.ID)
			}
		}
		if t.Failed() {
			for _, nd := range c.Nodes {
				t.Logf("---- %s log ----\n%s", nd.ID, nd.logs.String())
			}
		}
	})
	for i := range c.Nodes {
		c.WaitReady(i)
	}
	for i := range c.Nodes {
		c.WaitMembers(i, n)
	}
	cli, err := etcdx.Connect(context.Background(), etcdEndpoints, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	c.Store = accounts.New(cli, c.Prefix)
	return c
}

// newNode names a node and picks its ports on ip.
func newNode(t *testing.T, id, ip string) *Node {
	nd := &Node{ID: id, IP: ip}
	ports := free(t, ip, 5)
	nd.C2S, nd.Component, nd.Admin, nd.Gossip, nd.Remote = ports[0], ports[1], ports[2], ports[3], ports[4]
	return nd
}

// nodeConfig is a node's config before its secrets and the test's changes: its addresses,
// the shared etcd, node 1 as the seed, a fast failure detector.
func (c *Cluster) nodeConfig(nd *Node, dir string) *config.Config {
	cfg := config.Default()
	cfg.Node.ID = nd.ID
	cfg.Node.DataDir = filepath.Join(dir, nd.ID)
	cfg.Listen = config.ListenConfig{C2S: nd.C2S, C2STLS: "", Component: nd.Component, Admin: nd.Admin}
	cfg.Etcd.Endpoints = etcdEndpoints
	cfg.Etcd.Prefix = c.Prefix
	cfg.Cluster.Bind, cfg.Cluster.Remote = nd.Gossip, nd.Remote
	cfg.Cluster.Join = []string{c.Nodes[0].Gossip}
	cfg.Cluster.ProbeInterval = config.Duration(200 * time.Millisecond)
	cfg.Cluster.SuspicionMult = 2
	cfg.Log.Level = "info"
	return cfg
}

// StartOutsider runs one more node process on 127.0.0.20 that tries to join the
// cluster (node 1 as its seed, the same etcd) with the config mutate makes of a default
// one: no secrets unless mutate gives some. It is not one of c.Nodes; the returned
// index is for Members, Logs and Kill on it.
func (c *Cluster) StartOutsider(mutate func(cfg *config.Config)) int {
	c.t.Helper()
	dir := c.t.TempDir()
	nd := newNode(c.t, fmt.Sprintf("outsider%d", len(c.Nodes)), "127.0.0.20")
	cfg := c.nodeConfig(nd, dir)
	if mutate != nil {
		mutate(cfg)
	}
	nd.cfg = cfg
	nd.cfgPath = filepath.Join(dir, nd.ID+".yaml")
	if err := nodeproc.WriteConfig(nd.cfgPath, cfg); err != nil {
		c.t.Fatal(err)
	}
	c.Nodes = append(c.Nodes, nd)
	i := len(c.Nodes) - 1
	c.StartNode(i)
	c.waitAdmin(i, "/healthz", "alive") // not ready: a node that cannot join never is
	return i
}

// Etcd returns the shared etcd's endpoints.
func Etcd() []string { return etcdEndpoints }

// free returns n distinct free ports on ip. The listeners are held until all n are
// picked: one closed before the next is asked for can be handed out again (seen once in
// CI as admin and component on one port).
func free(t *testing.T, ip string, n int) []string {
	var out []string
	for range n {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatalf("listen on %s (loopback aliases 127.0.0.x are needed): %v", ip, err)
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out
}

// StartNode (re)starts node i as a subprocess.
func (c *Cluster) StartNode(i int) {
	nd := c.Nodes[i]
	if nd.proc == nil {
		nd.logs = &xmpptest.LockedBuffer{}
		nd.proc = &nodeproc.Process{ID: nd.ID, Admin: nd.Admin, Logs: nd.logs, Command: func() *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), nodeEnv+"="+nd.cfgPath)
			return cmd
		}}
	}
	if err := nd.proc.Start(); err != nil {
		c.t.Fatal(err)
	}
}

// Kill ends node i with SIGKILL (no goodbye to the cluster).
func (c *Cluster) Kill(i int) {
	if p := c.Nodes[i].proc; p != nil {
		p.Kill()
	}
}

// Stop ends node i gracefully (SIGTERM) and waits for it.
func (c *Cluster) Stop(i int) {
	if p := c.Nodes[i].proc; p != nil {
		if err := p.Stop(20 * time.Second); err != nil {
			c.t.Error(err)
		}
	}
}

// WaitReady waits for node i's /readyz.
func (c *Cluster) WaitReady(i int) {
	c.t.Helper()
	c.waitAdmin(i, "/readyz", "ready")
}

// waitAdmin waits until node i's admin path answers 200.
func (c *Cluster) waitAdmin(i int, path, what string) {
	c.t.Helper()
	nd := c.Nodes[i]
	c.Eventually(60*time.Second, nd.ID+" "+what, func() bool {
		resp, err := http.Get("http://" + nd.Admin + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// Components returns the component connections node i's directory lists.
func (c *Cluster) Components(i int) ([]nodeproc.Conn, error) { return c.Nodes[i].proc.Components() }

// Members returns what node i's admin API says about the cluster.
func (c *Cluster) Members(i int) ([]cluster.Member, error) { return c.Nodes[i].proc.Members() }

// WaitMembers waits until node i sees n members.
func (c *Cluster) WaitMembers(i, n int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Nodes[i].proc.WaitMembers(ctx, n); err != nil {
		c.t.Fatal(err)
	}
}

// AddUser stores an account in the cluster's etcd.
func (c *Cluster) AddUser(local, password string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Store.Add(ctx, "localhost", local, password, 4096); err != nil {
		c.t.Fatal(err)
	}
}

// Eventually polls cond until it holds or d passes.
func (c *Cluster) Eventually(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Logs returns node i's output so far.
func (c *Cluster) Logs(i int) string { return c.Nodes[i].logs.String() }

// Metric returns the value of the series line (name{labels}, as /metrics writes it) on
// node i's admin /metrics, or "" if it has none.
func (c *Cluster) Metric(i int, series string) string {
	c.t.Helper()
	resp, err := http.Get("http://" + c.Nodes[i].Admin + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// Pause stops node i's process (SIGSTOP): it holds its connections but reads nothing, as
// a node that hangs does. Resume continues it.
func (c *Cluster) Pause(i int) { c.Nodes[i].proc.Pause() }

// Resume continues a paused node (SIGCONT).
func (c *Cluster) Resume(i int) { c.Nodes[i].proc.Resume() }
