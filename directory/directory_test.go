package directory

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/config"
)

// sess is a stand-in session: it records what it is sent.
type sess struct {
	name string
	mu   sync.Mutex
	got  []string
}

func (s *sess) Send(b []byte) { s.mu.Lock(); s.got = append(s.got, string(b)); s.mu.Unlock() }

type remote struct{ got []string }

func (r *remote) Deliver(pid *actor.PID, b []byte) { r.got = append(r.got, pid.Id+":"+string(b)) }

func TestHandleSend(t *testing.T) {
	s := &sess{name: "a"}
	rem := &remote{}
	pid := actor.NewPID("n2:1", "a1")
	On(s, actor.NewPID("n1:1", "s1")).Send(rem, []byte("local"))
	At[*sess](pid).Send(rem, []byte("remote"))
	Handle[*sess]{}.Send(rem, []byte("nobody"))
	On(s, nil).Send(rem, nil)
	if !slices.Equal(s.got, []string{"local"}) || !slices.Equal(rem.got, []string{"a1:remote"}) {
		t.Fatalf("local got %q, remote got %q", s.got, rem.got)
	}
	if !At[*sess](pid).SamePID(At[*sess](actor.NewPID("n2:1", "a1"))) || At[*sess](pid).SamePID(Handle[*sess]{}) {
		t.Fatal("SamePID")
	}
}

func TestSessions(t *testing.T) {
	tbl := NewSessions[*sess]()
	a1, a2, b := &sess{name: "a1"}, &sess{name: "a2"}, &sess{name: "b"}
	tbl.Bind("a@x", "r1", a1)
	tbl.Bind("a@x", "r2", a2)
	tbl.Bind("b@x", "r1", b)
	if s, ok := tbl.Lookup("a@x", "r2"); !ok || s != a2 {
		t.Fatalf("Lookup a@x/r2 = %v, %v", s, ok)
	}
	if _, ok := tbl.Lookup("a@x", "r3"); ok {
		t.Fatal("found a resource never bound")
	}
	tbl.Unbind("a@x", "r1", a2) // not the session bound there: stays
	if s, _ := tbl.Lookup("a@x", "r1"); s != a1 {
		t.Fatal("Unbind removed another session's binding")
	}
	tbl.Unbind("a@x", "r1", a1)
	if n := len(tbl.Of("a@x")); n != 1 {
		t.Fatalf("a@x has %d sessions, want 1", n)
	}
	if n := len(tbl.All()); n != 2 {
		t.Fatalf("All: %d sessions, want 2", n)
	}
}

func TestOwners(t *testing.T) {
	o := NewOwners[*sess]()
	add := func(bare, res string, avail bool, node string) {
		o.Do(bare, func(r Resources[*sess]) Resources[*sess] {
			if r == nil {
				r = Resources[*sess]{}
			}
			r[res] = &Entry[*sess]{Handle: At[*sess](actor.NewPID(node, res)), Node: node, Available: avail}
			return r
		})
	}
	add("a@x", "r1", true, "n1")
	add("a@x", "r2", true, "n2")
	add("a@x", "r3", false, "n2")
	add("b@y", "r1", true, "n2")
	o.Do("a@x", func(r Resources[*sess]) Resources[*sess] {
		others := r.Available("r1")
		if len(others) != 1 || others[0].Res != "r2" || others[0].Full("a@x") != "a@x/r2" {
			t.Fatalf("Available except r1: %v", others)
		}
		return r
	})
	var hostUsers []string
	o.RangeHost("x", func(bare string, _ Resources[*sess]) { hostUsers = append(hostUsers, bare) })
	if !slices.Equal(hostUsers, []string{"a@x"}) {
		t.Fatalf("users of host x: %v", hostUsers)
	}
	// Node n2 leaves: its entries go; a user left with none is dropped.
	o.Range(func(bare string, r Resources[*sess]) bool {
		for name, e := range r {
			if e.Node == "n2" {
				delete(r, name)
			}
		}
		return true
	})
	var left []string
	o.Range(func(bare string, r Resources[*sess]) bool {
		for name := range r {
			left = append(left, bare+"/"+name)
		}
		return true
	})
	if !slices.Equal(left, []string{"a@x/r1"}) {
		t.Fatalf("left after n2 went: %v", left)
	}
	o.Do("a@x", func(Resources[*sess]) Resources[*sess] { return nil })
	o.Do("a@x", func(r Resources[*sess]) Resources[*sess] {
		if r != nil {
			t.Fatal("user not dropped")
		}
		return nil
	})
}

