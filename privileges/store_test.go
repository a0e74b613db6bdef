package privileges

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/etcdtest"
)

func TestMain(m *testing.M) { etcdtest.Main(m, "privileges-test") }

// testStore returns a Store under a prefix of its own, with its client and prefix.
func testStore(t *testing.T) (*Store, *clientv3.Client, string) { return etcdtest.Store(t, NewStore) }

func TestStoreSetListRemove(t *testing.T) {
	s, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	if s.Prefix() != prefix+"/privileges/" {
		t.Fatalf("Prefix = %q", s.Prefix())
	}
	full := config.Privileges{Roster: "both", Message: "outgoing", Presence: "managed_entity",
		IQ: map[string]string{"urn:example:a": "get", "urn:example:b": "set"}}
	if err := s.Set(ctx, "LocalHost", "PubSub.LocalHost", full); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "localhost", "archive.localhost", config.Privileges{Roster: "get"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "example.org.", "comp.example.org", config.Privileges{}); err != nil {
		t.Fatal(err)
	}

	// The documented key and value shapes.
	key := prefix + "/privileges/localhost/pubsub.localhost"
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw get %s: %v %v", key, resp, err)
	}
	want := `{"roster":"both","message":"outgoing","presence":"managed_entity","iq":{"urn:example:a":"get","urn:example:b":"set"}}`
	if got := string(resp.Kvs[0].Value); got != want {
		t.Fatalf("stored %s, want %s", got, want)
	}
	if resp, _ := cli.Get(ctx, prefix+"/privileges/example.org/comp.example.org"); len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != `{}` {
		t.Fatalf("empty set stored as %v", resp.Kvs)
	}

	m, rev, invalid, err := s.List(ctx)
	if err != nil || len(invalid) != 0 || rev == 0 {
		t.Fatalf("List: rev %d, invalid %v, err %v", rev, invalid, err)
	}
	wantMap := map[string]map[string]config.Privileges{
		"localhost": {
			"pubsub.localhost":  full,
			"archive.localhost": {Roster: "get"},
		},
		"example.org": {"comp.example.org": {}},
	}
	if !reflect.DeepEqual(m, wantMap) {
		t.Fatalf("List = %+v\nwant %+v", m, wantMap)
	}

	// Set replaces the whole set.
	if err := s.Set(ctx, "localhost", "pubsub.localhost", config.Privileges{Message: "outgoing"}); err != nil {
		t.Fatal(err)
	}
	m, _, _, _ = s.List(ctx)
	if got := m["localhost"]["pubsub.localhost"]; !reflect.DeepEqual(got, config.Privileges{Message: "outgoing"}) {
		t.Fatalf("after replacing: %+v", got)
	}

	if err := s.Remove(ctx, "LOCALHOST", "pubsub.localhost"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "localhost", "pubsub.localhost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
	if err := s.Remove(ctx, "nowhere.example", "pubsub.localhost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove of an unknown host: %v", err)
	}
	m, _, _, _ = s.List(ctx)
	if _, ok := m["localhost"]["pubsub.localhost"]; ok || len(m["localhost"]) != 1 {
		t.Fatalf("after Remove: %+v", m)
	}
}

func TestStoreRefuses(t *testing.T) {
	s, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	for _, tc := range []struct {
		name, host, comp string
		p                config.Privileges
		want             []string
	}{
		// The wording after the privilege's key is config.ValidatePrivileges'.
		{"roster", "localhost", "pubsub.localhost", config.Privileges{Roster: "all"},
			[]string{prefix + "/privileges/localhost/pubsub.localhost", `roster: "all"`}},
		{"two problems", "localhost", "pubsub.localhost", config.Privileges{Roster: "all", Message: "incoming"},
			[]string{`roster: "all"`, `; message: "incoming"`}},
		{"presence", "localhost", "pubsub.localhost", config.Privileges{Presence: "all"}, []string{`presence: "all"`}},
		{"iq", "localhost", "pubsub.localhost", config.Privileges{IQ: map[string]string{"urn:x": "write"}}, []string{`iq.urn:x: "write"`}},
		{"iq empty ns", "localhost", "pubsub.localhost", config.Privileges{IQ: map[string]string{"": "get"}}, []string{"empty namespace"}},
		{"empty host", " ", "pubsub.localhost", config.Privileges{}, []string{"empty host"}},
		{"empty component", "localhost", "", config.Privileges{}, []string{"empty component"}},
		{"host with a local part", "a@localhost", "pubsub.localhost", config.Privileges{}, []string{`host "a@localhost" must be a domain`}},
		{"component with a resource", "localhost", "pubsub.localhost/r", config.Privileges{}, []string{`component "pubsub.localhost/r" must be a domain`}},
		{"component with a slash only", "localhost", "pubsub.localhost/", config.Privileges{}, []string{`component "pubsub.localhost/"`}},
		{"not a JID", "localhost", "a b", config.Privileges{}, []string{`component "a b" is not a JID`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Set(ctx, tc.host, tc.comp, tc.p)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Set = %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if err := s.Remove(ctx, "localhost", "a@b"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Remove of a bad component: %v", err)
	}
	if resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Fatalf("refused entries were written: %v %v", resp, err)
	}
}

func TestListReportsInvalid(t *testing.T) {
	s, cli, prefix := testStore(t)
	ctx := etcdtest.Context(t)
	if err := s.Set(ctx, "localhost", "good.localhost", config.Privileges{Roster: "set"}); err != nil {
		t.Fatal(err)
	}
	p := prefix + "/privileges/"
	bad := map[string]string{
		p + "localhost/badjson.localhost":   `{"roster":`,
		p + "localhost/unknown.localhost":   `{"rooster":"both"}`,
		p + "localhost/invalid.localhost":   `{"roster":"all"}`,
		p + "localhost/array.localhost":     `["both"]`,
		p + "localhost/trailing.localhost":  `{} {}`,
		p + "LocalHost/upper.localhost":     `{}`,
		p + "localhost/a@local.localhost":   `{}`,
		p + "localhost/deep.localhost/more": `{}`,
		p + "localhost":                     `{}`,
		p + "localhost/":                    `{}`,
	}
	for k, v := range bad {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	m, _, invalid, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]config.Privileges{"localhost": {"good.localhost": {Roster: "set"}}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("List = %+v", m)
	}
	if len(invalid) != len(bad) {
		t.Fatalf("%d invalid entries reported, want %d: %v", len(invalid), len(bad), invalid)
	}
	// Every report names its key.
	for k := range bad {
		found := false
		for _, e := range invalid {
			if strings.Contains(e.Error(), fmt.Sprintf("%q", k)) {
				found = true
			}
		}
		if !found {
			t.Errorf("no report names %s: %v", k, invalid)
		}
	}
}
