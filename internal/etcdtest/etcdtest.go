// Package etcdtest is the scaffolding shared by the tests of the packages that keep
// their state in etcd: one throw-away embedded etcd per test binary (started by Main),
// clients to it that are closed when the test ends, a key prefix of its own for every
// test, a test context with a deadline, a polling helper, and helpers for outage tests
// (a cuttable proxy, history compaction, a client of no etcd).
//
// It is imported by _test.go files only. Set SB_TEST_LOG to any value to see the
// debug logs of etcd and of the code under test on stderr.
package etcdtest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/switchboard-im/switchboard/internal/etcdx"
)

// Timeouts of the helpers.
const (
	// ConnectTimeout bounds Connect as a whole; DialTimeout is the client's own.
	ConnectTimeout = 10 * time.Second
	DialTimeout    = 5 * time.Second
	// ContextTimeout is the deadline of Context.
	ContextTimeout = 30 * time.Second
	// PollInterval is how often Eventually checks its condition.
	PollInterval = 10 * time.Millisecond
)

var (
	endpoints []string
	prefixSeq atomic.Int64
)

// Main starts a temporary etcd named name (see etcdx.StartTemp), runs the tests, stops
// the etcd and exits with the tests' exit code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { etcdtest.Main(m, "accounts-test") }
func Main(m *testing.M, name string) {
	os.Exit(run(m, name))
}

func run(m *testing.M, name string) int {
	eps, stop, err := etcdx.StartTemp(name, Log())
	if err != nil {
		panic(err)
	}
	defer stop()
	endpoints = eps
	return m.Run()
}

// Endpoints are the client URLs of the etcd started by Main (nil before it).
func Endpoints() []string { return endpoints }

// Log is a logger for the code under test: silent, or debug level on stderr when the
// environment variable SB_TEST_LOG is set.
func Log() *slog.Logger {
	if os.Getenv("SB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// Client is a client of the etcd started by Main, closed when the test ends.
func Client(t testing.TB) *clientv3.Client {
	t.Helper()
	if len(endpoints) == 0 {
		t.Fatal("etcdtest: no etcd; call etcdtest.Main from TestMain")
	}
	return Connect(t, endpoints)
}

// Connect is a client of the etcd at eps (checked to be reachable, within
// ConnectTimeout), closed when the test ends.
func Connect(t testing.TB, eps []string) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
	defer cancel()
	cli, err := etcdx.Connect(ctx, eps, DialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Proxy starts an etcdx.CutProxy in front of the etcd started by Main, to make it
// unreachable at will, and returns it with a client that dials through it. The proxy
// is cut, and the client closed, when the test ends.
func Proxy(t testing.TB) (*etcdx.CutProxy, *clientv3.Client) {
	t.Helper()
	if len(endpoints) == 0 {
		t.Fatal("etcdtest: no etcd; call etcdtest.Main from TestMain")
	}
	p, err := etcdx.NewCutProxy(strings.TrimPrefix(endpoints[0], "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Cut)
	return p, Connect(t, []string{"http://" + p.Addr()})
}

// Unreachable is a client of an address where no etcd listens (dial timeout 200 ms),
// closed when the test ends: anything that needs etcd fails with it.
func Unreachable(t testing.TB) *clientv3.Client {
	t.Helper()
	addr, _ := etcdx.FreeAddr("127.0.0.1")
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + addr}, DialTimeout: 200 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Compact puts key and compacts the history of cli's etcd up to that put, so that a
// watcher that missed what came before can only catch up by reloading.
func Compact(t testing.TB, ctx context.Context, cli *clientv3.Client, key string) {
	t.Helper()
	resp, err := cli.Put(ctx, key, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
}

// Store opens a store with open on a Client and a Prefix of the test's own, and
// returns it with both, e.g. s, cli, prefix := etcdtest.Store(t, accounts.New).
func Store[S any](t testing.TB, open func(cli *clientv3.Client, prefix string) S) (S, *clientv3.Client, string) {
	t.Helper()
	cli, prefix := Client(t), Prefix(t)
	return open(cli, prefix), cli, prefix
}

// Prefix is a key prefix of its own for every call, /sbtest/<test name>/<n>, so that
// the tests of a package can share one etcd.
func Prefix(t testing.TB) string {
	return fmt.Sprintf("/sbtest/%s/%d", strings.ReplaceAll(t.Name(), "/", "_"), prefixSeq.Add(1))
}

// Context is a context with a ContextTimeout deadline, cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), ContextTimeout)
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond every PollInterval until it holds, and fails the test if it
// does not within d; what names the awaited state in the failure.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(PollInterval)
	}
}
