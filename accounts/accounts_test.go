package accounts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/internal/etcdtest"
)

func TestMain(m *testing.M) { etcdtest.Main(m, "accounts-test") }

// newStore returns a Store under a prefix of its own, with its client and prefix.
func newStore(t *testing.T) (*Store, *clientv3.Client, string) { return etcdtest.Store(t, New) }

func startCache(t *testing.T, s *Store) *Cache {
	t.Helper()
	c := NewCache(s, etcdtest.Log())
	if err := c.Start(etcdtest.Context(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func TestAddGetListRemove(t *testing.T) {
	s, cli, prefix := newStore(t)
	ctx := etcdtest.Context(t)
	for _, u := range []string{"carol", "Alice", "bob"} {
		if err := s.Add(ctx, "localhost", u, "pw-"+u, 4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(ctx, "example.org", "dave", "pw", 0); err != nil {
		t.Fatal(err)
	}
	users, err := s.List(ctx, "LocalHost")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice", "bob", "carol"}; !slices.Equal(users, want) {
		t.Fatalf("List = %v, want %v", users, want)
	}
	if users, _ := s.List(ctx, "nobody.example"); len(users) != 0 {
		t.Fatalf("List of empty host = %v", users)
	}

	a, err := s.Get(ctx, "localhost", "ALICE")
	if err != nil {
		t.Fatal(err)
	}
	if a.Host != "localhost" || a.Localpart != "alice" {
		t.Fatalf("Get = %+v", a)
	}
	for _, m := range []string{SCRAMSHA1, SCRAMSHA256} {
		c, ok := a.SCRAM[m]
		if !ok || len(c.Salt) != 16 || c.Iterations != 4096 || len(c.SaltedPassword) == 0 {
			t.Fatalf("%s credential = %+v", m, c)
		}
	}
	if bytes.Equal(a.SCRAM[SCRAMSHA1].Salt, a.SCRAM[SCRAMSHA256].Salt) {
		t.Fatal("salts shared between mechanisms")
	}

	// The stored value has the documented shape and no plain password.
	resp, err := cli.Get(ctx, prefix+"/accounts/localhost/alice")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw get: %v %v", resp, err)
	}
	raw := resp.Kvs[0].Value
	if bytes.Contains(raw, []byte("pw-Alice")) {
		t.Fatalf("plain password stored: %s", raw)
	}
	var shape map[string]map[string]map[string]any
	if err := json.Unmarshal(raw, &shape); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"SCRAM-SHA-1", "SCRAM-SHA-256"} {
		c := shape["scram"][m]
		if _, ok := c["salt"].(string); !ok {
			t.Fatalf("%s: salt missing in %s", m, raw)
		}
		if _, ok := c["salted_password"].(string); !ok {
			t.Fatalf("%s: salted_password missing in %s", m, raw)
		}
		if c["iterations"] != float64(4096) {
			t.Fatalf("%s: iterations in %s", m, raw)
		}
	}

	if err := s.Remove(ctx, "localhost", "Bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "localhost", "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get removed = %v, want ErrNotFound", err)
	}
	if err := s.Remove(ctx, "localhost", "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove twice = %v, want ErrNotFound", err)
	}
	users, _ = s.List(ctx, "localhost")
	if want := []string{"alice", "carol"}; !slices.Equal(users, want) {
		t.Fatalf("List = %v, want %v", users, want)
	}
}

func TestDuplicateAndSet(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := etcdtest.Context(t)
	if err := s.Add(ctx, "localhost", "alice", "one", 4096); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, "localhost", "ALICE", "two", 4096); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate Add = %v, want ErrExists", err)
	}
	a, _ := s.Get(ctx, "localhost", "alice")
	if !a.VerifyPassword("one") {
		t.Fatal("duplicate Add changed the password")
	}
	if err := s.Set(ctx, "localhost", "alice", "two", 4096); err != nil {
		t.Fatal(err)
	}
	a, _ = s.Get(ctx, "localhost", "alice")
	if !a.VerifyPassword("two") || a.VerifyPassword("one") {
		t.Fatal("Set did not replace the password")
	}
	if err := s.Set(ctx, "localhost", "nobody", "x", 4096); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Set of missing account = %v, want ErrNotFound", err)
	}
}

