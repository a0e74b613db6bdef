package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		base     int
		headroom int64
		live     uint64
		want     int
	}{
		{100, 32 << 20, 8 << 20, 400},
		{100, 32 << 20, 64 << 20, 100}, // a large heap keeps GOGC
		{200, 32 << 20, 32 << 20, 200},
		{100, 0, 8 << 20, 100},     // no headroom
		{100, 32 << 20, 0, 100},    // nothing known yet
		{100, 1 << 40, 1, 100_000}, // bounded
		{50, 16 << 20, 16 << 20, 100},
	} {
		if got := Percent(c.base, c.headroom, c.live); got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.base, c.headroom, c.live, got, c.want)
		}
	}
}

func heap() (live, goal uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// collectUntil collects (up to 100 times) until the live heap and the heap goal, as the
// runtime reports them, satisfy ok; it returns the last ones read and whether they did.
func collectUntil(ok func(live, goal uint64) bool) (live, goal uint64, met bool) {
	for range 100 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond) // the pacer runs on the finalizer goroutine
		if live, goal = heap(); ok(live, goal) {
			return live, goal, true
		}
	}
	return live, goal, false
}

// waitGoal collects until the heap goal is at least the live heap plus headroom (less
// a margin for what changed since).
func waitGoal(t *testing.T, headroom uint64) {
	t.Helper()
	live, goal, met := collectUntil(func(live, goal uint64) bool { return goal >= live+headroom*9/10 })
	if !met {
		t.Fatalf("heap goal %d MiB for %d MiB live, want at least %d MiB more", goal>>20, live>>20, headroom>>20)
	}
}

func TestPacerKeepsHeadroom(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)

	const headroom = 64 << 20
	p := Start(headroom)
	defer p.Stop()
	waitGoal(t, headroom)
	if p.Percent() <= 100 {
		t.Errorf("percent %d on a small heap, want more than 100", p.Percent())
	}
	small := p.Percent()

	// More live heap: a lower percentage gives the same headroom.
	hold := make([]*[1 << 20]byte, 48)
	for i := range hold {
		hold[i] = new([1 << 20]byte)
	}
	waitGoal(t, headroom)
	if p.Percent() >= small {
		t.Errorf("percent %d with 48 MiB more live, was %d", p.Percent(), small)
	}
	runtime.KeepAlive(hold)

	// A smaller headroom applies too.
	p.Set(8 << 20)
	hold = nil
	if live, goal, met := collectUntil(func(live, goal uint64) bool { return goal < live+32<<20 }); !met {
		t.Errorf("goal %d MiB for %d MiB live after the headroom went down to 8 MiB", goal>>20, live>>20)
	}

	p.Stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent %d after Stop, want 100 back", got)
	}
}

func TestPacerLeavesGCOff(t *testing.T) {
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	p := Start(64 << 20)
	defer p.Stop()
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Errorf("GC percent %d, want it to stay off", got)
	}
}

var sink [][]byte

// garbage allocates 40 MiB and drops it.
func garbage() {
	for range 40 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
}

// waitQuietGC waits up to 10 s for a quiet collection after the n-th.
func waitQuietGC(t *testing.T, p *Pacer, n int64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.QuietGCs() == n {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestQuietCollect: garbage left behind when allocation stops is collected within a
// couple of seconds, without a cycle of the pacer's own (64 MiB of headroom).
func TestQuietCollect(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	p := Start(64 << 20)
	defer p.Stop()
	waitGoal(t, 64<<20)

	garbage() // below the goal: no cycle collects it
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[1].Value.Uint64() < s[0].Value.Uint64()+32<<20 {
		t.Fatalf("the garbage was collected at once (%d MiB of objects, %d MiB live)", s[1].Value.Uint64()>>20, s[0].Value.Uint64()>>20)
	}
	waitQuietGC(t, p, 0, "no collection after going quiet")
	metrics.Read(s)
	if live, objects := s[0].Value.Uint64(), s[1].Value.Uint64(); objects > live+quietSlack {
		t.Errorf("%d MiB of objects for %d MiB live after the quiet collection", objects>>20, live>>20)
	}
	// Quiet and clean: no further collection.
	n := p.QuietGCs()
	time.Sleep(2500 * time.Millisecond)
	if p.QuietGCs() != n {
		t.Errorf("collected again while nothing was allocated (%d -> %d)", n, p.QuietGCs())
	}

	// Collected garbage leaves free memory mapped: that goes back too.
	garbage()
	runtime.GC()
	free := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(free)
	if free[0].Value.Uint64() < 32<<20 {
		t.Fatalf("only %d MiB free after collecting 40 MiB", free[0].Value.Uint64()>>20)
	}
	waitQuietGC(t, p, n, "free memory kept after going quiet")
	if metrics.Read(free); free[0].Value.Uint64() > quietSlack {
		t.Errorf("%d MiB still free and mapped after the quiet collection", free[0].Value.Uint64()>>20)
	}
}
