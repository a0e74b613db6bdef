package bench

import (
	"strconv"
	"testing"
)

func TestS2SID(t *testing.T) {
	for _, c := range []struct {
		dir  byte
		pair int
		seq  uint64
	}{{'f', 0, 0}, {'r', 7, 123456789}, {'f', 1234, 1<<64 - 1}} {
		id := appendS2SIDPrefix(nil, c.dir, c.pair)
		id = strconv.AppendUint(id, c.seq, 10)
		dir, pair, seq, ok := parseS2SID(id)
		if !ok || dir != c.dir || pair != c.pair || seq != c.seq {
			t.Fatalf("%s: got %c %d %d %v", id, dir, pair, seq, ok)
		}
	}
	for _, bad := range []string{"", "f", "f0.", "x0.1", "f.1", "fa.1", "f1.b", "f1", "w1a2b3", "m0.1", "f-1.2", "f99999999999.1"} {
		if _, _, _, ok := parseS2SID([]byte(bad)); ok {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestOrderCheck(t *testing.T) {
	var o orderCheck
	for _, s := range []uint64{0, 1, 3, 2, 4, 4, 7, 5, 6, 8} { // a loss (none), two late
		o.see(s)
	}
	if o.late != 3 || o.max != 8 {
		t.Fatalf("late %d max %d, want 3 and 8", o.late, o.max)
	}
	var p orderCheck
	for _, s := range []uint64{5, 9, 10} { // gaps are losses, not disorder
		p.see(s)
	}
	if p.late != 0 {
		t.Fatalf("late %d, want 0", p.late)
	}
}
