package actors

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"time"
	"unsafe"

	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/nodelink/pb"
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
	IdleTimeout    time.Duration // an outgoing stream nothing was written to this long closes
}

// s2sPair names an outgoing stream.
type s2sPair struct{ local, remote string }

// s2sOut is this node's outgoing streams, and what it handed to other nodes' streams.
type s2sOut struct {
	r     *Router
	cfg   S2S
	mu    sync.Mutex
	links map[s2sPair]*s2sLink
	in    map[*xmpp.Conn]struct{} // incoming streams being read here (closed at stop)

	// Forwarding: what this node gave another node's stream (by owner node, by number)
	// until the owner acknowledges it; sent again to the next owner if that one dies.
	fmu     sync.Mutex
	seq     uint64
	unacked map[string]map[uint64]forwarded
	fbytes  int
	// Owning: the highest number each other node's stanzas reached here, acknowledged
	// by a ticker (one S2SAck per node and tick, not one per stanza).
	amu    sync.Mutex
	toAck  map[string]uint64
	acking bool
}

// forwarded is a stanza handed to another node's stream, kept until acknowledged.
type forwarded struct {
	pair s2sPair
	data []byte
}

// s2sAckEvery is how often an owner acknowledges what other nodes handed it.
const s2sAckEvery = 50 * time.Millisecond

// s2sLink is one outgoing stream: being opened (queue) or up (w).
type s2sLink struct {
	pair   s2sPair
	queue  [][]byte
	queued int
	w      *Session // nil while connecting
	used   bool     // something was written since the idle check last looked
}

func (o *s2sOut) enabled() bool { return o != nil && o.cfg.Dial != nil }

// waitIfBusy holds a sender's reader while this node's stream from local to remote has
// more than half of limits.max_send_queue_bytes waiting (the remote server is slower than
// its senders), until a quarter is left or limits.write_timeout passes: senders slow down
// before they are bounced (at three quarters).
func (o *s2sOut) waitIfBusy(out *nodelink.Outbox, local, remote string) {
	o.mu.Lock()
	l := o.links[s2sPair{local, remote}]
	var w *Session
	if l != nil {
		w = l.w
	}
	o.mu.Unlock()
	lim := o.r.limits()
	if w == nil || w.queued.Load() <= lim.MaxSendQueue/2 {
		return
	}
	out.Flush()
	for give := time.Now().Add(lim.WriteTimeout); w.queued.Load() > lim.MaxSendQueue/4 && !w.closed.Load() && time.Now().Before(give); {
		time.Sleep(time.Millisecond)
	}
}

// owner is the node that owns the cluster's stream from local to remote ("" and true:
// this one).
func (o *s2sOut) owner(p s2sPair) (cluster.Member, bool) {
	if o.r.cluster == nil {
		return cluster.Member{}, true
	}
	key := "s2s\x00" + p.local + "\x00" + p.remote
	m := o.r.cluster.Owner(key)
	if m.ID != "" && m.ID != o.r.nodeID && o.r.comps.dir.AddressDown(m.Remote) {
		// The owner just died (its transport failed) and the membership does not know
		// yet: the node that will own the stream once it does, owns it now.
		var live []cluster.Member
		for _, x := range o.r.cluster.Members() {
			if x.ID == o.r.nodeID || !o.r.comps.dir.AddressDown(x.Remote) {
				live = append(live, x)
			}
		}
		m = cluster.OwnerAmong(live, key)
	}
	return m, m.ID == "" || m.ID == o.r.nodeID
}

// send writes a stanza to the remote domain's server, from the local domain: on this
// node's stream if it owns the pair's, else through the owner.
func (o *s2sOut) send(local, remote string, data []byte) {
	if m, self := o.owner(s2sPair{local, remote}); !self {
		o.forward(m.ID, s2sPair{local, remote}, data)
		return
	}
	o.sendHere(local, remote, data)
}

// forward hands a stanza to the owner of its pair's stream and keeps it until the owner
// acknowledges it (past s2s.max_queued_bytes kept, it is bounced instead).
func (o *s2sOut) forward(node string, p s2sPair, data []byte) {
	o.fmu.Lock()
	if o.fbytes+len(data) > o.cfg.MaxQueuedBytes {
		o.fmu.Unlock()
		o.r.s2sBounce(p, data, xmpp.ErrResourceConstraint)
		return
	}
	o.seq++
	seq := o.seq
	if o.unacked == nil {
		o.unacked = make(map[string]map[uint64]forwarded)
	}
	if o.unacked[node] == nil {
		o.unacked[node] = make(map[uint64]forwarded)
	}
	o.unacked[node][seq] = forwarded{p, data}
	o.fbytes += len(data)
	o.fmu.Unlock()
	o.r.link.ToNode(node, &pb.S2SStanza{Local: p.local, Remote: p.remote, Stanza: data, Node: o.r.nodeID, Seq: seq})
}

