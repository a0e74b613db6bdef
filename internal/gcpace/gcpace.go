// Package gcpace gives the garbage collector a minimum headroom: the heap may grow at
// least a fixed number of bytes past what the last cycle found live before the next
// cycle starts.
//
// Go's pacer (GOGC=100) starts a cycle when the heap has doubled since the last one. A
// node's live heap is small when few sessions are connected (about 7 MB), so under load
// it collects several times a second: 4 cycles a second at 10k delegated IQs/s and ~25 at
// 70k, each a fixed cost (scanning the embedded etcd's and the runtime's roots) and each
// a few milliseconds in which stanzas wait behind mark assists and the stop-the-world
// phases. A headroom of 16–32 MiB makes that rarer on a small heap and changes
// nothing on a large one (100k sessions: live heap ~2 GiB, goal 4 GiB either way).
//
// It works by moving the GC percentage after every cycle: the larger of the configured
// one (GOGC, 100 by default) and headroom/live. GOMEMLIMIT, when set, still bounds the
// heap; GOGC=off stays off.
//
// Garbage left when the process goes quiet (a login storm's TLS and SCRAM garbage, up to
// the headroom or the live heap's size) would otherwise stay in RSS until Go's forced
// collection two minutes later, and memory the collector freed stays mapped until the
// background scavenger returns it, slowly. A process that allocated less than 256 KiB in
// the last second while holding more than 8 MiB of garbage or of free memory is collected
// and its free memory given back to the OS (debug.FreeOSMemory): once when it goes quiet,
// at most every 32 s under a trickle of traffic.
package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxPercent bounds the percentage set for a tiny live heap.
	maxPercent = 100_000
	// heapMinimum is the runtime's smallest heap goal at GOGC=100 (runtime.defaultHeapMinimum).
	heapMinimum = 4 << 20
	// quietEvery, quietBytes, quietSlack: see the package comment.
	quietEvery = time.Second
	quietBytes = 256 << 10 // an idle node allocates ~12 KiB/s
	quietSlack = 8 << 20
)

// Pacer adjusts the GC percentage after each cycle. One per process.
type Pacer struct {
	base     int // the GC percentage the process started with (GOGC)
	headroom atomic.Int64
	stopped  atomic.Bool

	mu      sync.Mutex // adjust runs on the finalizer goroutine, Set on the caller's
	current int
	sample  []metrics.Sample

	done     chan struct{} // closed by Stop: the quiet watch ends
	quietGCs atomic.Int64
}

// sentinel is garbage on purpose: its finalizer runs once after each GC cycle. Larger
// than 16 bytes and with a pointer, so that it is not batched by the tiny allocator.
type sentinel struct {
	_ *int
	_ [2]uintptr
}

// Start paces the collector with the given headroom in bytes (0: GOGC alone). Under
// GOGC=off it does nothing.
func Start(headroom int64) *Pacer {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	p := &Pacer{base: base, current: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}},
		done: make(chan struct{})}
	p.headroom.Store(headroom)
	if base < 0 {
		p.stopped.Store(true)
		close(p.done)
		return p
	}
	p.adjust()
	p.arm()
	go p.watchQuiet(quietEvery)
	return p
}

// Set changes the headroom; it applies from the next cycle on (or now, if a cycle
// already ran).
func (p *Pacer) Set(headroom int64) {
	p.headroom.Store(headroom)
	if !p.stopped.Load() {
		p.adjust()
	}
}

// Stop gives the collector back its starting percentage.
func (p *Pacer) Stop() {
	if p.stopped.Swap(true) {
		return
	}
	close(p.done)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = p.base
	debug.SetGCPercent(p.base)
}

// QuietGCs is how many times the process was collected for going quiet.
func (p *Pacer) QuietGCs() int64 { return p.quietGCs.Load() }

// watchQuiet collects once when the process goes quiet with garbage held.
func (p *Pacer) watchQuiet(every time.Duration) {
	s := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(s)
	last := s[0].Value.Uint64()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		metrics.Read(s)
		allocs, live, objects, free := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64(), s[3].Value.Uint64()
		quiet := allocs-last < quietBytes
		last = allocs
		if quiet && (objects > live+quietSlack || free > quietSlack) {
			debug.FreeOSMemory()
			p.quietGCs.Add(1)
			metrics.Read(s)
			last = s[0].Value.Uint64()
		}
	}
}

// Percent is the GC percentage the pacer last set.
func (p *Pacer) Percent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

func (p *Pacer) arm() {
	runtime.SetFinalizer(new(sentinel), func(*sentinel) {
		if p.stopped.Load() {
			return
		}
		p.adjust()
		p.arm()
	})
}

// adjust sets the percentage for the live heap the last cycle found.
func (p *Pacer) adjust() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped.Load() {
		return
	}
	metrics.Read(p.sample)
	if p.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	want := Percent(p.base, p.headroom.Load(), p.sample[0].Value.Uint64())
	// A few percent either way is not worth a change (each one recomputes the goal).
	if d := want - p.current; d > p.current/32 || -d > p.current/32 {
		p.current = want
		debug.SetGCPercent(want)
	}
}

// Percent is the GC percentage that gives a live heap of live bytes a goal of at least
// live+headroom, and never less than base.
func Percent(base int, headroom int64, live uint64) int {
	if headroom <= 0 || live == 0 {
		return base
	}
	want := uint64(headroom) * 100 / live
	// The runtime's smallest goal is 4 MiB scaled by the percentage: beyond this, a tiny
	// live heap would get a goal far above live+headroom.
	want = min(want, (live+uint64(headroom))*100/heapMinimum, maxPercent)
	return max(base, int(want))
}
