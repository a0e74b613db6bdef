package etcdx

import (
	"context"
	"errors"
	"sync"
)

// Loop is the background half of a watched store (the account cache, the delegation
// rules, the privileges): Go starts its one loop after the initial load, Stop ends it and
// waits. The zero Loop is ready to use.
type Loop struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// ErrStarted is Go's error for a loop that already runs.
var ErrStarted = errors.New("already started")

// Go runs run in the background until Stop. Its context is not ctx's: ctx bounded the
// start (the initial load), not the life of the watch.
func (l *Loop) Go(ctx context.Context, run func(context.Context)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		return ErrStarted
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel, l.done = cancel, make(chan struct{})
	done := l.done
	go func() {
		defer close(done)
		run(runCtx)
	}()
	return nil
}

// Stop ends the loop and waits for it, or for ctx. Stopping a loop that does not run
// does nothing.
func (l *Loop) Stop(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.cancel = nil
	return nil
}

// Running reports whether the loop runs.
func (l *Loop) Running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cancel != nil
}
