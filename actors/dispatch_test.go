package actors

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Every scheduled run happens, none waits for a busy worker, and idle workers stay
// within maxIdle once a burst is over.
func TestWorkerDispatcher(t *testing.T) {
	d := newWorkerDispatcher(300, 4)
	before := runtime.NumGoroutine()
	release := make(chan struct{})
	var wg sync.WaitGroup
	const n = 50
	wg.Add(n)
	start := time.Now()
	for range n {
		// Each run blocks until released: Schedule must not wait for one to finish.
		d.Schedule(func() { <-release; wg.Done() })
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("Schedule waited for busy workers")
	}
	close(release)
	wg.Wait()
	goroutinesAtMost(t, before+4, "after the burst (at most 4 idle workers stay)")
	runs(t, d, "an idle worker did not run the next function")
	// Stopped: the idle workers leave, and what is scheduled still runs.
	d.Stop()
	goroutinesAtMost(t, before, "after stop")
	runs(t, d, "a run scheduled after stop did not happen")
}

func goroutinesAtMost(t *testing.T, n int, when string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines %s, want at most %d", runtime.NumGoroutine(), when, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runs schedules a function and fails unless it runs.
func runs(t *testing.T, d *Dispatcher, failure string) {
	t.Helper()
	ran := make(chan struct{})
	d.Schedule(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal(failure)
	}
}

func TestJIDCache(t *testing.T) {
	c := newJIDCache()
	j, err := c.parse("Juliet@Example.COM/balcony")
	if err != nil || j.String() != "juliet@example.com/balcony" {
		t.Fatalf("parse = %v, %v", j, err)
	}
	again, err := c.parse("Juliet@Example.COM/balcony")
	if err != nil || !again.Equal(j) {
		t.Fatalf("cached parse = %v, %v", again, err)
	}
	for range 2 { // refused every time, never remembered
		if _, err := c.parse("a@b@c"); err == nil {
			t.Fatal("malformed JID accepted")
		}
	}
	for i := range jidCacheShards * jidCacheShardSize * 2 {
		if _, err := c.parse("u@h" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i := range c.shards {
		total += len(c.shards[i].m)
	}
	if total > jidCacheShards*jidCacheShardSize {
		t.Fatalf("cache holds %d entries, more than its bound %d", total, jidCacheShards*jidCacheShardSize)
	}
}
