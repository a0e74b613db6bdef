package actors

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"
	"unsafe"

	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/xmpp"
)

// ServeC2S runs a negotiated client connection (authenticated, binding offered): it
// handles the bind request, then reads and routes every stanza. It calls done once the
// session is over. It may return before that: a session silent for limits.park_after
// waits for input on a goroutine of its own (see park).
func (r *Router) ServeC2S(c *xmpp.Conn, done func()) {
	cr := &c2sReader{r: r, c: c, out: nodelink.NewOutbox(r.link), done: done}
	c.R.BeforeFill = cr.out.Flush
	c.R.OnTimeout = cr.onTimeout
	cr.run()
}

// c2sReader is a client connection's reading side: what its loop keeps between stanzas,
// so that the loop can stop while the session idles and go on, on another goroutine,
// when input comes.
type c2sReader struct {
	r    *Router
	c    *xmpp.Conn
	s    *Session // nil until bound
	out  *nodelink.Outbox
	done func()
	rate shaper // what the client may send (limits.client_*)
	// deadline is the read deadline set on c: the earlier of idleBy and the end of
	// limits.park_after, moved once a quarter of its window has passed (a timer update
	// per stanza costs).
	deadline time.Time
	idleBy   time.Time // when limits.idle_timeout ends the session (zero: never)
	// gen is the session's attachment this connection is (XEP-0198: a resumed session
	// has several over its life); gone is closed when this reader has ended.
	gen    uint32
	gone   chan struct{}
	detach bool // it stopped reading for a draining node's hand-over: the session detaches
}

// run reads and routes until the session ends (then finish) or parks.
func (cr *c2sReader) run() {
	for {
		if cr.s != nil {
			cr.armDeadline()
		}
		env, err := cr.c.R.Next()
		if err == xmpp.ErrParked {
			go cr.park()
			return // the parked goroutine owns the reader now
		}
		if err != nil {
			endWith(cr.c, cr.s, err)
			cr.finish(err)
			return
		}
		if !cr.handle(env) {
			cr.finish(nil)
			return
		}
	}
}

// handle binds or routes one stanza; false ends the session.
func (cr *c2sReader) handle(env *xmpp.Envelope) bool {
	r, c, s := cr.r, cr.c, cr.s
	if r.drain.paused.Load() {
		// A graceful stop: what was read before is answered, this is not handled. The
		// stream closes with system-shutdown and the client sends it again elsewhere.
		// A resumable session is let go earlier, detached (handOverResumable).
		cr.out.Flush()
		if s != nil && s.resumable.Load() {
			select {
			case <-r.drain.stopping:
			case <-r.drain.handover:
				cr.detach = true
			}
		} else {
			<-r.drain.stopping
		}
		return false
	}
	if s == nil {
		if env.Kind == xmpp.KindOther && env.Name.Space == xmpp.NSSM {
			return cr.smUnbound(env)
		}
		res, ok := xmpp.ParseBind(env)
		if !ok {
			c.Fail(&xmpp.StreamError{Condition: "not-authorized", Text: "bind a resource first"}, c.Host)
			return false
		}
		if res == "" {
			res = xmpp.NewID()[:12]
		}
		full, err := jid.New(c.User, c.Host, res)
		if err != nil {
			return c.WriteRaw(xmpp.ErrorReply(env, "", "", xmpp.ErrBadRequest)) == nil
		}
		s = r.newSession(KindC2S, c)
		s.Host, s.Local, s.Res = c.Host, full.Localpart(), full.Resourcepart()
		s.Bare, s.Full = full.Bare().String(), full.String()
		cr.s = s
		cr.gone = s.newReader()
		// The bind result is queued first but held back until the session is
		// registered (with its owner, maybe on another node): once the client knows
		// its JID, stanzas sent to it find it, and they follow the bind result.
		s.hold.Store(true)
		s.Send(xmpp.BindResult(env.ID, s.Full))
		if !r.users.bindUser(s) {
			// limits.max_sessions_per_user: the held result is dropped, the bind is
			// answered resource-constraint (RFC 6120 §7.6.2.1) and the stream ends. The
			// actor itself stops holding when it drops the result: it may not have
			// written the result yet, and with the hold off it would flush it.
			r.sys.Root.Send(s.pid, dropHeld{})
			s.Send(xmpp.ErrorReply(env, "", "", xmpp.ErrResourceConstraint))
			s.Close(&xmpp.StreamError{Condition: "policy-violation", Text: "too many sessions for this account"})
			return false
		}
		s.hold.Store(false)
		r.sys.Root.Send(s.pid, flushNow{})
		c.Deadline(0)
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			s.logger().Debug("session bound")
		}
		return true
	}
	if env.Kind == xmpp.KindOther {
		if inactive, ok := isCSI(env); ok {
			r.sys.Root.Send(s.pid, csiState{inactive: inactive})
			return true
		}
		if env.Name.Space == xmpp.NSSM {
			return cr.smNonza(env)
		}
		s.Close(&xmpp.StreamError{Condition: "unsupported-stanza-type", Text: env.Name.Local})
		return false
	}
	if s.smOn.Load() {
		// XEP-0198: counted as handled once read; the routing below is its handling,
		// and an <r/> read after it is answered after it.
		s.smIn.Add(1)
	}
	if env.Kind == xmpp.KindIQ && !validIQ(env) {
		s.Send(xmpp.ErrorReply(env, "", s.Full, xmpp.ErrBadRequest))
		return true
	}
	r.metrics.stanzaIn(env.Kind, fromC2S, unsafe.Pointer(s))
	r.route(cr.out, s, s.Full, env)
	lim := r.limits()
	s.waitIfBusy(lim, cr.out)
	if d := cr.rate.delay(lim, len(env.Raw)); d > 0 {
		cr.out.Flush()
		time.Sleep(d)
	}
	return true
}