func TestComponents(t *testing.T) {
	c := NewComponents[*sess]()
	if _, ok := c.Pick("comp.x", config.BalanceRoundRobin, "", nil); ok {
		t.Fatal("picked a connection of a domain with none")
	}
	local := &sess{name: "local"}
	conns := []*Conn[*sess]{
		{Handle: On(local, actor.NewPID("n1", "c1")), Key: "n1/c1"},
		{Handle: At[*sess](actor.NewPID("n2", "c2")), Key: "n2/c2"},
		{Handle: At[*sess](actor.NewPID("n3", "c3")), Key: "n3/c3"},
	}
	for _, k := range conns {
		c.Add("comp.x", k)
	}
	count := map[string]int{}
	for range 30 {
		k, _ := c.Pick("comp.x", config.BalanceRoundRobin, "", nil)
		count[k.Key]++
	}
	if count["n1/c1"] != 10 || count["n2/c2"] != 10 || count["n3/c3"] != 10 {
		t.Fatalf("round-robin: %v", count)
	}
	pending := map[string]int64{"n1/c1": 5, "n2/c2": 1, "n3/c3": 3}
	for range 5 {
		if k, _ := c.Pick("comp.x", config.BalanceLeastPending, "", func(key string) int64 { return pending[key] }); k.Key != "n2/c2" {
			t.Fatalf("least-pending picked %s", k.Key)
		}
	}
	for i := range 20 {
		sender := fmt.Sprintf("user%d@x", i)
		first, _ := c.Pick("comp.x", config.BalanceSender, sender, nil)
		for range 3 {
			if k, _ := c.Pick("comp.x", config.BalanceSender, sender, nil); k != first {
				t.Fatalf("sender %s moved from %s to %s", sender, first.Key, k.Key)
			}
		}
	}
	if l := c.Locals("comp.x"); len(l) != 1 || l[0] != local {
		t.Fatalf("Locals: %v", l)
	}
	if !c.Remove("comp.x", "n2/c2") || c.Remove("comp.x", "n2/c2") {
		t.Fatal("Remove")
	}
	c.Remove("comp.x", "n1/c1")
	c.Remove("comp.x", "n3/c3")
	if _, ok := c.Pick("comp.x", config.BalanceRoundRobin, "", nil); ok || len(c.AllLocals()) != 0 {
		t.Fatal("a connection is left after all were removed")
	}
}

// A node whose transport failed: its connections are passed over until the mark expires
// or is lifted; local connections never are; with only such connections, nothing is
// picked.
func TestComponentsMarkDown(t *testing.T) {
	c := NewComponents[*sess]()
	local := &Conn[*sess]{Handle: On(&sess{name: "l"}, actor.NewPID("here:1", "l")), Key: "l"}
	far := &Conn[*sess]{Handle: At[*sess](actor.NewPID("there:1", "r")), Key: "r"}
	c.Add("comp", local)
	c.Add("comp", far)
	if at := c.MarkDown("there:1", time.Now().Add(time.Hour)); len(at) != 1 || at[0] != far {
		t.Fatalf("connections at the address: %v", at)
	}
	for range 10 {
		if k, ok := c.Pick("comp", "", "", nil); !ok || k != local {
			t.Fatalf("picked %v, %v with the remote one down", k, ok)
		}
	}
	if !c.IsDown(far) || c.IsDown(local) {
		t.Fatalf("IsDown: far %v, local %v", c.IsDown(far), c.IsDown(local))
	}
	c.MarkUp("there:1")
	if c.IsDown(far) {
		t.Fatal("still down after MarkUp")
	}
	seen := map[string]bool{}
	for range 10 {
		k, _ := c.Pick("comp", "", "", nil)
		seen[k.Key] = true
	}
	if !seen["r"] || !seen["l"] {
		t.Fatalf("after MarkUp, picked %v", seen)
	}
	only := NewComponents[*sess]()
	only.Add("comp", far)
	only.MarkDown("there:1", time.Now().Add(time.Hour))
	if k, ok := only.Pick("comp", "", "", nil); ok {
		t.Fatalf("picked %v at an unreachable node", k)
	}
	only.MarkDown("there:1", time.Now().Add(-time.Second)) // expired
	if _, ok := only.Pick("comp", "", "", nil); !ok {
		t.Fatal("an expired mark still passed the connection over")
	}
}

