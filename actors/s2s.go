package actors

import (
	"context"
	"errors"
	"sync"
	"time"
	"unsafe"

	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Federation (RFC 6120 server-to-server). A stanza for a domain that is neither served
// here nor a component's goes out on this node's stream from the sender's domain to that
// domain, opened on first use (S2S.Dial: DNS or a static route, STARTTLS, SASL EXTERNAL);
// what is sent meanwhile waits, at most s2s.max_queued_bytes per stream, and is bounced
// (remote-server-not-found, remote-server-timeout past s2s.connect_timeout) if the stream
// cannot be opened. Incoming streams (ServeS2S) are read like a client's, with every
// 'from' checked against the domain the stream authenticated as; what the router answers
// on them goes out on the outgoing stream to that domain.

// KindS2S sessions stand for a remote domain on this node: the one an incoming stream
// authenticated as, as the sender of what it reads; what is sent to them goes out on
// the outgoing stream to that domain. KindS2SOut is an outgoing stream's writer.
const (
	KindS2S SessionKind = iota + 3
	KindS2SOut
)

// S2S is the router's federation: nil Dial means none.
type S2S struct {
	// Dial opens an authenticated outgoing stream from local to remote.
	Dial           func(ctx context.Context, local, remote string) (*xmpp.Conn, error)
	ConnectTimeout time.Duration
	MaxQueuedBytes int
}

// s2sPair names an outgoing stream.
type s2sPair struct{ local, remote string }

// s2sOut is this node's outgoing streams.
type s2sOut struct {
	r     *Router
	cfg   S2S
	mu    sync.Mutex
	links map[s2sPair]*s2sLink
}

// s2sLink is one outgoing stream: being opened (queue) or up (w).
type s2sLink struct {
	pair   s2sPair
	queue  [][]byte
	queued int
	w      *Session // nil while connecting
}

func (o *s2sOut) enabled() bool { return o != nil && o.cfg.Dial != nil }

// send writes a stanza to the remote domain's server, from the local domain.
func (o *s2sOut) send(local, remote string, data []byte) {
	env, err := xmpp.ParseStanza(data)
	if err != nil {
		return
	}
	if env.Name.Space != xmpp.NSServer {
		data = env.RewriteNS(env.From, env.To, xmpp.NSServer)
	}
	p := s2sPair{local, remote}
	o.mu.Lock()
	l := o.links[p]
	if l == nil {
		l = &s2sLink{pair: p}
		if o.links == nil {
			o.links = make(map[s2sPair]*s2sLink)
		}
		o.links[p] = l
		go o.open(l)
	}
	if l.w != nil {
		o.mu.Unlock()
		l.w.Send(data)
		return
	}
	if l.queued+len(data) > o.cfg.MaxQueuedBytes {
		o.mu.Unlock()
		o.r.s2sBounce(p, data, xmpp.ErrResourceConstraint)
		return
	}
	l.queue = append(l.queue, data)
	l.queued += len(data)
	o.mu.Unlock()
}

// open sets up an outgoing stream, then writes what waited for it; if it cannot, what
// waited is bounced.
func (o *s2sOut) open(l *s2sLink) {
	r := o.r
	ctx, cancel := context.WithTimeout(context.Background(), o.cfg.ConnectTimeout)
	c, err := o.cfg.Dial(ctx, l.pair.local, l.pair.remote)
	timedOut := errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil
	cancel()
	if err != nil {
		cond := xmpp.ErrRemoteServerNotFound
		if timedOut {
			cond = xmpp.ErrRemoteServerTimeout
		}
		r.log.Info("s2s: no stream", "from", l.pair.local, "to", l.pair.remote, "err", err)
		r.metrics.s2sFailures(cond.Condition)
		o.mu.Lock()
		q := l.queue
		l.queue, l.queued = nil, 0
		if o.links[l.pair] == l {
			delete(o.links, l.pair)
		}
		o.mu.Unlock()
		for _, d := range q {
			r.s2sBounce(l.pair, d, cond)
		}
		return
	}
	w := r.newSession(KindS2SOut, c, func(s *Session) {
		s.Host, s.Bare, s.Full = l.pair.local, l.pair.remote, l.pair.remote
	})
	o.mu.Lock()
	for _, d := range l.queue {
		w.Send(d)
	}
	l.queue, l.queued, l.w = nil, 0, w
	o.mu.Unlock()
	r.log.Info("s2s: stream up", "from", l.pair.local, "to", l.pair.remote)
	r.metrics.s2sStreams(+1)
	// The receiving server sends nothing on it but its closing tag or a stream error.
	go func() {
		for {
			if _, err := c.R.Next(); err != nil {
				break
			}
		}
		o.mu.Lock()
		if o.links[l.pair] == l {
			delete(o.links, l.pair)
		}
		o.mu.Unlock()
		r.metrics.s2sStreams(-1)
		r.stopSession(w)
		r.log.Info("s2s: stream closed", "from", l.pair.local, "to", l.pair.remote)
	}()
}

// stop closes every outgoing stream.
func (o *s2sOut) stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.links {
		if l.w != nil {
			l.w.Close(&xmpp.StreamError{Condition: "system-shutdown"})
		}
	}
}

