package delegation

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every pending IQ ends exactly once, whichever of reply, timeout and connection loss
// comes first, even when they race.
func TestTrackerExactlyOnce(t *testing.T) {
	var timeouts atomic.Int64
	tr := NewTracker[int]("n1", 5*time.Millisecond, func(*Pending[int]) { timeouts.Add(1) })
	const n = 2000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = tr.NewID()
		tr.Add(&Pending[int]{Request: Request{OuterID: ids[i], Via: "conn" + string(rune('a'+i%3))}})
	}
	var taken, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for _, id := range ids {
			if _, ok := tr.Take(id); ok {
				taken.Add(1)
			}
		}
	}()
	go func() {
		defer wg.Done()
		failed.Add(int64(len(tr.FailVia("conna"))))
	}()
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for taken.Load()+failed.Load()+timeouts.Load() != n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // any duplicate timeout would land by now
	if got := taken.Load() + failed.Load() + timeouts.Load(); got != n {
		t.Fatalf("taken %d + failed %d + timed out %d = %d, want %d", taken.Load(), failed.Load(), timeouts.Load(), got, n)
	}
	if tr.Len() != 0 {
		t.Fatalf("%d left", tr.Len())
	}
	for _, via := range []string{"conna", "connb", "connc"} {
		if o := tr.Outstanding(via); o != 0 {
			t.Fatalf("%s outstanding %d", via, o)
		}
	}
}

func TestOuterIDsNameTheirNode(t *testing.T) {
	tr := NewTracker[int]("node:with:colons", time.Second, nil)
	id := tr.NewID()
	if NodeOf(id) != "node:with:colons" || !tr.Owns(id) {
		t.Fatalf("id %q → node %q", id, NodeOf(id))
	}
	if NodeOf("plain-id") != "" || NewTracker[int]("other", time.Second, nil).Owns(id) {
		t.Fatal("foreign ids")
	}
	if tr.NewID() == id {
		t.Fatal("ids repeat")
	}
}

// A pending IQ times out after the timeout, within the sweeper's tick, and not before;
// the sweeper stops when nothing is pending and starts again with the next IQ.
func TestTrackerTimeoutBounds(t *testing.T) {
	const timeout = 80 * time.Millisecond
	timedOut := make(chan time.Duration, 10)
	tr := NewTracker[int]("n1", timeout, func(p *Pending[int]) { timedOut <- time.Since(p.Started) })
	for round := range 2 {
		tr.Add(&Pending[int]{Request: Request{OuterID: tr.NewID(), Via: "c"}})
		select {
		case d := <-timedOut:
			if d < timeout || d > timeout+tr.tick+200*time.Millisecond {
				t.Fatalf("round %d: timed out after %v, want %v to %v", round, d, timeout, timeout+tr.tick)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: no timeout", round)
		}
		deadline := time.Now().Add(5 * time.Second)
		for tr.sweeping.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the sweeper kept running with nothing pending")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if tr.Len() != 0 || tr.Outstanding("c") != 0 {
		t.Fatalf("left: %d pending, %d outstanding", tr.Len(), tr.Outstanding("c"))
	}
}

// One delegated IQ's bookkeeping: Add when it is forwarded, Take when the answer comes.
func BenchmarkTrackerAddTake(b *testing.B) {
	tr := NewTracker[int]("n1", 30*time.Second, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := tr.NewID()
			tr.Add(&Pending[int]{Request: Request{OuterID: id, Via: "c"}})
			if _, ok := tr.Take(id); !ok {
				b.Fatal("not pending")
			}
		}
	})
}

// A connection with IQs waiting that answers none for StallAfter is reported stalled;
// one that answers is not; an answer, or nothing left waiting, ends the stall.
func TestTrackerStalls(t *testing.T) {
	tr := NewTracker[int]("n1", time.Second, nil) // sweeps every 62.5 ms
	tr.StallAfter = 200 * time.Millisecond
	verdicts := make(chan []string, 16)
	tr.OnStall = func(s []string) { verdicts <- s }
	add := func(via string) string {
		id := tr.NewID()
		tr.Add(&Pending[int]{Request: Request{OuterID: id, Via: via}})
		return id
	}
	hung := add("hung")
	start := time.Now()
	stop := make(chan struct{})
	go func() { // "busy" answers every 20 ms and always has one waiting
		id := add("busy")
		for {
			select {
			case <-stop:
				tr.Take(id)
				return
			case <-time.After(20 * time.Millisecond):
			}
			next := add("busy")
			tr.Take(id)
			id = next
		}
	}()
	defer close(stop)
	next := func() []string {
		select {
		case v := <-verdicts:
			return v
		case <-time.After(2 * time.Second):
			t.Fatal("no verdict")
			return nil
		}
	}
	if v := next(); len(v) != 1 || v[0] != "hung" {
		t.Fatalf("stalled: %v", v)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 400*time.Millisecond {
		t.Fatalf("stalled after %v (StallAfter 200ms, tick 62.5ms)", d)
	}
	tr.Take(hung)
	if v := next(); len(v) != 0 {
		t.Fatalf("after its answer: %v", v)
	}
	add("hung")
	if v := next(); len(v) != 1 || v[0] != "hung" {
		t.Fatalf("stalled again: %v", v)
	}
	tr.FailVia("hung")
	if v := next(); len(v) != 0 {
		t.Fatalf("after it went away: %v", v)
	}
}
