package bench

import (
	"strconv"
	"testing"
	"time"
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

// The report keeps the first error of each kind, across merged workers.
func TestFirstErrors(t *testing.T) {
	var a, b, total Stats
	a.Err(ErrTimeout, 3, "lost")
	b.Err(ErrErrorReply, 1, "<message type='error'/>")
	b.Err(ErrTimeout, 1, "lost later")
	total.Merge(&a)
	total.Merge(&b)
	var r Result
	r.fill(&total, measured{elapsed: time.Second})
	if r.Errors != 5 || r.FirstError != "timeout: lost" || len(r.FirstErrors) != 2 ||
		r.FirstErrors[ErrTimeout] != "lost" || r.FirstErrors[ErrErrorReply] != "<message type='error'/>" {
		t.Fatalf("%+v", r)
	}
	var one Stats
	one.Err(ErrTimeout, 2, "x")
	r = Result{}
	r.fill(&one, measured{elapsed: time.Second})
	if r.FirstErrors != nil {
		t.Fatalf("one kind: first_errors %v, want none (first_error says it)", r.FirstErrors)
	}
}