// s2sBounce answers a stanza that could not go to a remote domain, as that domain's
// server would: an error from its 'to' to its 'from' (errors themselves are dropped).
func (r *Router) s2sBounce(p s2sPair, data []byte, e *xmpp.StanzaError) {
	env, err := xmpp.ParseStanza(data)
	if err != nil || env.Type == "error" || env.From == "" {
		return
	}
	if env.Kind == xmpp.KindPresence && env.Type != "subscribe" && env.Type != "probe" {
		return // directed and broadcast presence to an unreachable server: nobody waits for it
	}
	reply, err := xmpp.ParseStanza(xmpp.ErrorReply(env, env.To, env.From, e))
	if err != nil {
		return
	}
	r.Route(r.s2sPeer(p.local, p.remote), reply.From, reply)
}

// s2sPeer is the session that stands for a remote domain as a sender.
func (r *Router) s2sPeer(local, remote string) *Session {
	return &Session{Kind: KindS2S, Host: local, Bare: remote, Full: remote, router: r}
}

// ServeS2S runs an authenticated incoming server stream from remote (c.Host is the
// local domain it was opened for): each stanza must come from remote (else invalid-from)
// and go to a domain served here or a component's (else host-unknown).
func (r *Router) ServeS2S(c *xmpp.Conn, remote string) {
	s := r.s2sPeer(c.Host, remote)
	out := nodelink.NewOutbox(r.link)
	c.R.BeforeFill = out.Flush
	defer out.Flush()
	if r.limits().IdleTimeout > 0 {
		c.Deadline(r.limits().IdleTimeout)
	}
	fail := func(cond, text string) {
		c.Fail(&xmpp.StreamError{Condition: cond, Text: text}, c.Host)
	}
	for {
		env, err := c.R.Next()
		if err != nil {
			if se, ok := xmpp.AsStreamError(err); ok {
				c.Fail(se, c.Host)
			} else {
				if errors.Is(err, xmpp.ErrStreamEnd) {
					_ = c.WriteRaw([]byte("</stream:stream>"))
				}
				_ = c.Close()
			}
			return
		}
		if env.Kind == xmpp.KindOther {
			fail("unsupported-stanza-type", env.Name.Local)
			return
		}
		from, err := r.jids.parse(env.From)
		if err != nil || from.Domainpart() != remote {
			fail("invalid-from", env.From)
			return
		}
		to, err := jid.Parse(env.To)
		if err != nil || (r.hosts[to.Domainpart()] == nil && !r.comps.isComponentDomain(to.Domainpart())) {
			fail("host-unknown", env.To)
			return
		}
		if env.Kind == xmpp.KindIQ && !validIQ(env) {
			s.Send(xmpp.ErrorReply(env, "", env.From, xmpp.ErrBadRequest))
			continue
		}
		r.metrics.stanzaIn(env.Kind, fromS2S, unsafe.Pointer(s))
		r.route(out, s, env.From, env)
		if d := r.limits().IdleTimeout; d > 0 {
			c.Deadline(d)
		}
	}
}
