package actors

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-im/switchboard/nodelink"
)

// Backpressure: what a session's stanzas start and the router finishes later (a server
// IQ queued for the host actor, a roster read or write in etcd, presence to contacts) is
// counted on the session. Past limits.max_pending_work the session's reader stops
// reading until the count is down to half: a client that floods waits on TCP instead of
// filling memory with work, and other sessions never wait for it. IQs waiting for another
// entity's answer (delegated, privileged) are capped per session by
// limits.max_inflight_iqs, counted in Session.inflight.

// workGate counts a session's unfinished work and lets its reader wait for it.
type workGate struct {
	n       atomic.Int64
	waiting atomic.Bool // the reader waits for n to fall to low
	low     atomic.Int64
	mu      sync.Mutex
	wake    chan struct{}
}

// startWork counts a piece of work the session's stanzas started.
func (s *Session) startWork() { s.work.n.Add(1) }

// endWork counts it finished, and wakes the reader if it waits and enough is done.
func (s *Session) endWork() {
	g := &s.work
	if g.n.Add(-1) > g.low.Load() || !g.waiting.Load() {
		return
	}
	g.mu.Lock()
	if g.wake != nil {
		close(g.wake)
		g.wake = nil
	}
	g.mu.Unlock()
}

// waitIfBusy is called by the session's reader after each stanza: past
// limits.max_pending_work it sends what it gathered for other nodes and waits until half
// of the work is done (or the session ends).
func (s *Session) waitIfBusy(lim Limits, out *nodelink.Outbox) {
	if lim.PendingWork <= 0 || s.work.n.Load() <= lim.PendingWork {
		return
	}
	out.Flush()
	s.waitWork(lim.PendingWork)
}

func (s *Session) waitWork(max int64) {
	g := &s.work
	for !s.closed.Load() {
		g.mu.Lock()
		if g.n.Load() <= max/2 {
			g.mu.Unlock()
			break
		}
		ch := make(chan struct{})
		g.wake = ch
		g.low.Store(max / 2)
		g.waiting.Store(true)
		// Work that ended between the check and the flag did not see it: look again.
		if g.n.Load() <= max/2 {
			g.wake = nil
			g.mu.Unlock()
			break
		}
		g.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(time.Second): // the session may have been closed meanwhile
		}
	}
	g.waiting.Store(false)
}

// inflightFull reports whether the session may start no more IQs that wait for another
// entity's answer.
func (s *Session) inflightFull() bool {
	max := s.router.limits().InflightIQs
	return max > 0 && s.inflight.Load() >= max
}

// shaper is a client session's rate limit (limits.client_bytes_per_second,
// client_stanzas_per_second, client_rate_burst): token buckets its reader takes from after
// each stanza, waiting when they are empty. It follows a reload of the limits.
type shaper struct {
	bytes, stanzas *rate.Limiter
	bps, sps       float64
	burst          time.Duration
}

// delay takes one stanza of n bytes from the buckets and returns how long the reader
// must wait before the next (0: none).
func (sh *shaper) delay(lim Limits, n int) time.Duration {
	return sh.delayAt(lim.ClientBytes, lim.ClientStanzas, lim.ClientBurst, n)
}

// delayAt is delay with the rates given (an incoming server stream's).
func (sh *shaper) delayAt(bps, sps float64, burst time.Duration, n int) time.Duration {
	if bps != sh.bps || sps != sh.sps || burst != sh.burst {
		sh.bps, sh.sps, sh.burst = bps, sps, burst
		sh.bytes, sh.stanzas = bucket(sh.bps, sh.burst), bucket(sh.sps, sh.burst)
	}
	now := time.Now()
	return max(take(sh.bytes, now, n), take(sh.stanzas, now, 1))
}

func bucket(perSecond float64, burst time.Duration) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond*burst.Seconds())))
}

func take(l *rate.Limiter, now time.Time, n int) time.Duration {
	if l == nil {
		return 0
	}
	r := l.ReserveN(now, min(n, l.Burst())) // a stanza bigger than the burst waits for a full bucket
	if !r.OK() {
		return 0
	}
	return r.DelayFrom(now)
}
