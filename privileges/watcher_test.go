package privileges

import (
	"context"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/etcdtest"
	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

type privMap = map[string]map[string]config.Privileges

// recorder keeps what onChange was given and fails the test if two calls overlap.
type recorder struct {
	t       *testing.T
	running atomic.Int32
	mu      sync.Mutex
	seen    []privMap
}

func (r *recorder) onChange(m privMap) {
	if r.running.Add(1) != 1 {
		r.t.Error("onChange called concurrently")
	}
	defer r.running.Add(-1)
	time.Sleep(time.Millisecond) // widen the window for an overlap
	r.mu.Lock()
	r.seen = append(r.seen, m)
	r.mu.Unlock()
}

func (r *recorder) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *recorder) last() privMap {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		return nil
	}
	return r.seen[len(r.seen)-1]
}

// waitFor waits up to d for onChange to have been given want.
func (r *recorder) waitFor(t *testing.T, d time.Duration, what string, want privMap) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !reflect.DeepEqual(r.last(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: last onChange got %+v, want %+v", d, what, r.last(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startWatcher(t *testing.T, s *Store, log *slog.Logger) *recorder {
	t.Helper()
	if log == nil {
		log = etcdtest.Log()
	}
	r := &recorder{t: t}
	w := NewWatcher(s, log, r.onChange)
	if err := w.Start(etcdtest.Context(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	if err := w.Start(etcdtest.Context(t)); err == nil {
		t.Fatal("second Start succeeded")
	}
	return r
}

func TestWatcherFollowsChanges(t *testing.T) {
	s, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	if err := s.Set(ctx, "localhost", "pubsub.localhost", config.Privileges{Roster: "get"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, prefix+"/privileges/localhost/bad.localhost", `{"roster":"all"}`); err != nil {
		t.Fatal(err)
	}
	logs := &xmpptest.LockedBuffer{}
	r := startWatcher(t, s, slog.New(slog.NewTextHandler(logs, nil)))

	// Start reports the initial set once, before it returns, without the bad entry.
	if r.calls() != 1 {
		t.Fatalf("%d onChange calls after Start, want 1", r.calls())
	}
	if want := (privMap{"localhost": {"pubsub.localhost": {Roster: "get"}}}); !reflect.DeepEqual(r.last(), want) {
		t.Fatalf("initial set %+v", r.last())
	}
	if !strings.Contains(logs.String(), "bad.localhost") {
		t.Fatalf("no warning about the bad entry:\n%s", logs.String())
	}

	// Each change is seen within a second (the promise to operators).
	iq := config.Privileges{IQ: map[string]string{"urn:example:x": "both"}}
	if err := s.Set(ctx, "example.org", "comp.example.org", iq); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, time.Second, "an added entry", privMap{
		"localhost":   {"pubsub.localhost": {Roster: "get"}},
		"example.org": {"comp.example.org": iq},
	})
	// The consumer's copy is its own.
	r.last()["example.org"]["comp.example.org"].IQ["urn:example:x"] = "changed"
	r.last()["localhost"]["other"] = config.Privileges{}

	if err := s.Set(ctx, "localhost", "pubsub.localhost", config.Privileges{Roster: "both", Message: "outgoing"}); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, time.Second, "a changed entry", privMap{
		"localhost":   {"pubsub.localhost": {Roster: "both", Message: "outgoing"}},
		"example.org": {"comp.example.org": iq},
	})

	// An entry made invalid counts as absent, with a warning; a valid one comes back.
	if _, err := cli.Put(ctx, prefix+"/privileges/example.org/comp.example.org", `{"message":"all"}`); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, time.Second, "an entry made invalid", privMap{
		"localhost": {"pubsub.localhost": {Roster: "both", Message: "outgoing"}},
	})
	etcdtest.Eventually(t, time.Second, "a warning", func() bool { return strings.Contains(logs.String(), `message: \"all\"`) })

	// Removal, and a put of a key in no usable shape (ignored).
	if err := s.Remove(ctx, "localhost", "pubsub.localhost"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, time.Second, "a removed entry", privMap{})
	n := r.calls()
	if _, err := cli.Put(ctx, prefix+"/privileges/junk", `{}`); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, time.Second, "the batch of the junk key", func() bool { return r.calls() > n })
	if !reflect.DeepEqual(r.last(), privMap{}) {
		t.Fatalf("after a junk key: %+v", r.last())
	}
}

func TestWatcherStopEndsCalls(t *testing.T) {
	s, _, _ := testStore(t)
	ctx := etcdtest.Context(t)
	r := &recorder{t: t}
	w := NewWatcher(s, nil, r.onChange)
	_ = w.Stop(context.Background()) // harmless when not started
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_ = w.Stop(context.Background())
	_ = w.Stop(context.Background())
	n := r.calls()
	if err := s.Set(ctx, "localhost", "pubsub.localhost", config.Privileges{Roster: "get"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if r.calls() != n {
		t.Fatal("onChange called after Stop")
	}
	// It can start again, from the current state.
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	if want := (privMap{"localhost": {"pubsub.localhost": {Roster: "get"}}}); !reflect.DeepEqual(r.last(), want) {
		t.Fatalf("after restart: %+v", r.last())
	}
}

// While etcd is unreachable nothing is reported; once it is back, what changed
// meanwhile is reported, here after the missed history was compacted so that the
// watcher has to reload, and the watch runs again.
func TestWatcherSurvivesOutage(t *testing.T) {
	direct, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	p, viaProxy := etcdtest.Proxy(t)
	s := NewStore(viaProxy, prefix)
	if err := direct.Set(ctx, "localhost", "before.localhost", config.Privileges{Roster: "get"}); err != nil {
		t.Fatal(err)
	}
	r := startWatcher(t, s, nil)

	p.Cut()
	if err := direct.Set(ctx, "localhost", "after.localhost", config.Privileges{Message: "outgoing"}); err != nil {
		t.Fatal(err)
	}
	if err := direct.Remove(ctx, "localhost", "before.localhost"); err != nil {
		t.Fatal(err)
	}
	etcdtest.Compact(t, ctx, cli, prefix+"-marker")
	time.Sleep(100 * time.Millisecond)
	if want := (privMap{"localhost": {"before.localhost": {Roster: "get"}}}); !reflect.DeepEqual(r.last(), want) {
		t.Fatalf("reported while etcd was unreachable: %+v", r.last())
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	// The client reconnects with gRPC's backoff (1 s, then 1.6 s, ...), hence the margin.
	r.waitFor(t, 10*time.Second, "the catch-up", privMap{"localhost": {"after.localhost": {Message: "outgoing"}}})

	if err := direct.Set(ctx, "localhost", "later.localhost", config.Privileges{Presence: "managed_entity"}); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, 5*time.Second, "a change after the catch-up", privMap{"localhost": {
		"after.localhost": {Message: "outgoing"},
		"later.localhost": {Presence: "managed_entity"},
	}})
}

func TestWatcherStartFailsWithoutEtcd(t *testing.T) {
	called := false
	w := NewWatcher(NewStore(etcdtest.Unreachable(t), "/sb"), nil, func(privMap) { called = true })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := w.Start(ctx); err == nil {
		t.Fatal("Start without etcd succeeded")
	}
	_ = w.Stop(context.Background()) // harmless when not started
	if called {
		t.Fatal("onChange called although nothing was read")
	}
}
