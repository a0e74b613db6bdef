package etcdx

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func start(t *testing.T, client, peer string) *Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), ClientAddr: client, PeerAddr: peer, Name: "t"},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	return e
}

// connect is a client of e for the rest of the test.
func connect(t *testing.T, ctx context.Context, e *Embedded, opts ...Option) *clientv3.Client {
	t.Helper()
	cli, err := Connect(ctx, e.Endpoints(), 5*time.Second, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func TestEmbeddedFreeAddr(t *testing.T) {
	addrs, err := FreeAddrs("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	client, peer := addrs[0], addrs[1]
	e := start(t, client, peer)
	if got := e.Endpoints(); len(got) != 1 || got[0] != "http://"+client {
		t.Fatalf("endpoints %v, want [http://%s]", got, client)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli := connect(t, ctx, e)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
	_ = e.Stop(context.Background())
	_ = e.Stop(context.Background()) // idempotent
}

func TestEmbeddedPortZero(t *testing.T) {
	e := start(t, "127.0.0.1:0", "127.0.0.1:0")
	eps := e.Endpoints()
	if len(eps) != 1 || strings.HasSuffix(eps[0], ":0") {
		t.Fatalf("endpoints %v", eps)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := Connect(ctx, eps, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cli.Close()
}

func TestEmbeddedRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	addrs, _ := FreeAddrs("127.0.0.1", 2)
	client, peer := addrs[0], addrs[1]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := EmbeddedConfig{Dir: dir, ClientAddr: client, PeerAddr: peer}
	e, err := StartEmbedded(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Connect(ctx, e.Endpoints(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "kept"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	_ = e.Stop(context.Background())

	e, err = StartEmbedded(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Stop(context.Background()) }()
	cli, err = Connect(ctx, e.Endpoints(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
		t.Fatalf("get after restart: %v %v", resp, err)
	}
}

func TestEmbeddedPortInUse(t *testing.T) {
	e := start(t, "127.0.0.1:0", "127.0.0.1:0")
	addr := strings.TrimPrefix(e.Endpoints()[0], "http://")
	peer, _ := FreeAddr("127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e2, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), ClientAddr: addr, PeerAddr: peer}, nil); err == nil {
		_ = e2.Stop(context.Background())
		t.Fatal("second etcd on a used client port started")
	}
}

func TestConnectDead(t *testing.T) {
	addr, err := FreeAddr("127.0.0.1") // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	cli, err := Connect(context.Background(), []string{"http://" + addr}, 500*time.Millisecond)
	if err == nil {
		cli.Close()
		t.Fatal("connect to a dead endpoint succeeded")
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Fatalf("connect took %s", d)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Fatalf("error does not name the endpoint: %v", err)
	}
}

func TestConnectNoEndpoints(t *testing.T) {
	if _, err := Connect(context.Background(), nil, time.Second); err == nil {
		t.Fatal("want error")
	}
}

// The watch reports compaction when it starts behind the compacted revision, so that
// WatchPrefix reloads. Checked directly, since a live watch is never that far behind.
func TestWatchReportsCompaction(t *testing.T) {
	addrs, _ := FreeAddrs("127.0.0.1", 2)
	client, peer := addrs[0], addrs[1]
	e := start(t, client, peer)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli := connect(t, ctx, e)
	for i := 0; i < 3; i++ {
		if _, err := cli.Put(ctx, "/w/k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Put(ctx, "/w/marker", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if err := watchOnce(ctx, cli, "/w/", 1, func([]*clientv3.Event) {}); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("watch from revision 1 = %v, want compaction error", err)
	}
}

// A web page in an operator's browser must not reach the embedded store: a cross-origin
// text/plain POST (no preflight) to the HTTP/JSON gateway gets no data and no CORS
// permission, and a request under a foreign Host name (DNS rebinding) is refused.
func TestEmbeddedNoBrowserAccess(t *testing.T) {
	e := start(t, "127.0.0.1:0", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli := connect(t, ctx, e)
	if _, err := cli.Put(ctx, "/switchboard/accounts/localhost/alice", "salted-password"); err != nil {
		t.Fatal(err)
	}
	body := `{"key":"` + base64.StdEncoding.EncodeToString([]byte("/switchboard/accounts/localhost/alice")) + `"}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.Endpoints()[0]+"/v3/kv/range", strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Origin", "http://attacker.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if acao := resp.Header.Get("Access-Control-Allow-Origin"); acao != "" {
		t.Errorf("Access-Control-Allow-Origin: %q", acao)
	}
	if resp.StatusCode == http.StatusOK || strings.Contains(string(got), base64.StdEncoding.EncodeToString([]byte("salted-password"))) {
		t.Errorf("the gateway answered %d: %s", resp.StatusCode, got)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, e.Endpoints()[0]+"/health", nil)
	req.Host = "attacker.example"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("a request for Host attacker.example was answered %d", resp.StatusCode)
	}
	// The node's own access (gRPC) is unchanged.
	if r, err := cli.Get(ctx, "/switchboard/accounts/localhost/alice"); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("gRPC get: %v %v", r, err)
	}
}

// Range reads a prefix bigger than a page in pages, all at one revision, and a client
// whose responses are bounded below the prefix's size reads it whole that way, where a
// single read fails.
func TestRangePagesAtOneRevision(t *testing.T) {
	e := start(t, "127.0.0.1:0", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n, size = 2*PageSize + 7, 1000
	cli := connect(t, ctx, e, MaxResponse(PageSize*size*3/2))
	val := strings.Repeat("v", size)
	for i := range n {
		if _, err := cli.Put(ctx, fmt.Sprintf("/r/k%05d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Get(ctx, "/r/", clientv3.WithPrefix()); err == nil {
		t.Fatal("one read of the whole prefix fit in the response bound; the test proves nothing")
	}
	var keys []string
	rev, err := Range(ctx, cli, "/r/", func(kv *mvccpb.KeyValue) {
		if len(keys) == 0 { // written after the first page: not in the snapshot
			if _, err := cli.Put(ctx, "/r/zzz", "late"); err != nil {
				t.Error(err)
			}
		}
		keys = append(keys, string(kv.Key))
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != n || keys[0] != "/r/k00000" || keys[n-1] != fmt.Sprintf("/r/k%05d", n-1) || !slices.IsSorted(keys) {
		t.Fatalf("read %d keys (%v … %v), want %d in order", len(keys), keys[:1], keys[len(keys)-1:], n)
	}
	if resp, err := cli.Get(ctx, "/r/zzz"); err != nil || resp.Header.Revision != rev+1 {
		t.Fatalf("revision read %d, after the late write %v %v", rev, resp, err)
	}
}
