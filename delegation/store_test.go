package delegation

import (
	"errors"
	"slices"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/internal/etcdtest"
)

func TestMain(m *testing.M) { etcdtest.Main(m, "delegation-test") }

// testStore returns a Store under a prefix of its own, with its client and prefix.
func testStore(t *testing.T) (*Store, *clientv3.Client, string) { return etcdtest.Store(t, NewStore) }

const pubsubOwner = "http://jabber.org/protocol/pubsub#owner"

func TestStoreRoundTrip(t *testing.T) {
	s, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	if s.Prefix() != prefix+"/delegations/" {
		t.Fatalf("Prefix = %q", s.Prefix())
	}
	if err := s.Set(ctx, "LocalHost", pubsubOwner, Rule{JID: "PubSub.LocalHost", Filtering: []string{"node"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "localhost", "urn:xmpp:mam:2", Rule{JID: "archive.localhost"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "example.org", "urn:xmpp:mam:2", Rule{JID: "archive.example.org"}); err != nil {
		t.Fatal(err)
	}

	// The documented key and value shapes.
	key := prefix + "/delegations/localhost/http:%2F%2Fjabber.org%2Fprotocol%2Fpubsub%23owner"
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw get %s: %v %v", key, resp, err)
	}
	if got, want := string(resp.Kvs[0].Value), `{"jid":"pubsub.localhost","filtering":["node"]}`; got != want {
		t.Fatalf("stored %s, want %s", got, want)
	}
	resp, _ = cli.Get(ctx, prefix+"/delegations/localhost/urn:xmpp:mam:2")
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != `{"jid":"archive.localhost"}` {
		t.Fatalf("mam rule stored as %v", resp.Kvs)
	}

	rules, rev, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev <= 0 {
		t.Fatalf("revision %d", rev)
	}
	want := map[string]map[string]Rule{
		"localhost": {
			pubsubOwner:      {Namespace: pubsubOwner, JID: "pubsub.localhost", Filtering: []string{"node"}, Source: SourceEtcd},
			"urn:xmpp:mam:2": {Namespace: "urn:xmpp:mam:2", JID: "archive.localhost", Source: SourceEtcd},
		},
		"example.org": {
			"urn:xmpp:mam:2": {Namespace: "urn:xmpp:mam:2", JID: "archive.example.org", Source: SourceEtcd},
		},
	}
	if !sameRules(rules, want) {
		t.Fatalf("List = %+v\nwant %+v", rules, want)
	}

	// Set replaces.
	if err := s.Set(ctx, "localhost", pubsubOwner, Rule{JID: "other.localhost"}); err != nil {
		t.Fatal(err)
	}
	rules, _, _ = s.List(ctx)
	if r := rules["localhost"][pubsubOwner]; r.JID != "other.localhost" || len(r.Filtering) != 0 {
		t.Fatalf("after replace: %+v", r)
	}

	if err := s.Remove(ctx, "LOCALHOST", pubsubOwner); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "localhost", pubsubOwner); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove twice = %v, want ErrNotFound", err)
	}
	if err := s.Remove(ctx, "nowhere.example", "urn:x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove of a missing rule = %v, want ErrNotFound", err)
	}
	rules, _, _ = s.List(ctx)
	if _, ok := rules["localhost"][pubsubOwner]; ok || len(rules["localhost"]) != 1 {
		t.Fatalf("after Remove: %+v", rules)
	}
}

func sameRules(a, b map[string]map[string]Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for h, ra := range a {
		rb, ok := b[h]
		if !ok || len(ra) != len(rb) {
			return false
		}
		for ns, x := range ra {
			y, ok := rb[ns]
			if !ok || x.Namespace != y.Namespace || x.Source != y.Source || !sameRule(x, y) {
				return false
			}
		}
	}
	return true
}