// acked forgets what node acknowledged, up to seq.
func (o *s2sOut) acked(node string, seq uint64) {
	o.fmu.Lock()
	defer o.fmu.Unlock()
	for n, f := range o.unacked[node] {
		if n <= seq {
			o.fbytes -= len(f.data)
			delete(o.unacked[node], n)
		}
	}
}

// ownerGone sends again, in order, what node had not acknowledged: it died (or its
// transport ended), and the pairs' streams have, or will have, another owner.
func (o *s2sOut) ownerGone(node string) {
	o.fmu.Lock()
	pending := o.unacked[node]
	delete(o.unacked, node)
	seqs := make([]uint64, 0, len(pending))
	for n, f := range pending {
		seqs = append(seqs, n)
		o.fbytes -= len(f.data)
	}
	o.fmu.Unlock()
	if len(seqs) == 0 {
		return
	}
	slices.Sort(seqs)
	o.r.log.Info("s2s: sending again what a stream's owner did not acknowledge", "owner", node, "stanzas", len(seqs))
	for _, n := range seqs {
		f := pending[n]
		o.send(f.pair.local, f.pair.remote, f.data)
	}
}

// fromNode takes a stanza another node handed to this node's stream, and acknowledges it
// with the next tick.
func (o *s2sOut) fromNode(m *pb.S2SStanza) {
	o.sendHere(m.Local, m.Remote, m.Stanza)
	o.amu.Lock()
	if o.toAck == nil {
		o.toAck = make(map[string]uint64)
	}
	if m.Seq > o.toAck[m.Node] {
		o.toAck[m.Node] = m.Seq
	}
	if !o.acking {
		o.acking = true
		time.AfterFunc(s2sAckEvery, o.ack)
	}
	o.amu.Unlock()
}

func (o *s2sOut) ack() {
	o.amu.Lock()
	acks := o.toAck
	o.toAck, o.acking = nil, false
	o.amu.Unlock()
	for node, seq := range acks {
		o.r.link.ToNode(node, &pb.S2SAck{Node: o.r.nodeID, Seq: seq})
	}
}

// sendHere writes a stanza on this node's stream from local to remote, opening it first.
func (o *s2sOut) sendHere(local, remote string, data []byte) {
	if !inServerNS(data) { // made by the server (presence, subscriptions) in jabber:client
		env, err := xmpp.ParseStanza(data)
		if err != nil {
			return
		}
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
		l.used = true
		o.mu.Unlock()
		// The stream's writer would be cut off at limits.max_send_queue_bytes, and what
		// it held lost: past three quarters of it, the remote server is not keeping up,
		// and the sender hears so instead.
		if l.w.queued.Load()+int64(len(data)) > o.r.limits().MaxSendQueue*3/4 {
			o.r.s2sBounce(p, data, xmpp.ErrResourceConstraint)
			return
		}
		o.r.metrics.S2SOut.Inc()
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
	if o.links[l.pair] != l {
		// The stream moved to another node while this one was opening (rehome): what
		// waited went there; this stream closes unused.
		o.mu.Unlock()
		r.stopSession(w)
		return
	}
	for _, d := range l.queue {
		w.Send(d)
	}
	r.metrics.S2SOut.Add(float64(len(l.queue)))
	l.queue, l.queued, l.w = nil, 0, w
	o.mu.Unlock()
	r.log.Info("s2s: stream up", "from", l.pair.local, "to", l.pair.remote)
	r.metrics.s2sStreams("out", l.pair.remote, +1)
	if o.cfg.IdleTimeout > 0 {
		go o.closeIdle(l)
	}
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
		r.metrics.s2sStreams("out", l.pair.remote, -1)
		r.stopSession(w)
		r.log.Info("s2s: stream closed", "from", l.pair.local, "to", l.pair.remote)
	}()
}

// closeIdle closes an outgoing stream once nothing was written to it for the idle
// timeout (checked twice per timeout: a stream idles between one and one and a half).
func (o *s2sOut) closeIdle(l *s2sLink) {
	t := time.NewTicker(o.cfg.IdleTimeout / 2)
	defer t.Stop()
	idle := 0
	for range t.C {
		o.mu.Lock()
		if o.links[l.pair] != l {
			o.mu.Unlock()
			return
		}
		if l.used {
			l.used, idle = false, 0
			o.mu.Unlock()
			continue
		}
		if idle++; idle < 2 {
			o.mu.Unlock()
			continue
		}
		delete(o.links, l.pair)
		o.mu.Unlock()
		o.r.log.Info("s2s: idle stream closed", "from", l.pair.local, "to", l.pair.remote)
		l.w.Close(nil)
		return
	}
}

