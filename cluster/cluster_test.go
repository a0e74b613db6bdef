package cluster

import (
	"fmt"
	"testing"
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
