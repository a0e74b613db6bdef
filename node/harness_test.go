package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/accounts"
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/internal/xmpptest"
	"github.com/switchboard-im/switchboard/node"
)

// One real etcd for the package; every test node gets its own key prefix.
var (
	etcdEndpoints []string
	prefixSeq     atomic.Int64
)

func TestMain(m *testing.M) {
	eps, stop, err := etcdx.StartTemp("node-test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		panic(err)
	}
	etcdEndpoints = eps
	code := m.Run()
	stop()
	os.Exit(code)
}

type server struct {
	t     *testing.T
	n     *node.Node
	cfg   *config.Config
	store *accounts.Store
	cli   *clientv3.Client       // the test etcd, for stores a test writes to directly
	logs  *xmpptest.LockedBuffer // the node's log, at cfg.Log.Level (debug with SB_TEST_LOG, also on stderr)
}

const secret = "s3cret"

// startNode runs a real node on random loopback ports against the test etcd.
func startNode(t *testing.T, mutate ...func(*config.Config)) *server {
	t.Helper()
	cfg := config.Default()
	cfg.Node.ID = "test"
	cfg.Node.DataDir = t.TempDir()
	cfg.Listen = config.ListenConfig{C2S: "127.0.0.1:0", C2STLS: "127.0.0.1:0", Component: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.Etcd.Endpoints = etcdEndpoints
	cfg.Etcd.Prefix = fmt.Sprintf("/sbtest/%s/%d", strings.ReplaceAll(t.Name(), "/", "_"), prefixSeq.Add(1))
	cfg.Components = []config.ComponentConfig{{JID: "comp.localhost", Secret: secret, DelegationNS: "urn:xmpp:delegation:2", Balance: "round-robin"}}
	cfg.Log.Level = "error"
	cfg.Cluster.Bind = "" // standalone: several nodes share this process (multi-node tests use subprocesses)
	for _, f := range mutate {
		f(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &xmpptest.LockedBuffer{}
	var logw io.Writer = logs
	if os.Getenv("SB_TEST_LOG") != "" {
		logw = io.MultiWriter(logs, os.Stderr)
		cfg.Log.Level = "debug"
	}
	n := node.New(cfg, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: cfg.Log.SlogLevel()})))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	cli, err := etcdx.Connect(ctx, etcdEndpoints, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return &server{t: t, n: n, cfg: cfg, store: accounts.New(cli, cfg.Etcd.Prefix), cli: cli, logs: logs}
}

// addUser stores an account and waits until the node's account cache has it.
func (s *server) addUser(local, password string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.store.Add(ctx, "localhost", local, password, 4096); err != nil {
		s.t.Fatal(err)
	}
	waitFor(s.t, 5*time.Second, "account "+local+" visible", func() bool {
		return s.accountVisible(local, password)
	})
}

// accountVisible checks through the network: a PLAIN login attempt succeeds.
func (s *server) accountVisible(local, password string) bool {
	c, err := s.dialClient(local, password, "", sasl.Plain)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	xmpptest.WaitFor(t, d, what, cond)
}

type (
	elem      = xmpptest.Elem
	peer      = xmpptest.Peer
	managing  = xmpptest.Managing
	forwarded = xmpptest.Forwarded
)

func (s *server) dialClient(local, password, resource string, mech sasl.Mechanism) (*peer, error) {
	return xmpptest.DialClient(s.t, s.n.Addrs.C2S, local, password, resource, mech)
}

func (s *server) client(local, password string) *peer {
	s.t.Helper()
	return xmpptest.Client(s.t, s.n.Addrs.C2S, local, password)
}

func (s *server) component(domain, sec string) (*peer, error) {
	return xmpptest.DialComponent(s.t, s.n.Addrs.Component, domain, sec)
}

func (s *server) managingEntity(domain string, features map[string][]string) *managing {
	s.t.Helper()
	return xmpptest.NewManaging(s.t, s.n.Addrs.Component, domain, secret, features)
}

// raw is a bare TCP connection for bad-input tests.
type raw struct {
	t *testing.T
	c net.Conn
}

func (s *server) raw(addr string) *raw {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = c.Close() })
	return &raw{t: s.t, c: c}
}

func (r *raw) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// readUntilClosed returns everything the server sends until it closes the connection.
func (r *raw) readUntilClosed(d time.Duration) string {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	var b bytes.Buffer
	_, err := io.Copy(&b, r.c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		r.t.Fatalf("server did not close the connection within %v; got %q", d, b.String())
	}
	return b.String()
}

// readFor returns what arrives within d without requiring a close.
func (r *raw) readFor(d time.Duration) string {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	var b bytes.Buffer
	_, _ = io.Copy(&b, r.c)
	return b.String()
}