// A draining node's connections are withdrawn: picks pass them over while another
// connection is left, use them when only withdrawn ones are (better than refusing), never
// when they are also down; removing one forgets that it was withdrawn.
func TestComponentsWithdraw(t *testing.T) {
	c := NewComponents[*sess]()
	a := &Conn[*sess]{Handle: At[*sess](actor.NewPID("a:1", "x")), Key: "a/x"}
	b := &Conn[*sess]{Handle: At[*sess](actor.NewPID("b:1", "y")), Key: "b/y"}
	c.Add("comp", a)
	c.Add("comp", b)
	c.Withdraw([]string{"b/y"})
	if !b.Passed() || b.Removed() || a.Passed() {
		t.Fatalf("Passed: a %v, b %v", a.Passed(), b.Passed())
	}
	for _, policy := range []string{"", "least-pending", "sender"} {
		for i := range 10 {
			if k, ok := c.Pick("comp", policy, fmt.Sprint("u", i), func(string) int64 { return 0 }); !ok || k != a {
				t.Fatalf("%q picked %v, %v with b withdrawn", policy, k, ok)
			}
		}
	}
	c.Withdraw([]string{"a/x"})
	seen := map[string]bool{}
	for range 10 {
		k, ok := c.Pick("comp", "", "", nil)
		if !ok {
			t.Fatal("nothing picked with only withdrawn connections left")
		}
		seen[k.Key] = true
	}
	if !seen["a/x"] || !seen["b/y"] {
		t.Fatalf("with every connection withdrawn, picked %v", seen)
	}
	c.MarkDown("a:1", time.Now().Add(time.Hour))
	c.MarkDown("b:1", time.Now().Add(time.Hour))
	if k, ok := c.Pick("comp", "", "", nil); ok {
		t.Fatalf("picked %v, withdrawn and down", k)
	}
	c.Remove("comp", "b/y")
	if !b.Removed() {
		t.Fatal("a removed connection does not say so")
	}
	c.MarkUp("a:1")
	c.MarkUp("b:1")
	c.Remove("comp", "a/x")
	b2 := &Conn[*sess]{Handle: At[*sess](actor.NewPID("b:1", "y")), Key: "b/y"}
	c.Add("comp", b2) // the same key again: its withdrawal was forgotten with it
	c.Add("comp", &Conn[*sess]{Handle: At[*sess](actor.NewPID("c:1", "z")), Key: "c/z"})
	seen = map[string]bool{}
	for range 10 {
		k, _ := c.Pick("comp", "", "", nil)
		seen[k.Key] = true
	}
	if !seen["b/y"] || !seen["c/z"] {
		t.Fatalf("picked %v: the connection entered again is passed over", seen)
	}
}

// Stalled connections are passed over while another answers, and used when they are all
// that is left.
func TestComponentsStalled(t *testing.T) {
	c := NewComponents[*sess]()
	a := &Conn[*sess]{Handle: At[*sess](actor.NewPID("a:1", "x")), Key: "a/x"}
	b := &Conn[*sess]{Handle: At[*sess](actor.NewPID("b:1", "y")), Key: "b/y"}
	c.Add("comp", a)
	c.Add("comp", b)
	c.SetStalled([]string{"b/y"})
	for range 10 {
		if k, _ := c.Pick("comp", "", "", nil); k != a {
			t.Fatalf("picked %v with b stalled", k)
		}
	}
	c.SetStalled([]string{"a/x", "b/y"})
	if _, ok := c.Pick("comp", "", "", nil); !ok {
		t.Fatal("nothing picked with every connection stalled")
	}
	c.SetStalled(nil)
	seen := map[string]bool{}
	for range 10 {
		k, _ := c.Pick("comp", "", "", nil)
		seen[k.Key] = true
	}
	if len(seen) != 2 {
		t.Fatalf("after the stall, picked %v", seen)
	}
}