func TestInvalid(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := etcdtest.Context(t)
	for _, tc := range []struct{ host, local, pw string }{
		{"localhost", "", "pw"},
		{"localhost", "a@b", "pw"},
		{"localhost", "a/b", "pw"},
		{"localhost", "a b", "pw"},
		{"localhost", "a:b", "pw"},
		{"", "alice", "pw"},
		{"localhost", "alice", ""},
		{"localhost", strings.Repeat("x", 1100), "pw"},
	} {
		if err := s.Add(ctx, tc.host, tc.local, tc.pw, 4096); !errors.Is(err, ErrInvalid) {
			t.Errorf("Add(%q, %q, %q) = %v, want ErrInvalid", tc.host, tc.local, tc.pw, err)
		}
	}
	if err := s.Add(ctx, "localhost", "alice", "pw", 1000); !errors.Is(err, ErrInvalid) {
		t.Errorf("Add with 1000 iterations = %v, want ErrInvalid", err)
	}
	if _, err := s.Get(ctx, "localhost", "a@b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Get invalid = %v", err)
	}
	if err := s.Remove(ctx, "localhost", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Remove invalid = %v", err)
	}
	if _, err := s.List(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("List invalid = %v", err)
	}
	if _, err := NewCredentials("", 4096); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewCredentials empty = %v", err)
	}
}

func TestParseUser(t *testing.T) {
	host, local, err := ParseUser("Alice@LocalHost")
	if err != nil || host != "localhost" || local != "alice" {
		t.Fatalf("ParseUser = %q %q %v", host, local, err)
	}
	for _, bad := range []string{"", "localhost", "@localhost", "alice@localhost/res", "a@b@c", "alice@"} {
		if _, _, err := ParseUser(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseUser(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestVerifyPassword(t *testing.T) {
	creds, err := NewCredentials("correct horse", 4096)
	if err != nil {
		t.Fatal(err)
	}
	a := &Account{Host: "localhost", Localpart: "alice", SCRAM: creds}
	if !a.VerifyPassword("correct horse") {
		t.Fatal("right password rejected")
	}
	for _, wrong := range []string{"", "correct horse ", "Correct horse", "wrong"} {
		if a.VerifyPassword(wrong) {
			t.Fatalf("wrong password %q accepted", wrong)
		}
	}
	// Only SHA-1 stored (e.g. imported): still verifiable.
	sha1Only := &Account{SCRAM: map[string]Credential{SCRAMSHA1: creds[SCRAMSHA1]}}
	if !sha1Only.VerifyPassword("correct horse") || sha1Only.VerifyPassword("nope") {
		t.Fatal("SHA-1 fallback broken")
	}
	if (&Account{}).VerifyPassword("x") || (*Account)(nil).VerifyPassword("x") {
		t.Fatal("empty account accepted a password")
	}
	// Non-ASCII passwords are prepared (OpaqueString: NFC), so both spellings match.
	creds, err = NewCredentials("caf\u00e9", 4096)
	if err != nil {
		t.Fatal(err)
	}
	b := &Account{SCRAM: creds}
	if !b.VerifyPassword("cafe\u0301") {
		t.Fatal("password not normalized")
	}
}

// scramLogin runs a SCRAM exchange between mellium's client and server. It returns
// the server step (1: first message, 2: proof) that failed, or 0 on success.
func scramLogin(t *testing.T, mech sasl.Mechanism, fetch sasl.SaltedCredentialsFetcher, user, pw string) (int, error) {
	t.Helper()
	client := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(pw), nil
	}))
	server := sasl.NewServer(mech, nil, sasl.SaltedCredentials(fetch))
	_, clientFirst, err := client.Step(nil)
	if err != nil {
		t.Fatalf("client first: %v", err)
	}
	_, serverFirst, err := server.Step(clientFirst)
	if err != nil {
		return 1, err
	}
	_, clientFinal, err := client.Step(serverFirst)
	if err != nil {
		t.Fatalf("client final: %v", err)
	}
	_, serverFinal, err := server.Step(clientFinal)
	if err != nil {
		return 2, err
	}
	if _, _, err := client.Step(serverFinal); err != nil {
		t.Fatalf("client rejects server signature: %v", err)
	}
	return 0, nil
}

func TestSCRAMRoundTrip(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := etcdtest.Context(t)
	if err := s.Add(ctx, "localhost", "alice", "s3cret", 4096); err != nil {
		t.Fatal(err)
	}
	c := startCache(t, s)
	etcdtest.Eventually(t, 5*time.Second, "alice in cache", func() bool { return c.Exists("localhost", "alice") })
	fetch := c.Fetcher("localhost")

	for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1} {
		t.Run(mech.Name, func(t *testing.T) {
			if step, err := scramLogin(t, mech, fetch, "alice", "s3cret"); err != nil {
				t.Fatalf("right password failed at step %d: %v", step, err)
			}
			if step, err := scramLogin(t, mech, fetch, "Alice", "s3cret"); err != nil {
				t.Fatalf("unnormalized user name failed at step %d: %v", step, err)
			}
			if step, err := scramLogin(t, mech, fetch, "alice", "wrong"); step != 2 {
				t.Fatalf("wrong password: step %d, err %v; want failure at the proof", step, err)
			}
			if step, err := scramLogin(t, mech, fetch, "mallory", "s3cret"); step != 2 {
				t.Fatalf("unknown user: step %d, err %v; want failure only at the proof", step, err)
			}
		})
	}
}

