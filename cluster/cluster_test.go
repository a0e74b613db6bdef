package cluster

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/hashicorp/memberlist"
)

// Rendezvous ownership: spread over the members, and when a member leaves only its own
// keys move.
func TestOwnerSpreadAndStability(t *testing.T) {
	members := map[string]Member{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node%d", i)
		members[id] = Member{ID: id}
	}
	before := map[string]string{}
	count := map[string]int{}
	for i := 0; i < 3000; i++ {
		k := fmt.Sprintf("user%d@localhost", i)
		o := ownerOf(members, k).ID
		before[k] = o
		count[o]++
	}
	for id, c := range count {
		if c < 800 || c > 1200 {
			t.Fatalf("uneven spread: %s owns %d of 3000 (%v)", id, c, count)
		}
	}
	delete(members, "node3")
	moved := 0
	for k, o := range before {
		n := ownerOf(members, k).ID
		if o != "node3" && n != o {
			t.Fatalf("%s moved from %s to %s though its owner stayed", k, o, n)
		}
		if o == "node3" {
			moved++
		}
	}
	if moved != count["node3"] {
		t.Fatalf("moved %d, want %d", moved, count["node3"])
	}
}

func TestNodeStateOrder(t *testing.T) {
	a := nodeState{Incarnation: 1, Version: 9}
	b := nodeState{Incarnation: 2, Version: 1} // restarted node
	if !b.newer(a) || a.newer(b) || a.newer(a) {
		t.Fatal("incarnation must win over version")
	}
	added, removed := diff([]ComponentEntry{{Node: "n", PID: "1"}, {Node: "n", PID: "2"}}, []ComponentEntry{{Node: "n", PID: "2"}, {Node: "n", PID: "3"}})
	if len(added) != 1 || added[0].PID != "3" || len(removed) != 1 || removed[0].PID != "1" {
		t.Fatalf("diff: +%v -%v", added, removed)
	}
}

// recorder is a Listener that writes down what it is told.
type recorder struct{ events []string }

func (r *recorder) ComponentsChanged(added, removed []ComponentEntry) {
	for _, e := range added {
		r.events = append(r.events, "+"+e.Key())
	}
	for _, e := range removed {
		r.events = append(r.events, "-"+e.Key())
	}
}
func (r *recorder) MembersChanged([]Member, []string) {}
func (r *recorder) NodeDraining(node string, w []ComponentEntry) {
	r.events = append(r.events, fmt.Sprintf("draining %s %d", node, len(w)))
}
func (r *recorder) NodeRestarted(node string, inc int64) {
	r.events = append(r.events, fmt.Sprintf("restarted %s %d", node, inc))
}

func (r *recorder) take() string {
	s := fmt.Sprint(r.events)
	r.events = nil
	return s
}

// A node's new run is told apart from its earlier one whichever way the news comes
// first (its memberlist metadata, or its state), and what the earlier run announced is
// dropped once; a stale copy of the earlier run's state changes nothing; a draining state
// is reported once.
func TestRestartAndDrainingEvents(t *testing.T) {
	node := func(name string, inc int64) *memberlist.Node {
		b, _ := json.Marshal(meta{ID: name, Remote: name + ":1", Inc: inc})
		return &memberlist.Node{Name: name, Meta: b}
	}
	state := func(inc int64, ver uint64, pids ...string) []nodeState {
		st := nodeState{Node: "b", Incarnation: inc, Version: ver}
		for _, p := range pids {
			st.Components = append(st.Components, ComponentEntry{Domain: "c", Node: "b", PID: p})
		}
		return []nodeState{st}
	}
	for _, metaFirst := range []bool{true, false} {
		rec := &recorder{}
		c := New(Config{NodeID: "a", Incarnation: 1}, slog.New(slog.DiscardHandler))
		c.listener = rec
		c.memberJoined(node("b", 10))
		c.merge(state(10, 1, "x", "y"))
		if got := rec.take(); got != "[+b/x +b/y]" {
			t.Fatalf("first run: %s", got)
		}
		if metaFirst {
			c.memberJoined(node("b", 20))
			if got := rec.take(); got != "[-b/x -b/y restarted b 20]" {
				t.Fatalf("the new run's metadata: %s", got)
			}
			c.merge(state(20, 1, "z"))
		} else {
			c.merge(state(20, 1, "z"))
			if got := rec.take(); got != "[+b/z -b/x -b/y restarted b 20]" {
				t.Fatalf("the new run's state: %s", got)
			}
			c.memberJoined(node("b", 20))
		}
		rec.take()
		c.merge(state(10, 7, "x")) // the earlier run's state, gossiped late by a third node
		if got := rec.take(); got != "[]" {
			t.Fatalf("a stale state: %s", got)
		}
		st := state(20, 2, "z")
		st[0].Draining = true
		c.merge(st)
		c.merge(st)
		if got := rec.take(); got != "[draining b 1]" {
			t.Fatalf("draining: %s", got)
		}
	}
	// A state that comes before its node is seen to join is kept until it is.
	rec := &recorder{}
	c := New(Config{NodeID: "a", Incarnation: 1}, slog.New(slog.DiscardHandler))
	c.listener = rec
	c.merge(state(30, 1, "w"))
	if got := rec.take(); got != "[]" {
		t.Fatalf("before the join: %s", got)
	}
	c.memberJoined(node("b", 30))
	if got := rec.take(); got != "[+b/w]" {
		t.Fatalf("at the join: %s", got)
	}
}
