package bench_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/accounts"
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/internal/bench"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/node"
)

const (
	benchNS     = "urn:example:bench"
	benchComp   = "bench.localhost"
	benchSecret = "bench-secret"
	password    = "bench-pw"
	users       = 4
)

// startNode runs a real standalone node on random loopback ports with an embedded etcd,
// the bench namespace delegated to the bench component, and the bench accounts.
func startNode(t *testing.T) *node.Node {
	t.Helper()
	return startNodeFor(t, "localhost", nil)
}

// startNodeFor is startNode serving domain, its config changed by mutate (if not nil).
func startNodeFor(t *testing.T, domain string, mutate func(*config.Config)) *node.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	addrs, err := etcdx.FreeAddrs("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	client, peer := addrs[0], addrs[1]
	cfg := config.Default()
	cfg.Node.ID = "bench"
	cfg.Node.DataDir = t.TempDir()
	cfg.Listen = config.ListenConfig{C2S: "127.0.0.1:0", C2STLS: "127.0.0.1:0", Component: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.Etcd.Embedded.Client, cfg.Etcd.Embedded.Peer = client, peer
	cfg.Cluster.Bind = ""
	cfg.Hosts = []config.HostConfig{{Domain: "localhost", Delegations: map[string]config.DelegationRule{benchNS: {JID: benchComp}}}}
	cfg.Components = []config.ComponentConfig{{JID: benchComp, Secret: benchSecret, DelegationNS: delegation.NS2, Balance: "round-robin"}}
	cfg.Log.Level = "error"
	if domain != "localhost" {
		cfg.Hosts = []config.HostConfig{{Domain: domain}}
		cfg.Components = nil
	}
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := node.New(cfg, quiet)
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	cli, err := etcdx.Connect(ctx, n.Addrs.EtcdClient, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := bench.CreateUsers(ctx, accounts.New(cli, cfg.Etcd.Prefix), domain, "bench", password, users, 4096); err != nil {
		t.Fatal(err)
	}
	cc := bench.ClientConfig{Addr: n.Addrs.C2S, Domain: domain, Insecure: true, Timeout: 5 * time.Second}
	if err := bench.WaitLogin(ctx, cc, "bench"+string(rune('0'+users-1)), password, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return n
}

func options(n *node.Node) bench.Options {
	return bench.Options{
		Client:          bench.ClientConfig{Addr: n.Addrs.C2S, Domain: "localhost", Insecure: true},
		Component:       n.Addrs.Component,
		ComponentJID:    benchComp,
		ComponentSecret: benchSecret,
		Users:           users,
		Password:        password,
		Conns:           3,
		Window:          10,
		Count:           300,
		Namespace:       benchNS,
		Timeout:         5 * time.Second,
		MaxTime:         30 * time.Second,
	}
}

func run(t *testing.T, scenario string, o bench.Options) *bench.Result {
	t.Helper()
	res, err := bench.Run(context.Background(), scenario, o)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		res.WriteText(os.Stderr)
	}
	return res
}

func clean(t *testing.T, res *bench.Result, ops uint64) {
	t.Helper()
	if res.Errors != 0 {
		t.Fatalf("%s: %d errors %v, first: %s", res.Scenario, res.Errors, res.ErrorKinds, res.FirstError)
	}
	if res.Ops != ops {
		t.Fatalf("%s: %d ops, want %d", res.Scenario, res.Ops, ops)
	}
	if res.Throughput <= 0 || res.LatencyMS.Max <= 0 || res.LatencyMS.P50 > res.LatencyMS.P99 || res.LatencyMS.P99 > res.LatencyMS.Max {
		t.Fatalf("%s: implausible figures %+v", res.Scenario, res)
	}
}

// One node for every scenario: each runs briefly and must come out with no errors and
// exactly the requested count.
func TestScenarios(t *testing.T) {
	t.Parallel() // beside TestS2SScenario, whose nodes take 5 s to stop
	n := startNode(t)

	t.Run("delegation", func(t *testing.T) {
		res := run(t, bench.Delegation, options(n))
		clean(t, res, 300)
		if res.ComponentHandled != 300 {
			t.Fatalf("the component answered %d delegated IQs, want 300", res.ComponentHandled)
		}
	})
	t.Run("delegation-sequential-direct-tls", func(t *testing.T) {
		o := options(n)
		o.Client.Addr, o.Client.DirectTLS, o.Client.Mech = n.Addrs.C2STLS, true, "SCRAM-SHA-1"
		o.Conns, o.Window, o.Count = 1, 1, 100
		clean(t, run(t, bench.Delegation, o), 100)
	})
	t.Run("delegation-paced", func(t *testing.T) {
		o := options(n)
		o.Rate, o.Count = 1000, 200
		clean(t, run(t, bench.Delegation, o), 200)
	})
	t.Run("delegation-duration", func(t *testing.T) {
		o := options(n)
		o.Count, o.Dur = 0, 300*time.Millisecond
		res := run(t, bench.Delegation, o)
		clean(t, res, res.Ops)
		if res.Ops == 0 || res.ComponentHandled != res.Ops {
			t.Fatalf("%d ops, component answered %d", res.Ops, res.ComponentHandled)
		}
	})
	t.Run("iq-to-component", func(t *testing.T) {
		o := options(n)
		o.To = benchComp
		clean(t, run(t, bench.Delegation, o), 300)
	})
	t.Run("message", func(t *testing.T) {
		o := options(n)
		o.Conns = 2
		clean(t, run(t, bench.Message, o), 300)
	})
	t.Run("login", func(t *testing.T) {
		o := options(n)
		o.Conns, o.Count, o.Client.Mech = 2, 10, "PLAIN"
		clean(t, run(t, bench.LoginScen, o), 10)
	})
	t.Run("idle", func(t *testing.T) {
		o := options(n)
		o.Sessions, o.Hold, o.ServerPID = 20, 10*time.Millisecond, os.Getpid()
		res := run(t, bench.Idle, o)
		clean(t, res, 20)
		if res.RSSAfterKiB <= 0 || res.Sessions != 20 {
			t.Fatalf("idle: %+v", res)
		}
	})

	t.Run("flood", func(t *testing.T) {
		for _, kind := range bench.FloodKinds {
			o := options(n)
			o.Flood, o.Dur, o.ServerPID = kind, 300*time.Millisecond, os.Getpid()
			res := run(t, bench.Flood, o)
			if res.Errors != 0 || res.Ops == 0 || res.Pings == 0 || res.LatencyMS.Max <= 0 || res.RSSMaxKiB < res.RSSBeforeKiB || res.FloodCut != "" {
				t.Fatalf("%s flood: %+v", kind, res)
			}
			if kind == bench.FloodMessage && res.FloodDelivered == 0 || kind == bench.FloodRoster && res.FloodAnswered == 0 {
				t.Fatalf("%s flood: nothing came through: %+v", kind, res)
			}
		}
	})

	// Errors are counted, never ignored.
	t.Run("undelegated-namespace-errors", func(t *testing.T) {
		o := options(n)
		o.Namespace, o.Count = "urn:example:not-delegated", 30
		res := run(t, bench.Delegation, o)
		if res.Ops != 0 || res.Errors != 30 || res.ErrorKinds[bench.ErrErrorReply] != 30 {
			t.Fatalf("want 30 error replies, got %d ops, errors %v", res.Ops, res.ErrorKinds)
		}
	})
	t.Run("no-component-errors", func(t *testing.T) {
		o := options(n)
		o.Component, o.Count = "", 20
		res := run(t, bench.Delegation, o)
		if res.Ops != 0 || res.ErrorKinds[bench.ErrErrorReply] != 20 {
			t.Fatalf("want 20 service-unavailable replies, got %d ops, errors %v", res.Ops, res.ErrorKinds)
		}
	})
	t.Run("unknown-user", func(t *testing.T) {
		o := options(n)
		o.UserPrefix = "nobody"
		if _, err := bench.Run(context.Background(), bench.Delegation, o); err == nil {
			t.Fatal("a run whose clients cannot log in must fail")
		}
	})
}

// The floor needs no server: every record comes back to the connection that sent it, the
// count is exact, a paced run takes about as long as its rate says, and the tool reports
// its own CPU use.
func TestFloor(t *testing.T) {
	o := bench.Options{Conns: 4, Window: 16, Count: 4000, Timeout: 5 * time.Second, MaxTime: 30 * time.Second}
	res := run(t, bench.Floor, o)
	clean(t, res, 4000)
	if res.ToolCPUPercent <= 0 {
		t.Fatalf("floor: tool CPU %v%%, want a figure", res.ToolCPUPercent)
	}

	o.Rate, o.Count = 2000, 1000
	res = run(t, bench.Floor, o)
	clean(t, res, 1000)
	if res.Seconds < 0.4 || res.Seconds > 5 {
		t.Fatalf("floor: 1000 records at 2000/s took %.2fs", res.Seconds)
	}

	o.Rate, o.Count, o.Dur = 0, 0, 200*time.Millisecond
	res = run(t, bench.Floor, o)
	clean(t, res, res.Ops)
	if res.Ops == 0 {
		t.Fatal("floor: nothing went through in 200 ms")
	}
}