func TestFetcherUnknownUserLooksReal(t *testing.T) {
	s, _, _ := newStore(t)
	c := startCache(t, s)
	fetch := c.Fetcher("localhost")
	salt1, sp1, it1, err := fetch([]byte("mallory"), nil, "SCRAM-SHA-256")
	if err != nil {
		t.Fatal(err)
	}
	salt2, sp2, it2, err := fetch([]byte("Mallory"), nil, "SCRAM-SHA-256")
	if err != nil {
		t.Fatal(err)
	}
	if len(salt1) != 16 || !bytes.Equal(salt1, salt2) {
		t.Fatalf("fake salt not stable: %x %x", salt1, salt2)
	}
	if it1 != DefaultIterations || it2 != it1 {
		t.Fatalf("fake iterations %d %d", it1, it2)
	}
	if len(sp1) != 32 || bytes.Equal(sp1, sp2) {
		t.Fatal("fake salted password should be random and hash-sized")
	}
	other, _, _, _ := fetch([]byte("eve"), nil, "SCRAM-SHA-256")
	if bytes.Equal(other, salt1) {
		t.Fatal("fake salts equal for different users")
	}
	sha1Salt, sp, _, _ := fetch([]byte("mallory"), nil, "SCRAM-SHA-1")
	if bytes.Equal(sha1Salt, salt1) || len(sp) != 20 {
		t.Fatal("fake SHA-1 credential looks different from a real one")
	}
	// Another cache (another process) has another key.
	c2 := NewCache(s, nil)
	salt3, _, _, _ := c2.Fetcher("localhost")([]byte("mallory"), nil, "SCRAM-SHA-256")
	if bytes.Equal(salt3, salt1) {
		t.Fatal("fake salt predictable across caches")
	}
}

func TestCacheFollowsStore(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := etcdtest.Context(t)
	if err := s.Add(ctx, "localhost", "early", "pw", 4096); err != nil {
		t.Fatal(err)
	}
	c := startCache(t, s)
	if !c.Exists("localhost", "early") {
		t.Fatal("account added before Start not loaded")
	}
	if c.Exists("localhost", "late") {
		t.Fatal("unknown account exists")
	}
	if err := s.Add(ctx, "localhost", "late", "pw1", 4096); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 5*time.Second, "added account visible", func() bool { return c.Exists("localhost", "late") })
	if a, ok := c.Lookup("LOCALHOST", "Late"); !ok || a.Localpart != "late" || !a.VerifyPassword("pw1") {
		t.Fatalf("Lookup = %+v %v", a, ok)
	}
	if err := s.Set(ctx, "localhost", "late", "pw2", 4096); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 5*time.Second, "new password visible", func() bool {
		a, ok := c.Lookup("localhost", "late")
		return ok && a.VerifyPassword("pw2")
	})
	if err := s.Remove(ctx, "localhost", "late"); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 5*time.Second, "removed account gone", func() bool { return !c.Exists("localhost", "late") })
	if !c.Exists("localhost", "early") {
		t.Fatal("unrelated account lost")
	}
	if c.Exists("otherhost", "early") {
		t.Fatal("account visible under another host")
	}
}

