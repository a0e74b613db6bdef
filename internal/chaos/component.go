package chaos

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-im/switchboard/internal/bench"
)

// compConn is the component's connection to one node: it answers every delegated IQ
// after the component's delay and connects again whenever its stream ends (the node
// stopped, or the connection was dropped), as a component in production does.
type compConn struct {
	addr  string
	delay time.Duration

	mu      sync.Mutex
	echo    *bench.Echo
	stopped bool
	done    chan struct{}
}

func newCompConn(addr string, delay time.Duration) *compConn {
	return &compConn{addr: addr, delay: delay, done: make(chan struct{})}
}

func (cc *compConn) run(ctx context.Context) {
	defer close(cc.done)
	for ctx.Err() == nil && !cc.isStopped() {
		comp, err := bench.DialComponent(ctx, cc.addr, component, secret, 2*time.Second)
		if err != nil {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		e := bench.StartDelayedEcho(comp, cc.delay)
		cc.mu.Lock()
		if cc.stopped {
			cc.mu.Unlock()
			_ = e.Close()
			return
		}
		cc.echo = e
		cc.mu.Unlock()
		<-e.Done()
		_ = comp.Conn.Close()
	}
}

func (cc *compConn) isStopped() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.stopped
}

// drop closes the connection abruptly (no closing tag); run connects again at once.
func (cc *compConn) drop() {
	cc.mu.Lock()
	e := cc.echo
	cc.mu.Unlock()
	if e != nil {
		_ = e.Close()
	}
}

// restart closes the connection as a component that stops cleanly does (it answers what
// it read, then sends its closing tag); run connects again at once.
func (cc *compConn) restart() {
	cc.mu.Lock()
	e := cc.echo
	cc.mu.Unlock()
	if e != nil {
		_ = e.CloseClean()
	}
}

// stop closes the connection for good.
func (cc *compConn) stop() {
	cc.mu.Lock()
	cc.stopped = true
	cc.mu.Unlock()
	cc.drop()
	select {
	case <-cc.done:
	case <-time.After(5 * time.Second):
	}
}