func TestStoreRefusesInvalid(t *testing.T) {
	s, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	for _, ns := range []string{NS2, NS1, NS2 + ":bare:urn:xmpp:mam:2"} {
		if err := s.Set(ctx, "localhost", ns, Rule{JID: "comp.localhost"}); !errors.Is(err, ErrForbiddenNamespace) {
			t.Errorf("Set(%s) = %v, want ErrForbiddenNamespace", ns, err)
		}
	}
	for _, tc := range []struct {
		host, ns string
		r        Rule
	}{
		{"localhost", "", Rule{JID: "c.localhost"}},
		{"localhost", "urn:x", Rule{}},
		{"localhost", "urn:x", Rule{JID: "c.localhost/res"}},
		{"localhost", "urn:x", Rule{JID: "c.localhost", Filtering: []string{"a b"}}},
		{"", "urn:x", Rule{JID: "c.localhost"}},
		{"a/b", "urn:x", Rule{JID: "c.localhost"}},
	} {
		if err := s.Set(ctx, tc.host, tc.ns, tc.r); err == nil {
			t.Errorf("Set(%q, %q, %+v) succeeded", tc.host, tc.ns, tc.r)
		}
	}
	// The pseudo-namespaces of §7.3 are allowed.
	if err := s.Set(ctx, "localhost", BareDiscoInfoRemaining, Rule{JID: "c.localhost"}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1 {
		t.Fatalf("keys stored: %v %v", resp, err)
	}
}

func TestStoreLoadSkipsInvalid(t *testing.T) {
	s, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	if err := s.Set(ctx, "localhost", "urn:ok", Rule{JID: "c.localhost"}); err != nil {
		t.Fatal(err)
	}
	d := prefix + "/delegations/"
	bad := map[string]string{
		d + "localhost/urn:garbage":                `{not json`,
		d + "localhost/" + "urn:xmpp:delegation:2": `{"jid":"c.localhost"}`,
		d + "localhost/urn:nojid":                  `{"filtering":["node"]}`,
		d + "localhost/bad%zzescape":               `{"jid":"c.localhost"}`,
		d + "localhost/urn%3Anoncanonical":         `{"jid":"c.localhost"}`,
		d + "LocalHost/urn:upper":                  `{"jid":"c.localhost"}`,
		d + "localhost/too/deep":                   `{"jid":"c.localhost"}`,
		d + "nonamespace":                          `{"jid":"c.localhost"}`,
	}
	for k, v := range bad {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Rules) != 1 || len(snap.Rules["localhost"]) != 1 || snap.Rules["localhost"]["urn:ok"].JID != "c.localhost" {
		t.Fatalf("rules = %+v", snap.Rules)
	}
	if len(snap.Invalid) != len(bad) {
		t.Fatalf("invalid = %v, want %d", snap.Invalid, len(bad))
	}
	for k := range bad {
		if !slices.ContainsFunc(snap.Invalid, func(err error) bool { return strings.Contains(err.Error(), k) }) {
			t.Errorf("no error names %s: %v", k, snap.Invalid)
		}
	}
	if !slices.ContainsFunc(snap.Invalid, func(err error) bool { return errors.Is(err, ErrForbiddenNamespace) }) {
		t.Errorf("forbidden namespace not reported as such: %v", snap.Invalid)
	}
	rules, _, err := s.List(ctx)
	if err != nil || len(rules["localhost"]) != 1 {
		t.Fatalf("List = %v %v", rules, err)
	}
}

func TestStoreKeyRoundTrip(t *testing.T) {
	s := NewStore(nil, "/sb/")
	for _, ns := range []string{pubsubOwner, "urn:xmpp:mam:2", "a b?c;d,e%f", BareDiscoItemsRemaining, "ünï"} {
		k := s.Key("localhost", ns)
		if strings.Count(strings.TrimPrefix(k, "/sb/delegations/"), "/") != 1 {
			t.Fatalf("key %q has extra slashes", k)
		}
		h, got, err := s.ParseKey([]byte(k))
		if err != nil || h != "localhost" || got != ns {
			t.Fatalf("ParseKey(%q) = %q %q %v", k, h, got, err)
		}
	}
	if _, _, err := s.ParseKey([]byte("/other/delegations/localhost/urn:x")); err == nil {
		t.Fatal("key under another prefix accepted")
	}
}