func TestCacheConcurrentReads(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := etcdtest.Context(t)
	c := startCache(t, s)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fetch := c.Fetcher("localhost")
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Exists("localhost", "u3")
				_, _, _, _ = fetch([]byte("u5"), nil, "SCRAM-SHA-256")
			}
		}()
	}
	for i := 0; i < 10; i++ {
		if err := s.Add(ctx, "localhost", fmt.Sprintf("u%d", i), "pw", 4096); err != nil {
			t.Fatal(err)
		}
	}
	etcdtest.Eventually(t, 5*time.Second, "all accounts visible", func() bool { return c.Exists("localhost", "u9") })
	close(stop)
	wg.Wait()
}

// The cache keeps answering while etcd is unreachable and catches up once it is back,
// here after the history it missed was compacted, so it has to reload.
func TestCacheSurvivesEtcdOutage(t *testing.T) {
	_, direct, prefix := newStore(t)
	ctx := etcdtest.Context(t)
	p, viaProxy := etcdtest.Proxy(t)
	s := New(viaProxy, prefix)
	if err := s.Add(ctx, "localhost", "before", "pw", 4096); err != nil {
		t.Fatal(err)
	}
	c := startCache(t, s)
	if !c.Exists("localhost", "before") {
		t.Fatal("not loaded")
	}

	p.Cut()
	s2 := New(direct, prefix)
	if err := s2.Add(ctx, "localhost", "after", "pw", 4096); err != nil {
		t.Fatal(err)
	}
	if err := s2.Remove(ctx, "localhost", "before"); err != nil {
		t.Fatal(err)
	}
	etcdtest.Compact(t, ctx, direct, prefix+"-marker")
	if !c.Exists("localhost", "before") || c.Exists("localhost", "after") {
		t.Fatal("cache changed while etcd was unreachable")
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 20*time.Second, "cache caught up after the outage", func() bool {
		return c.Exists("localhost", "after") && !c.Exists("localhost", "before")
	})
}

func TestCacheStartFailsWithoutEtcd(t *testing.T) {
	c := NewCache(New(etcdtest.Unreachable(t), "/sb"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := c.Start(ctx); err == nil {
		t.Fatal("Start without etcd succeeded")
	}
	_ = c.Stop(context.Background()) // harmless when not started
}

// PLAIN costs an unknown user the same PBKDF2 run as a real one, so the answer's timing
// does not tell which accounts exist (issue 17).
func TestVerifyPlainTiming(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := etcdtest.Context(t)
	if err := s.Add(ctx, "localhost", "alice", "right", 8192); err != nil {
		t.Fatal(err)
	}
	c := startCache(t, s)
	etcdtest.Eventually(t, 5*time.Second, "alice in cache", func() bool { return c.Exists("localhost", "alice") })
	if !c.VerifyPlain("localhost", "alice", "right") || c.VerifyPlain("localhost", "alice", "wrong") ||
		c.VerifyPlain("localhost", "nobody", "right") {
		t.Fatal("VerifyPlain answers wrong")
	}
	median := func(user string) time.Duration {
		var ds []time.Duration
		for range 15 {
			start := time.Now()
			c.VerifyPlain("localhost", user, "wrong")
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	known, unknown := median("alice"), median("nobody")
	if unknown < known/3 {
		t.Fatalf("an unknown user is answered in %v, a known one in %v", unknown, known)
	}
}

// accounts.max_scram_iterations: a stored credential with more iterations is not used,
// by PLAIN or SCRAM, so no login attempt costs more than the bound.
func TestMaxIterations(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := etcdtest.Context(t)
	if err := s.Add(ctx, "localhost", "heavy", "pw", 50000); err != nil {
		t.Fatal(err)
	}
	c := startCache(t, s)
	etcdtest.Eventually(t, 5*time.Second, "heavy in cache", func() bool { return c.Exists("localhost", "heavy") })
	if !c.VerifyPlain("localhost", "heavy", "pw") {
		t.Fatal("within the bound (none set): refused")
	}
	c.SetMaxIterations(10000)
	if c.VerifyPlain("localhost", "heavy", "pw") {
		t.Fatal("over the bound: accepted")
	}
	_, _, iters, err := c.Fetcher("localhost")([]byte("heavy"), nil, SCRAMSHA256)
	if err != nil || iters > 10000 {
		t.Fatalf("SCRAM offered %d iterations (%v)", iters, err)
	}
}
