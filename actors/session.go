// Package actors is the router: one protoactor actor per connected session (client or
// component) that owns the socket's writing side, one per served host that answers what
// the server itself handles, and the routing decision as ordered stages (route.go), run
// in each connection's reader goroutine. Protocol work is split by responsibility (users,
// components, delegator, privileged, subscriptions) over the directory (where each
// session is) and the node link (what crosses nodes). ARCHITECTURE.md has the map.
package actors

import (
	"bufio"
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// SessionKind tells clients from components.
type SessionKind uint8

const (
	KindC2S SessionKind = iota + 1
	KindComponent
)

// deliver carries stanza bytes to a session actor.
type deliver struct{ data []byte }

// flushNow releases what was held back while the session was binding.
type flushNow struct{}

// dropHeld discards what was held back while the session was binding (a refused bind).
type dropHeld struct{}

// flushLater flushes what stanzas from other nodes left in the buffer; it is queued
// behind them, so a burst shares one write (see remoteMessage).
type flushLater struct{}

// closeStream asks the session actor to end the stream (with an error, if set). detach:
// a resumable session (XEP-0198) only loses its connection (a draining node).
type closeStream struct {
	err    *xmpp.StreamError
	detach bool
}

// Session is one authenticated connection. Its reader goroutine reads and routes; its
// actor is the only writer once the session is bound.
type Session struct {
	Kind   SessionKind
	Host   string // c2s: the user's host; component: the component domain
	Bare   string // c2s: user@host; component: the domain
	Full   string // c2s: user@host/resource; component: the domain
	Local  string
	Res    string
	conn   atomic.Pointer[xmpp.Conn] // a resumed session (XEP-0198) changes it
	pid    *actor.PID
	router *Router

	w      *bufio.Writer // only the actor touches it; nil while there is nothing to write
	closed atomic.Bool
	queued atomic.Int64
	hold   atomic.Bool // writes are buffered, not flushed, until binding completes
	// flushQueued: a flushLater is in the mailbox (only the actor touches it)
	flushQueued bool
	// writeDeadline: the write deadline last set on conn (only the actor touches it)
	writeDeadline time.Time

	// presence state (c2s)
	available    atomic.Bool
	replaced     atomic.Bool
	priority     atomic.Int32
	lastPresence atomic.Pointer[[]byte]
	// nextPresence is an available presence waiting for its broadcast to contacts; a
	// newer one replaces it (users.broadcastPresence).
	nextPresence atomic.Pointer[[]byte]
	owner        atomic.Pointer[string] // the node its owner registration went to
	managing     atomic.Bool            // entered as a managing entity's connection
	// rosterInterested: it asked for its roster, so roster pushes go to it (RFC 6121 §2.1.6)
	rosterInterested atomic.Bool
	carbons          atomic.Bool               // it enabled message carbons (XEP-0280)
	userCarbons      atomic.Bool               // some resource of its user did: sent copies are asked for (pb.CarbonsWanted)
	queue            atomic.Pointer[workQueue] // roster-bound presence work, in order (subscription.go)
	work             workGate                  // unfinished work its stanzas started (backpressure.go)
	inflight         atomic.Int64              // its IQs waiting for another entity's answer
	dmu              sync.Mutex
	directed         map[string]struct{}
	csi              csi // XEP-0352: what an inactive client's actor holds back (csi.go)

	// blocklistInterested: it asked for its blocklist, so blocklist pushes go to it (XEP-0191 §3.2)
	blocklistInterested atomic.Bool
	// XEP-0198 (sm.go): sm is the actor's, smIn the reader's count of the client's
	// stanzas; resumable: a lost connection detaches the session instead of ending it.
	sm         *smState
	smIn       atomic.Uint32
	smOn       atomic.Bool
	resumable  atomic.Bool
	smToken    string                        // its key in the router's table of resumable sessions
	readerGone atomic.Pointer[chan struct{}] // closed when the reader of its connection has ended
	ended      atomic.Bool                   // the server ended its stream: it is not resumable
	finished   atomic.Bool                   // endSession ran
	// A session resumed on another node: movedTo is the new session there (what comes
	// here is forwarded), moved says so to any goroutine. A session moving here is
	// adopting until the state comes; what comes first waits in early. resumed: it
	// registers as a resumption (replacing the old entry silently). The actor's, but
	// resumed, set before the session is registered.
	movedTo  *actor.PID
	moved    atomic.Bool
	adopting bool
	early    [][]byte
	resumed  bool
}

// Send queues bytes for the peer. A peer that does not read while its queue grows past
// limits.max_send_queue_bytes is disconnected rather than buffered without bound.
func (s *Session) Send(b []byte) {
	if b == nil || s.closed.Load() {
		return
	}
	if s.Kind == KindS2S { // a remote domain: its outgoing stream (s2s.go)
		s.router.s2s.send(s.Host, s.Bare, b)
		return
	}
	if !s.count(len(b)) {
		return
	}
	s.router.metrics.stanzas.out.inc(unsafe.Pointer(s))
	s.router.sys.Root.Send(s.pid, &deliver{data: b})
}

// count adds n bytes to what waits for the peer and reports whether that is within
// limits.max_send_queue_bytes. Past it the connection is closed at once: the peer is not
// reading, so a stream error would wait behind what it does not read (and the session
// actor may be blocked writing until the write timeout); closing ends that write, and
// what is still in the mailbox is dropped unwritten.
func (s *Session) count(n int) bool {
	if q := s.queued.Add(int64(n)); q > s.router.limits().MaxSendQueue {
		if s.resumable.Load() && !s.ended.Load() && q <= 2*s.router.limits().MaxSendQueue {
			// Stream management: the client does not read; its connection goes, and
			// what is sent waits for it to resume.
			if c := s.conn.Load(); c != nil {
				_ = c.Close()
			}
			return true
		}
		if !s.closed.Load() {
			s.router.log.Debug("send queue overflow: disconnecting", "peer", s.Full, "queued", q)
		}
		s.abort()
		return false
	}
	return true
}

// remoteBytes is the session actor's mailbox middleware: it counts stanzas that other
// nodes deliver (pb.Deliver, posted by the remote's endpoint reader, not through Send)
// as they enter the mailbox, so a peer that does not read is disconnected past
// limits.max_send_queue_bytes whichever node its stanzas come from, instead of its
// mailbox growing for as long as the write timeout lets it.
type remoteBytes struct{ s *Session }

func (remoteBytes) MailboxStarted()     {}
func (remoteBytes) MessageReceived(any) {}
func (remoteBytes) MailboxEmpty()       {}
func (m remoteBytes) MessagePosted(msg any) {
	if d, ok := actor.UnwrapEnvelopeMessage(msg).(*pb.Deliver); ok {
		m.s.count(len(d.Data))
	}
}

// Close ends the stream after everything already queued is written.
func (s *Session) Close(err *xmpp.StreamError) {
	s.router.sys.Root.Send(s.pid, &closeStream{err: err})
}

// logger is the router's logger with the session's address: made when something is to
// be logged, not held by every session (a logger with an attribute is about 400 bytes).
func (s *Session) logger() *slog.Logger {
	if s.Kind == KindComponent {
		return s.router.log.With("component", s.Host)
	}
	return s.router.log.With("jid", s.Full)
}

// PID is the session actor.
func (s *Session) PID() *actor.PID { return s.pid }

// Receive is the actor's behaviour: write, or close.
func (s *Session) Receive(ctx actor.Context) { s.handle(ctx.Message()) }

func (s *Session) handle(msg any) {
	switch m := msg.(type) {
	case *deliver:
		if s.closed.Load() {
			s.queued.Add(-int64(len(m.data)))
			if s.Kind == KindS2SOut {
				// An outgoing server stream that failed: what was still queued for it is
				// bounced, not dropped (s2s.go).
				go s.router.s2sBounce(s2sPair{s.Host, s.Bare}, m.data, xmpp.ErrRemoteServerTimeout)
			}
			return
		}
		if !s.csiWrite(m.data) && !s.put(m.data, false) {
			return
		}
		// Send counts bytes in before posting, so nothing left queued means no
		// message is waiting behind this one: flush now. Under load the count
		// rarely reaches zero and many stanzas share one write.
		if s.queued.Add(-int64(len(m.data))) == 0 && !s.hold.Load() {
			if s.Kind == KindComponent {
				// Many sessions feed one component connection. Letting the other
				// runnable goroutines go first often finds more stanzas for it, which
				// then share the write: 22% fewer write(2) per delegated IQ at half
				// load, for well under a microsecond when nothing comes.
				runtime.Gosched()
				if s.queued.Load() != 0 {
					return
				}
			}
			s.flush()
		}
	case flushNow:
		s.flush()
	case csiState:
		s.setCSI(m.inactive)
	case dropHeld:
		s.dropWriter() // unflushed bytes are discarded
		s.hold.Store(false)
	case flushLater:
		s.flushQueued = false
		if s.queued.Load() == 0 && !s.hold.Load() {
			s.flush()
		}
	case *closeStream:
		if s.closed.Load() {
			return
		}
		if m.detach && s.sm != nil && s.resumable.Load() {
			s.goodbye(m.err)
			return
		}
		s.ended.Store(true)
		if s.sm != nil && s.sm.detached {
			// No connection to write to; its reader is gone, so the session ends here.
			s.end()
			go s.router.endSession(s)
			return
		}
		w := s.writer()
		if m.err != nil {
			if s.router.log.Enabled(context.Background(), slog.LevelDebug) {
				s.logger().Debug("stream closed with an error", "condition", m.err.Condition, "text", m.err.Text)
			}
			_, _ = w.Write(m.err.Bytes())
		}
		_, _ = w.WriteString("</stream:stream>")
		_ = s.conn.Load().SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = w.Flush()
		s.end()
	default:
		if !s.smHandle(msg) {
			s.remoteMessage(msg)
		}
	}
}

// abort: the connection failed. A resumable session (XEP-0198) only loses the
// connection: its reader detaches it.
func (s *Session) abort() {
	if s.resumable.Load() && !s.ended.Load() {
		if c := s.conn.Load(); c != nil {
			_ = c.Close()
		}
		return
	}
	s.end()
}

// end: the session takes nothing more, and its connection closes.
func (s *Session) end() {
	if s.closed.CompareAndSwap(false, true) {
		_ = s.conn.Load().Close()
	}
}

// writers are shared: a session holds one only while it has output waiting, so an idle
// session costs no write buffer.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

func (s *Session) writer() *bufio.Writer {
	if s.w == nil {
		s.w = writers.Get().(*bufio.Writer)
		s.w.Reset(s.conn.Load().Conn)
		// A burst starts: the buffer may write through before the flush (a stanza bigger
		// than it), so the deadline must be current already, not the last burst's.
		s.armWriteDeadline()
	}
	return s.w
}

func (s *Session) flush() {
	if s.w == nil {
		return
	}
	if s.w.Buffered() == 0 {
		s.releaseWriter()
		return
	}
	s.smRequest()
	s.armWriteDeadline()
	if err := s.w.Flush(); err != nil {
		s.logger().Debug("write failed", "err", err)
		s.abort()
		return
	}
	s.releaseWriter()
}

// armWriteDeadline gives the next write limits.write_timeout to complete. Setting a
// deadline costs a timer update per call (~4% of the CPU at 60k delegated IQs/s, one
// flush per stanza), so a deadline that still has three quarters of the timeout left is
// kept: a write then gets between 3/4 and all of write_timeout.
func (s *Session) armWriteDeadline() {
	t := s.router.limits().WriteTimeout
	now := time.Now()
	if s.writeDeadline.Sub(now) > t-t/4 {
		return
	}
	s.writeDeadline = now.Add(t)
	_ = s.conn.Load().SetWriteDeadline(s.writeDeadline)
}

// dropWriter gives the writer back with what it holds unflushed discarded (if it has one).
func (s *Session) dropWriter() {
	if s.w != nil {
		s.releaseWriter()
	}
}

func (s *Session) releaseWriter() {
	s.w.Reset(nil)
	writers.Put(s.w)
	s.w = nil
}

func (s *Session) addDirected(to string) {
	s.dmu.Lock()
	if s.directed == nil {
		s.directed = make(map[string]struct{})
	}
	s.directed[to] = struct{}{}
	s.dmu.Unlock()
}

func (s *Session) removeDirected(to string) {
	s.dmu.Lock()
	delete(s.directed, to)
	s.dmu.Unlock()
}

func (s *Session) takeDirected() []string {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	out := make([]string, 0, len(s.directed))
	for k := range s.directed {
		out = append(out, k)
	}
	s.directed = nil
	return out
}
