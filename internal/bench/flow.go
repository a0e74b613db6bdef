package bench

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// flow is one connection's requests: how many to send, how many went, which are
// outstanding since when, and the outcome. In a paced run (sendPaced) a sender and a
// reader goroutine share it under mu; so do a message pair's sender and its readers.
type flow struct {
	o       *Options
	base    time.Time
	stop    *stopper
	n       int64 // requests to send; -1: until stopped
	sent    int64
	pending map[uint64]time.Duration // seq → when it was written
	stats   Stats

	mu       sync.Mutex
	readErr  error // the reader's failure (or the sender's)
	done     bool  // the run is over: the reader's error is expected
	progress chan struct{}
}

func newFlow(o *Options, base time.Time, stop *stopper, i int) flow {
	return flow{o: o, base: base, stop: stop, n: o.perConn(i), pending: make(map[uint64]time.Duration, o.Window), progress: make(chan struct{}, 1)}
}

func (f *flow) canSend() bool {
	return !f.stop.stop.Load() && (f.n < 0 || f.sent < f.n)
}

// signal wakes the sender when it waits for the window.
func (f *flow) signal() {
	select {
	case f.progress <- struct{}{}:
	default:
	}
}

// readFailed records why the reader stopped (unless the run is over) and wakes the sender.
func (f *flow) readFailed(err error) {
	f.mu.Lock()
	if !f.done {
		f.readErr = err
	}
	f.mu.Unlock()
	f.signal()
}

// sendPaced sends at rate requests per second (open loop, still capped by the window;
// rate 0: whenever the window allows) while a reader goroutine settles the replies under
// mu. add appends request seq to a buffer; more, called under mu, returns what else is to
// go out with the requests (nil: nothing); write writes. When sending is over it waits
// for what is outstanding, as long as replies keep coming, and counts what never came.
func (f *flow) sendPaced(rate float64, offset time.Duration, add func([]byte, uint64) []byte, more func() []byte, write func([]byte) error) {
	var interval time.Duration
	if rate > 0 {
		interval = max(time.Duration(1e9/rate), 1)
	}
	next := time.Since(f.base)
	if interval > 0 {
		next += offset % interval
	}
	var buf []byte
	for f.canSend() {
		now := time.Since(f.base)
		if interval > 0 && now < next {
			time.Sleep(next - now)
			continue
		}
		f.mu.Lock()
		if f.readErr != nil {
			f.mu.Unlock()
			break
		}
		k := int64(f.o.Window - len(f.pending))
		if interval > 0 {
			k = min(k, int64((now-next)/interval)+1)
		}
		if f.n > 0 {
			k = min(k, f.n-f.sent)
		}
		if k <= 0 {
			f.mu.Unlock()
			// Window full: wait for a reply (or give up after the timeout).
			select {
			case <-f.progress:
			case <-time.After(f.o.Timeout):
				f.mu.Lock()
				f.readErr = errors.New("window full and no reply")
				f.mu.Unlock()
			}
			continue
		}
		buf = buf[:0]
		for range k {
			seq := uint64(f.sent)
			f.sent++
			buf = add(buf, seq)
			f.pending[seq] = now
		}
		if more != nil {
			buf = append(buf, more()...)
		}
		f.mu.Unlock()
		if err := write(buf); err != nil {
			f.mu.Lock()
			f.readErr = err
			f.mu.Unlock()
			break
		}
		if interval > 0 {
			next += time.Duration(k) * interval
		}
	}
	// Drain: wait for the outstanding replies, as long as they keep coming.
	for {
		f.mu.Lock()
		left, rerr := len(f.pending), f.readErr
		f.mu.Unlock()
		if left == 0 || rerr != nil {
			break
		}
		select {
		case <-f.progress:
			continue
		case <-time.After(f.o.Timeout):
		}
		break
	}
	f.finish("no reply")
}

// finish ends the run: what is still outstanding is counted as an error (a timeout,
// "<missing> within TIMEOUT", unless the run was cut or the connection failed), and so
// is what was never sent; from now on the reader's failure is expected.
func (f *flow) finish(missing string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done = true
	if n := uint64(len(f.pending)); n > 0 {
		switch {
		case f.stop.aborted.Load():
			f.stats.Err(ErrTimeout, n, "the run's time limit struck")
		case f.readErr != nil:
			f.stats.Err(ErrDisconnected, n, f.readErr.Error())
		default:
			f.stats.Err(ErrTimeout, n, fmt.Sprintf("%s within %v", missing, f.o.Timeout))
		}
		clear(f.pending)
	}
	f.notSent()
}

// notSent counts what was requested and never sent.
func (f *flow) notSent() {
	if f.n > 0 && f.sent < f.n {
		f.stats.Err(ErrNotSent, uint64(f.n-f.sent), "the run ended before these were sent")
	}
}
