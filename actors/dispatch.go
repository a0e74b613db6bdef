package actors

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Dispatcher runs actors' mailboxes on long-lived goroutines.
//
// protoactor's default dispatcher starts a goroutine each time an idle mailbox gets a
// message. Below saturation a session's mailbox empties after almost every stanza, so that
// was a goroutine per stanza, and each new goroutine's stack had to grow (copied from
// 8 KiB, with a stack-map walk of every frame) the first time it reached the TLS write:
// 14% of a node's CPU at 20k delegated IQs/s. Here a mailbox run is handed to an idle
// worker, whose stack has already grown; only when none is idle does a new worker start,
// and it stays. Workers above maxIdle exit after their run, so a burst of slow peers does
// not leave goroutines behind.
//
// Schedule never blocks: a handoff happens only to a worker already waiting.
type Dispatcher struct {
	throughput int
	maxIdle    int32
	idle       atomic.Int32 // workers waiting on work (or about to)
	work       chan func()
	quit       chan struct{} // closed by stop: idle workers exit
	stopOnce   sync.Once
}

var _ actor.Dispatcher = (*Dispatcher)(nil)

// NewDispatcher is the router's dispatcher: up to 256 idle workers, each mailbox run
// processing up to 300 messages before yielding.
func NewDispatcher() *Dispatcher { return newWorkerDispatcher(300, 256) }

// newWorkerDispatcher keeps up to maxIdle idle workers; each mailbox run processes up to
// throughput messages before yielding (protoactor's meaning).
func newWorkerDispatcher(throughput, maxIdle int) *Dispatcher {
	return &Dispatcher{throughput: throughput, maxIdle: int32(maxIdle), work: make(chan func()), quit: make(chan struct{})}
}

// Stop lets the idle workers go; runs scheduled afterwards still happen, each on a
// goroutine of its own.
func (d *Dispatcher) Stop() { d.stopOnce.Do(func() { close(d.quit) }) }

func (d *Dispatcher) Throughput() int { return d.throughput }

func (d *Dispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		go d.worker(fn)
	}
}

func (d *Dispatcher) worker(fn func()) {
	for {
		fn()
		if d.idle.Add(1) > d.maxIdle {
			d.idle.Add(-1)
			return
		}
		select {
		case fn = <-d.work:
			d.idle.Add(-1)
		case <-d.quit:
			d.idle.Add(-1)
			return
		}
	}
}

// Props is the spawn option that puts an actor on these workers.
func (d *Dispatcher) Props() actor.PropsOption { return actor.WithDispatcher(d) }