// rehome closes the streams of pairs this node no longer owns (the membership changed):
// their new owners open their own. What waited for one being opened goes to the owner.
func (o *s2sOut) rehome() {
	var moved [][]byte
	var pairs []s2sPair
	o.mu.Lock()
	for p, l := range o.links {
		if _, self := o.owner(p); self {
			continue
		}
		delete(o.links, p)
		if l.w != nil {
			l.w.Close(nil) // after what it was given
			continue
		}
		for _, d := range l.queue {
			moved = append(moved, d)
			pairs = append(pairs, p)
		}
		l.queue, l.queued = nil, 0
	}
	o.mu.Unlock()
	for i, d := range moved {
		o.send(pairs[i].local, pairs[i].remote, d)
	}
}

// stop closes every outgoing stream, and every incoming one with system-shutdown.
func (o *s2sOut) stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.links {
		if l.w != nil {
			l.w.Close(&xmpp.StreamError{Condition: "system-shutdown"})
		}
	}
	for c := range o.in {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.WriteRaw((&xmpp.StreamError{Condition: "system-shutdown"}).Bytes())
		_ = c.WriteRaw([]byte("</stream:stream>"))
		_ = c.Close()
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
	r.routeMade(r.s2sPeer(p.local, p.remote), env.To, xmpp.ErrorReply(env, env.To, env.From, e))
}

// s2sPeer is the session that stands for a remote domain as a sender.
func (r *Router) s2sPeer(local, remote string) *Session {
	return &Session{Kind: KindS2S, Host: local, Bare: remote, Full: remote, router: r}
}

// ServeS2S runs an authenticated incoming server stream from remote (c.Host is the
// local domain it was opened for): each stanza must come from remote (else invalid-from)
// and go to a domain served here or a component's (else host-unknown).
func (r *Router) ServeS2S(c *xmpp.Conn, remote string) {
	r.metrics.s2sStreams("in", remote, +1)
	defer r.metrics.s2sStreams("in", remote, -1)
	o := r.s2s
	o.mu.Lock()
	if o.in == nil {
		o.in = make(map[*xmpp.Conn]struct{})
	}
	o.in[c] = struct{}{}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		delete(o.in, c)
		o.mu.Unlock()
	}()
	s := r.s2sPeer(c.Host, remote)
	var rate shaper // s2s.bytes_per_second, s2s.stanzas_per_second
	out := nodelink.NewOutbox(r.link)
	c.R.BeforeFill = out.Flush
	defer out.Flush()
	// Silent for half of limits.idle_timeout, the remote server gets an XEP-0199 ping
	// (over the outgoing stream to it); its answer comes back on this stream. Silent for
	// the other half too, the stream ends (connection-timeout).
	pinged := false
	half := func() time.Duration { return r.limits().IdleTimeout / 2 }
	if half() > 0 {
		_ = c.SetReadDeadline(time.Now().Add(half()))
		c.R.OnTimeout = func(between bool) (park, again bool) {
			if pinged || half() <= 0 {
				return false, false
			}
			pinged = true
			r.s2s.send(c.Host, remote, []byte("<iq type='get' id='sbping-"+xmpp.NewID()[:8]+"' from='"+c.Host+
				"' to='"+remote+"'><ping xmlns='urn:xmpp:ping'/></iq>"))
			_ = c.SetReadDeadline(time.Now().Add(half()))
			return false, true
		}
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
		lim := r.limits()
		if d := rate.delayAt(lim.S2SBytes, lim.S2SStanzas, lim.ClientBurst, len(env.Raw)); d > 0 {
			out.Flush()
			time.Sleep(d)
		}
		if s.work.n.Load() > 0 {
			// A subscription stanza or probe changes or reads a roster first (on the
			// stream's work queue): what the remote server sent after it waits, so that
			// its user's presence does not overtake its approval.
			out.Flush()
			s.waitWork(1)
		}
		if d := half(); d > 0 {
			pinged = false
			_ = c.SetReadDeadline(time.Now().Add(d))
		}
	}
}

// inServerNS reports whether a stanza was written for an s2s stream already: stampIn (and
// Envelope.RewriteNS) put its namespace first, right after the element's name. Only that
// exact form counts (an attribute value elsewhere in the tag proves nothing), so that it
// needs no parsing and rewriting.
func inServerNS(data []byte) bool {
	i := bytes.IndexAny(data, " />")
	return i > 1 && data[0] == '<' && bytes.HasPrefix(data[i:], []byte(" xmlns='"+xmpp.NSServer+"'"))
}
