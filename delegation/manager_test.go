package delegation

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/internal/etcdtest"
	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

// changeLog records what a subscriber saw.
type changeLog struct {
	mu      sync.Mutex
	changes []Change
}

func (c *changeLog) add(ch Change) {
	c.mu.Lock()
	c.changes = append(c.changes, ch)
	c.mu.Unlock()
}

func (c *changeLog) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.changes)
}

func (c *changeLog) get(i int) Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changes[i]
}

// next waits for change number i (0-based) and checks that it is the only new one.
func (c *changeLog) next(t *testing.T, i int) Change {
	t.Helper()
	etcdtest.Eventually(t, 5*time.Second, "a change notification", func() bool { return c.len() > i })
	if n := c.len(); n != i+1 {
		t.Fatalf("%d changes, want %d: %+v", n, i+1, c.changes)
	}
	return c.get(i)
}

func capturingLog() (*slog.Logger, *xmpptest.LockedBuffer) {
	b := &xmpptest.LockedBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func startManager(t *testing.T, s *Store, static map[string]map[string]Rule, log *slog.Logger) (*Manager, *changeLog) {
	t.Helper()
	if log == nil {
		log = etcdtest.Log()
	}
	m := NewManager(s, static, log)
	cl := &changeLog{}
	m.Subscribe(cl.add)
	if err := m.Start(etcdtest.Context(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	return m, cl
}

func lookup(m *Manager, host, ns string) Rule {
	r, _ := m.Table(host).Lookup(ns)
	return r
}

func TestManagerStaticOnly(t *testing.T) {
	s, _, _ := testStore(t)
	static := map[string]map[string]Rule{
		"localhost":   {"urn:xmpp:mam:2": {JID: "Archive.Localhost", Filtering: []string{"with"}}},
		"example.org": nil,
	}
	m := NewManager(s, static, etcdtest.Log())
	if r := lookup(m, "localhost", "urn:xmpp:mam:2"); r.JID != "archive.localhost" || r.Source != SourceConfig {
		t.Fatalf("before Start: %+v", r)
	}
	if err := m.Start(etcdtest.Context(t)); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Stop(context.Background()) }()
	r := lookup(m, "localhost", "urn:xmpp:mam:2")
	if r.JID != "archive.localhost" || r.Source != SourceConfig || r.Namespace != "urn:xmpp:mam:2" || !slices.Equal(r.Filtering, []string{"with"}) {
		t.Fatalf("rule = %+v", r)
	}
	if tb := m.Table("example.org"); tb == nil || len(tb.All()) != 0 {
		t.Fatalf("empty host table = %+v", tb)
	}
	if m.Table("LocalHost") != m.Table("localhost") {
		t.Fatal("Table is case-sensitive")
	}
	if m.Table("unknown.example") != nil {
		t.Fatal("table for an unknown host")
	}
	if got := m.Hosts(); !slices.Equal(got, []string{"example.org", "localhost"}) {
		t.Fatalf("Hosts = %v", got)
	}
	// The caller's map is copied.
	static["localhost"]["urn:xmpp:mam:2"] = Rule{JID: "changed.localhost"}
	if lookup(m, "localhost", "urn:xmpp:mam:2").JID != "archive.localhost" {
		t.Fatal("manager shares the caller's map")
	}
	if err := m.Start(etcdtest.Context(t)); err == nil {
		t.Fatal("second Start succeeded")
	}
}

func TestManagerEtcdOverridesConfig(t *testing.T) {
	s, _, _ := testStore(t)
	ctx := etcdtest.Context(t)
	const mam = "urn:xmpp:mam:2"
	static := map[string]map[string]Rule{"localhost": {
		mam:         {JID: "archive.localhost"},
		pubsubOwner: {JID: "pubsub.localhost", Filtering: []string{"node"}},
	}}
	if err := s.Set(ctx, "localhost", mam, Rule{JID: "archive2.localhost"}); err != nil {
		t.Fatal(err)
	}
	m, cl := startManager(t, s, static, nil)
	if r := lookup(m, "localhost", mam); r.JID != "archive2.localhost" || r.Source != SourceEtcd {
		t.Fatalf("etcd rule not in effect at start: %+v", r)
	}
	if r := lookup(m, "localhost", pubsubOwner); r.JID != "pubsub.localhost" || r.Source != SourceConfig {
		t.Fatalf("config rule lost: %+v", r)
	}
	if cl.len() != 0 {
		t.Fatalf("Start notified: %+v", cl.changes)
	}

	// Add.
	if err := s.Set(ctx, "localhost", "urn:example:new", Rule{JID: "new.localhost"}); err != nil {
		t.Fatal(err)
	}
	c := cl.next(t, 0)
	if c.Host != "localhost" || !slices.Equal(c.Affected, []string{"new.localhost"}) {
		t.Fatalf("add: %+v", c)
	}
	if _, ok := c.Old.Lookup("urn:example:new"); ok {
		t.Fatal("Old has the new rule")
	}
	if r, ok := c.New.Lookup("urn:example:new"); !ok || r.JID != "new.localhost" {
		t.Fatal("New lacks the new rule")
	}
	if m.Table("localhost") != c.New {
		t.Fatal("Table is not Change.New")
	}

	// Change of filtering only.
	if err := s.Set(ctx, "localhost", "urn:example:new", Rule{JID: "new.localhost", Filtering: []string{"node"}}); err != nil {
		t.Fatal(err)
	}
	if c := cl.next(t, 1); !slices.Equal(c.Affected, []string{"new.localhost"}) {
		t.Fatalf("filtering change: %+v", c)
	}

	// Change of managing entity: both old and new are affected.
	if err := s.Set(ctx, "localhost", "urn:example:new", Rule{JID: "newer.localhost"}); err != nil {
		t.Fatal(err)
	}
	if c := cl.next(t, 2); !slices.Equal(c.Affected, []string{"new.localhost", "newer.localhost"}) {
		t.Fatalf("jid change: %+v", c)
	}

	// Removal of an etcd rule that overrode the config: back to the config rule.
	if err := s.Remove(ctx, "localhost", mam); err != nil {
		t.Fatal(err)
	}
	if c := cl.next(t, 3); !slices.Equal(c.Affected, []string{"archive.localhost", "archive2.localhost"}) {
		t.Fatalf("remove: %+v", c)
	}
	if r := lookup(m, "localhost", mam); r.JID != "archive.localhost" || r.Source != SourceConfig {
		t.Fatalf("after remove: %+v", r)
	}

	// Removal of an etcd-only rule.
	if err := s.Remove(ctx, "localhost", "urn:example:new"); err != nil {
		t.Fatal(err)
	}
	if c := cl.next(t, 4); !slices.Equal(c.Affected, []string{"newer.localhost"}) {
		t.Fatalf("remove etcd-only: %+v", c)
	}
	if _, ok := m.Table("localhost").Lookup("urn:example:new"); ok {
		t.Fatal("removed rule still in effect")
	}

	// An etcd rule equal to the config one changes nothing anyone sees: no callback,
	// but the table now says where the rule comes from.
	if err := s.Set(ctx, "localhost", pubsubOwner, Rule{JID: "pubsub.localhost", Filtering: []string{"node"}}); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 5*time.Second, "source etcd", func() bool { return lookup(m, "localhost", pubsubOwner).Source == SourceEtcd })
	// Then a real change: it must be the very next callback.
	if err := s.Set(ctx, "localhost", "urn:example:last", Rule{JID: "last.localhost"}); err != nil {
		t.Fatal(err)
	}
	if c := cl.next(t, 5); !slices.Equal(c.Affected, []string{"last.localhost"}) {
		t.Fatalf("after no-op: %+v", c)
	}
}

func TestManagerIgnoresBadEntries(t *testing.T) {
	s, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	d := prefix + "/delegations/"
	// Bad entries already there at start are skipped with a warning.
	if _, err := cli.Put(ctx, d+"localhost/urn:early-garbage", "{"); err != nil {
		t.Fatal(err)
	}
	log, logs := capturingLog()
	static := map[string]map[string]Rule{"localhost": {"urn:xmpp:mam:2": {JID: "archive.localhost"}}}
	m, cl := startManager(t, s, static, log)
	if !strings.Contains(logs.String(), "urn:early-garbage") {
		t.Fatalf("no warning names the bad key:\n%s", logs)
	}
	before := m.Table("localhost")

	// A forbidden namespace, garbage JSON and a rule of a host not served here, written
	// behind the store's back.
	for k, v := range map[string]string{
		d + "localhost/urn:xmpp:delegation:2": `{"jid":"evil.localhost"}`,
		d + "localhost/urn:xmpp:mam:2":        `{"jid":`,
		d + "other.example/urn:xmpp:mam:2":    `{"jid":"archive.other.example"}`,
	} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	// A valid change afterwards: once it is seen, the bad ones have been processed.
	if err := s.Set(ctx, "localhost", "urn:example:sentinel", Rule{JID: "s.localhost"}); err != nil {
		t.Fatal(err)
	}
	if c := cl.next(t, 0); !slices.Equal(c.Affected, []string{"s.localhost"}) {
		t.Fatalf("change = %+v", c)
	}
	tb := m.Table("localhost")
	if _, ok := tb.Lookup(NS2); ok {
		t.Fatal("forbidden namespace delegated")
	}
	if r, _ := tb.Lookup("urn:xmpp:mam:2"); r.JID != "archive.localhost" || r.Source != SourceConfig {
		t.Fatalf("garbage replaced the config rule: %+v", r)
	}
	if len(tb.All()) != len(before.All())+1 {
		t.Fatalf("rules = %+v", tb.All())
	}
	if m.Table("other.example") != nil || slices.Contains(m.Hosts(), "other.example") {
		t.Fatal("host not served here got a table")
	}
	out := logs.String()
	for _, want := range []string{"urn:xmpp:delegation:2", "cannot be delegated", "localhost/urn:xmpp:mam:2", "other.example"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	// A valid etcd rule that turns into garbage counts as absent.
	if err := s.Set(ctx, "localhost", "urn:xmpp:mam:2", Rule{JID: "archive2.localhost"}); err != nil {
		t.Fatal(err)
	}
	cl.next(t, 1)
	if _, err := cli.Put(ctx, d+"localhost/urn:xmpp:mam:2", "garbage"); err != nil {
		t.Fatal(err)
	}
	if c := cl.next(t, 2); !slices.Equal(c.Affected, []string{"archive.localhost", "archive2.localhost"}) {
		t.Fatalf("garbage over a rule: %+v", c)
	}
	if r := lookup(m, "localhost", "urn:xmpp:mam:2"); r.JID != "archive.localhost" {
		t.Fatalf("after garbage: %+v", r)
	}
}

func TestManagerSetStatic(t *testing.T) {
	s, _, _ := testStore(t)
	ctx := etcdtest.Context(t)
	if err := s.Set(ctx, "new.example", "urn:x", Rule{JID: "x.new.example"}); err != nil {
		t.Fatal(err)
	}
	m, cl := startManager(t, s, map[string]map[string]Rule{
		"localhost":    {"urn:a": {JID: "a.localhost"}},
		"gone.example": {"urn:g": {JID: "g.gone.example"}},
	}, nil)
	if m.Table("new.example") != nil {
		t.Fatal("unserved host has a table")
	}
	m.SetStatic(map[string]map[string]Rule{
		"localhost":   {"urn:a": {JID: "a2.localhost"}},
		"new.example": nil,
	})
	// Sorted by host: gone.example, localhost, new.example.
	if cl.len() != 3 {
		t.Fatalf("changes = %+v", cl.changes)
	}
	if c := cl.get(0); c.Host != "gone.example" || c.New != nil || !slices.Equal(c.Affected, []string{"g.gone.example"}) {
		t.Fatalf("removed host: %+v", c)
	}
	if c := cl.get(1); c.Host != "localhost" || !slices.Equal(c.Affected, []string{"a.localhost", "a2.localhost"}) {
		t.Fatalf("changed host: %+v", c)
	}
	if c := cl.get(2); c.Host != "new.example" || c.Old != nil || !slices.Equal(c.Affected, []string{"x.new.example"}) {
		t.Fatalf("added host: %+v", c)
	}
	if got := m.Hosts(); !slices.Equal(got, []string{"localhost", "new.example"}) {
		t.Fatalf("Hosts = %v", got)
	}
	if r := lookup(m, "new.example", "urn:x"); r.Source != SourceEtcd {
		t.Fatalf("etcd rule of the new host: %+v", r)
	}
	// Unchanged config: nothing to say.
	m.SetStatic(map[string]map[string]Rule{
		"localhost":   {"urn:a": {JID: "a2.localhost"}},
		"new.example": {},
	})
	if cl.len() != 3 {
		t.Fatalf("no-op SetStatic notified: %+v", cl.changes[3:])
	}
	// The watch follows the new host set.
	if err := s.Set(ctx, "new.example", "urn:y", Rule{JID: "y.new.example"}); err != nil {
		t.Fatal(err)
	}
	if c := cl.next(t, 3); c.Host != "new.example" || !slices.Equal(c.Affected, []string{"y.new.example"}) {
		t.Fatalf("after SetStatic: %+v", c)
	}
}

func TestManagerConcurrentReads(t *testing.T) {
	s, _, _ := testStore(t)
	ctx := etcdtest.Context(t)
	m, cl := startManager(t, s, map[string]map[string]Rule{"localhost": nil}, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				m.Table("localhost").Match("urn:n3", func(string) bool { return true })
				_ = m.Hosts()
			}
		})
	}
	for i := range 5 {
		if err := s.Set(ctx, "localhost", "urn:n"+string(rune('0'+i)), Rule{JID: "c.localhost"}); err != nil {
			t.Fatal(err)
		}
	}
	etcdtest.Eventually(t, 5*time.Second, "all rules", func() bool { return len(m.Table("localhost").All()) == 5 })
	close(stop)
	wg.Wait()
	if cl.len() == 0 {
		t.Fatal("no changes seen")
	}
}