// finish is the end of the reader (err: why it stopped reading, nil when it ended the
// stream itself): what it held back goes, then the session. A resumable session
// (XEP-0198) whose connection failed is only detached, to wait for its client.
func (cr *c2sReader) finish(err error) {
	cr.out.Flush()
	r, s := cr.r, cr.s
	switch {
	case s == nil:
		_ = cr.c.Close()
	case (cr.detach || lostConnection(err)) && s.resumable.Load() && !s.ended.Load():
		_ = cr.c.Close()
		r.sys.Root.Send(s.pid, smDetach{gen: cr.gen})
	default:
		r.endSession(s)
	}
	if cr.gone != nil {
		close(cr.gone)
	}
	cr.done()
}

// lostConnection: the reader stopped on a failed connection (an error, a reset, a read
// timeout), not on a closing tag or bad input.
func lostConnection(err error) bool {
	if err == nil || errors.Is(err, xmpp.ErrStreamEnd) {
		return false
	}
	se, ok := xmpp.AsStreamError(err)
	return !ok || se.Condition == "connection-timeout"
}

// armDeadline moves the read deadline when a quarter of its window has passed. The
// window is limits.park_after, or limits.idle_timeout if that is shorter or parking off.
func (cr *c2sReader) armDeadline() {
	lim := cr.r.limits()
	window := lim.ParkAfter
	if window <= 0 || (lim.IdleTimeout > 0 && lim.IdleTimeout < window) {
		window = lim.IdleTimeout
	}
	if window <= 0 {
		if !cr.deadline.IsZero() {
			cr.deadline, cr.idleBy = time.Time{}, time.Time{}
			_ = cr.c.SetReadDeadline(time.Time{})
		}
		return
	}
	now := time.Now()
	if cr.deadline.Sub(now) > window-window/4 {
		return
	}
	cr.idleBy = time.Time{}
	if lim.IdleTimeout > 0 {
		cr.idleBy = now.Add(lim.IdleTimeout)
	}
	cr.deadline = now.Add(window)
	_ = cr.c.SetReadDeadline(cr.deadline)
}

// onTimeout is the reader's OnTimeout: the idle timeout ends the session; park_after
// between stanzas parks it; park_after in the middle of a stanza (a slow sender) reads on.
func (cr *c2sReader) onTimeout(between bool) (park, again bool) {
	if cr.s == nil || (!cr.idleBy.IsZero() && !time.Now().Before(cr.idleBy)) {
		return false, false
	}
	if between && cr.r.limits().ParkAfter > 0 {
		return true, false
	}
	cr.deadline = time.Time{}
	cr.armDeadline()
	return false, true
}

