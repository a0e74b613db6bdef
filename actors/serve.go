package actors

import (
	"errors"
	"io"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/xmpp"
)

// ServeC2S runs a negotiated client connection (authenticated, binding offered) until it
// ends: it handles the bind request, then reads and routes every stanza.
func (r *Router) ServeC2S(c *xmpp.Conn) {
	var s *Session
	defer func() {
		if s == nil {
			_ = c.Close()
			return
		}
		r.unbindUser(s)
		r.accountDown(s)
		if !s.replaced.Load() {
			r.goOffline(s)
		}
		r.stopSession(s)
	}()
	out := r.newOutbox()
	c.R.BeforeFill = out.flush
	defer out.flush() // before the session goes
	var idleDeadline time.Time
	for {
		if s != nil {
			idleDeadline = r.armIdleDeadline(c, idleDeadline)
		}
		env, err := c.R.Next()
		if err != nil {
			r.endWith(c, s, err)
			return
		}
		if s == nil {
			res, ok := xmpp.ParseBind(env)
			if !ok {
				c.Fail(&xmpp.StreamError{Condition: "not-authorized", Text: "bind a resource first"}, c.Host)
				return
			}
			if res == "" {
				res = xmpp.NewID()[:12]
			}
			full, err := jid.New(c.User, c.Host, res)
			if err != nil {
				if err := c.WriteRaw(xmpp.ErrorReply(env, "", "", xmpp.ErrBadRequest)); err != nil {
					return
				}
				continue
			}
			s = r.newSession(KindC2S, c)
			s.Host, s.Local, s.Res = c.Host, full.Localpart(), full.Resourcepart()
			s.Bare, s.Full = full.Bare().String(), full.String()
			s.log = r.log.With("jid", s.Full)
			// The bind result is queued first but held back until the session is
			// registered (with its owner, maybe on another node): once the client knows
			// its JID, stanzas sent to it find it, and they follow the bind result.
			s.hold.Store(true)
			s.Send(xmpp.BindResult(env.ID, s.Full))
			r.bindUser(s)
			s.hold.Store(false)
			r.sys.Root.Send(s.pid, flushNow{})
			c.Deadline(0)
			s.log.Debug("session bound")
			continue
		}
		if env.Kind == xmpp.KindOther {
			s.Close(&xmpp.StreamError{Condition: "unsupported-stanza-type", Text: env.Name.Local})
			return
		}
		if env.Kind == xmpp.KindIQ && !validIQ(env) {
			s.Send(xmpp.ErrorReply(env, "", s.Full, xmpp.ErrBadRequest))
			continue
		}
		r.metrics.stanzaIn(env.Kind, fromC2S)
		r.route(out, s, s.Full, env)
	}
}

// armIdleDeadline gives a client limits.idle_timeout to send something. Like the write
// deadline (Session.armWriteDeadline), it is moved only once a quarter of it has passed:
// a timer update per stanza costs, and a client silent for between 3/4 of idle_timeout and
// all of it is disconnected.
func (r *Router) armIdleDeadline(c *xmpp.Conn, last time.Time) time.Time {
	t := r.limits().IdleTimeout
	if t <= 0 {
		return last
	}
	now := time.Now()
	if last.Sub(now) > t-t/4 {
		return last
	}
	d := now.Add(t)
	_ = c.SetReadDeadline(d)
	return d
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
func (r *Router) endWith(c *xmpp.Conn, s *Session, err error) {
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
	s.Close(se)
}

// ServeComponent runs an authenticated XEP-0114 connection. Its stanzas must come from
// the component's domain or a subdomain of it (else invalid-from, RFC 6120 §4.9.3.9).
func (r *Router) ServeComponent(c *xmpp.Conn) {
	s := r.newSession(KindComponent, c)
	s.Host, s.Bare, s.Full = c.Host, c.Host, c.Host
	s.log = r.log.With("component", c.Host)
	s.Send(xmpp.HandshakeOK)
	r.addComponent(s)
	r.publishComponent(s)
	s.log.Info("component connected")
	r.componentUp(s)
	defer func() {
		r.removeComponent(s)
		r.stopSession(s)
		s.log.Info("component disconnected")
	}()
	out := r.newOutbox()
	c.R.BeforeFill = out.flush
	defer out.flush() // before the session goes
	if r.limits().IdleTimeout > 0 {
		c.Deadline(0)
	}
	for {
		env, err := c.R.Next()
		if err != nil {
			r.endWith(c, s, err)
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
		if err != nil || !(from.Domainpart() == c.Host || strings.HasSuffix(from.Domainpart(), "."+c.Host)) {
			s.Close(&xmpp.StreamError{Condition: "invalid-from", Text: env.From})
			return
		}
		if env.Kind == xmpp.KindIQ && !validIQ(env) {
			s.Send(xmpp.ErrorReply(env, "", env.From, xmpp.ErrBadRequest))
			continue
		}
		r.metrics.stanzaIn(env.Kind, fromComponent)
		r.route(out, s, env.From, env)
	}
}