// The tables keep serving while etcd is unreachable, and what changed meanwhile is
// applied and announced once it is back, here after the missed history was compacted
// so that the manager has to reload.
func TestManagerCatchesUpAfterOutage(t *testing.T) {
	direct, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	p, viaProxy := etcdtest.Proxy(t)
	s := NewStore(viaProxy, prefix)
	if err := direct.Set(ctx, "localhost", "urn:before", Rule{JID: "before.localhost"}); err != nil {
		t.Fatal(err)
	}
	m, cl := startManager(t, s, map[string]map[string]Rule{"localhost": {"urn:cfg": {JID: "cfg.localhost"}}}, nil)

	p.Cut()
	if err := direct.Set(ctx, "localhost", "urn:after", Rule{JID: "after.localhost"}); err != nil {
		t.Fatal(err)
	}
	if err := direct.Remove(ctx, "localhost", "urn:before"); err != nil {
		t.Fatal(err)
	}
	etcdtest.Compact(t, ctx, cli, prefix+"-marker")
	if _, ok := m.Table("localhost").Lookup("urn:before"); !ok {
		t.Fatal("tables changed while etcd was unreachable")
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	c := cl.next(t, 0)
	if !slices.Equal(c.Affected, []string{"after.localhost", "before.localhost"}) {
		t.Fatalf("catch-up change: %+v", c)
	}
	tb := m.Table("localhost")
	if _, ok := tb.Lookup("urn:before"); ok {
		t.Fatal("removed rule still in effect")
	}
	if _, ok := tb.Lookup("urn:after"); !ok {
		t.Fatal("added rule not in effect")
	}
	// And the watch runs again.
	if err := direct.Set(ctx, "localhost", "urn:later", Rule{JID: "later.localhost"}); err != nil {
		t.Fatal(err)
	}
	if c := cl.next(t, 1); !slices.Equal(c.Affected, []string{"later.localhost"}) {
		t.Fatalf("after catch-up: %+v", c)
	}
}

func TestManagerStartFailsWithoutEtcd(t *testing.T) {
	m := NewManager(NewStore(etcdtest.Unreachable(t), "/sb"), map[string]map[string]Rule{"localhost": nil}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := m.Start(ctx); err == nil {
		t.Fatal("Start without etcd succeeded")
	}
	_ = m.Stop(context.Background()) // harmless when not started
	if m.Table("localhost") == nil {
		t.Fatal("no static table")
	}
}