// park waits for the session's next input on a fresh goroutine, whose stack is the
// smallest there is (2 KiB), while the reading loop's goroutine, whose stack grew to
// 8 KiB for TLS reads and routing, has ended: most sessions mostly idle. Input resumes
// the loop here (its stack grows again, a few microseconds); the idle timeout, or the
// connection closing (the session ended by the server), ends the session.
func (cr *c2sReader) park() {
	r := cr.r
	_ = cr.c.SetReadDeadline(cr.idleBy)
	cr.deadline = time.Time{}
	r.metrics.Parks.Inc()
	r.metrics.Parked.Inc()
	err := cr.c.WaitReadable()
	r.metrics.Parked.Dec()
	if err != nil {
		endWith(cr.c, cr.s, err)
		cr.finish(err)
		return
	}
	cr.run()
}

func validIQ(env *xmpp.Envelope) bool {
	if env.ID == "" {
		return false
	}
	switch env.Type {
	case "get", "set":
		return env.HasChild
	case "result", "error":
		return true
	}
	return false
}

// endWith reports why a reading loop ended: bad input gets its stream error.
func endWith(c *xmpp.Conn, s *Session, err error) {
	se, ok := xmpp.AsStreamError(err)
	if !ok {
		if errors.Is(err, xmpp.ErrStreamEnd) && s != nil {
			s.Close(nil)
		}
		if s == nil || !errors.Is(err, io.EOF) {
			_ = c.Close()
		}
		return
	}
	if s == nil {
		c.Fail(se, c.Host)
		return
	}
	if se.Condition == "connection-timeout" && s.resumable.Load() {
		// XEP-0198: a silent client may come back; it resumes the session.
		s.router.sys.Root.Send(s.pid, &closeStream{err: se, detach: true})
		return
	}
	s.Close(se)
}

// ServeComponent runs an authenticated XEP-0114 connection. Its stanzas must come from
// the component's own domain, or a JID at it (else invalid-from, RFC 6120 §4.9.3.9): not
// from subdomains, which may be other components or hosts.
func (r *Router) ServeComponent(c *xmpp.Conn) {
	s := r.newSession(KindComponent, c)
	s.Host, s.Bare, s.Full = c.Host, c.Host, c.Host
	s.Send(xmpp.HandshakeOK)
	r.comps.addComponent(s)
	r.comps.publishComponent(s)
	s.logger().Info("component connected")
	r.comps.componentUp(s)
	clean := false // it ended its stream with </stream:stream>
	defer func() {
		r.comps.removeComponent(s, clean)
		r.stopSession(s)
		s.logger().Info("component disconnected", "clean", clean)
	}()
	out := nodelink.NewOutbox(r.link)
	c.R.BeforeFill = out.Flush
	defer out.Flush() // before the session goes
	if r.limits().IdleTimeout > 0 {
		c.Deadline(0)
	}
	for {
		env, err := c.R.Next()
		if err != nil {
			clean = errors.Is(err, xmpp.ErrStreamEnd)
			endWith(c, s, err)
			return
		}
		if env.Kind == xmpp.KindOther {
			s.Close(&xmpp.StreamError{Condition: "unsupported-stanza-type", Text: env.Name.Local})
			return
		}
		if env.From == "" {
			s.Close(&xmpp.StreamError{Condition: "improper-addressing", Text: "missing 'from'"})
			return
		}
		from, err := r.jids.parse(env.From)
		if err != nil || from.Domainpart() != c.Host {
			s.Close(&xmpp.StreamError{Condition: "invalid-from", Text: env.From})
			return
		}
		if env.Kind == xmpp.KindIQ && !validIQ(env) {
			s.Send(xmpp.ErrorReply(env, "", env.From, xmpp.ErrBadRequest))
			continue
		}
		r.metrics.stanzaIn(env.Kind, fromComponent, unsafe.Pointer(s))
		r.route(out, s, env.From, env)
		s.waitIfBusy(r.limits(), out)
	}
}
