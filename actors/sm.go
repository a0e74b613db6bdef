package actors

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/xml"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// XEP-0198 stream management. A client that enables it after binding counts what it
// handled and asks the server to count: the reader counts the client's stanzas
// (Session.smIn) and answers its <r/>; the session actor numbers every stanza it writes
// and keeps each until the client acknowledges it (<a h=…/>), asking for an
// acknowledgement (<r/>) once per burst. With resumption, a connection that drops
// without a closing tag detaches the session instead of ending it: it stays bound and
// available, and what is sent to it waits in its queue, for at most the client's 'max'
// up to limits.sm_resume_timeout. A new stream of the same account that resumes it
// (<resume previd=… h=…/> instead of binding) takes its place: the server answers with
// its own count and writes again what the client did not acknowledge. A session that
// ends with stanzas unacknowledged (resumption timeout, a closing tag, the server ending
// it, past limits.sm_max_unacked or sm_max_unacked_bytes) hands them on as if they had
// never been sent: messages go to the account's other resources or offline storage,
// IQ requests are answered service-unavailable, nothing is lost silently.

// smState is a session's outbound half of stream management; only its actor touches it.
type smState struct {
	id    string        // resumption id; "" when the session is not resumable
	max   time.Duration // how long a detached session waits to be resumed
	out   uint32        // stanzas written since enable: the h the client should reach
	queue [][]byte      // unacknowledged stanzas, oldest first: numbers out-len(queue)+1 … out
	bytes int
	// reqAt: out when the server last asked for an acknowledgement; requested: that
	// request is not answered yet.
	reqAt     uint32
	requested bool
	detached  bool   // the connection is gone: stanzas are kept, not written
	gen       uint32 // the attachment: a reader's detach for an earlier one is stale
	timer     *time.Timer
}

// Messages to a session actor.
type (
	smEnable struct {
		id  string
		max time.Duration
	}
	smAnswer   struct{}             // the client sent <r/>: write <a h=smIn/>
	smAck      struct{ h uint32 }   // the client acknowledged h stanzas
	smDetach   struct{ gen uint32 } // the reader of attachment gen lost its connection
	smExpire   struct{ gen uint32 } // the resumption window of a detachment ended
	smEnd      struct{}             // the session ends: hand on what is unacknowledged
	smHandOver struct {             // another node's resumed stream takes over (smTakeover)
		h    uint32
		to   *actor.PID
		done chan *pb.SMState
	}
	smAdopt  struct{ st *pb.SMState } // a session moved here: its state
	smAttach struct {                 // a resumed stream takes over
		conn *xmpp.Conn
		h    uint32
		prev string
		done chan smAttached
	}
)

type smAttached struct {
	ok  bool
	gen uint32
}

// smID is a resumption id: the session's resource (stable for its life, whichever node
// it moves to: the user's owner knows where it is) and an unguessable token.
func smID(res string) (id, token string) {
	var b [18]byte
	_, _ = rand.Read(b[:])
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return base64.RawURLEncoding.EncodeToString([]byte(res)) + "." + token, token
}

// parseSMID splits a resumption id into its resource and token.
func parseSMID(id string) (res, token string, ok bool) {
	r, token, ok := strings.Cut(id, ".")
	if !ok || token == "" {
		return "", "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(r)
	if err != nil || len(b) == 0 {
		return "", "", false
	}
	return string(b), token, true
}

// tokenIs compares a session's resumption token in constant time.
func (s *Session) tokenIs(token string) bool {
	return s.smToken != "" && subtle.ConstantTimeCompare([]byte(s.smToken), []byte(token)) == 1
}

// smFailed is the <failed/> nonza with a stanza error condition (and h, if known).
func smFailed(cond string, h *uint32) []byte {
	var b bytes.Buffer
	b.WriteString("<failed xmlns='" + xmpp.NSSM + "'")
	if h != nil {
		b.WriteString(" h='" + strconv.FormatUint(uint64(*h), 10) + "'")
	}
	b.WriteString("><" + cond + " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
	return b.Bytes()
}

// smAttrs are the attributes of enable, resume and a.
type smAttrs struct {
	Resume string `xml:"resume,attr"`
	Max    string `xml:"max,attr"`
	H      string `xml:"h,attr"`
	PrevID string `xml:"previd,attr"`
}

func parseSMAttrs(raw []byte) (smAttrs, bool) {
	var a smAttrs
	return a, xml.Unmarshal(raw, &a) == nil
}

func parseH(v string) (uint32, bool) {
	n, err := strconv.ParseUint(v, 10, 32)
	return uint32(n), err == nil
}

// --- the reader's side ------------------------------------------------------------

// smNonza handles a bound client's stream-management element; false ends the session.
func (cr *c2sReader) smNonza(env *xmpp.Envelope) bool {
	r, s := cr.r, cr.s
	switch env.Name.Local {
	case "enable":
		a, ok := parseSMAttrs(env.Raw)
		if !ok || s.smOn.Load() {
			r.sys.Root.Send(s.pid, &smNonzaOut{data: smFailed("unexpected-request", nil)})
			return true
		}
		m := &smEnable{}
		lim := r.limits()
		if (a.Resume == "true" || a.Resume == "1") && lim.SMResume > 0 {
			m.max = lim.SMResume
			if secs, err := strconv.Atoi(a.Max); err == nil && secs > 0 && time.Duration(secs)*time.Second < m.max {
				m.max = time.Duration(secs) * time.Second
			}
			m.id, s.smToken = smID(s.Res)
			s.resumable.Store(true)
		}
		s.smOn.Store(true)
		r.sys.Root.Send(s.pid, m)
		return true
	case "r":
		if s.smOn.Load() {
			r.sys.Root.Send(s.pid, smAnswer{})
			return true
		}
	case "a":
		if s.smOn.Load() {
			a, _ := parseSMAttrs(env.Raw)
			h, ok := parseH(a.H)
			if !ok {
				s.Close(&xmpp.StreamError{Condition: "bad-format", Text: "h"})
				return false
			}
			r.sys.Root.Send(s.pid, smAck{h: h})
			return true
		}
	}
	s.Close(&xmpp.StreamError{Condition: "unsupported-stanza-type", Text: env.Name.Local})
	return false
}

// smNonzaOut is a nonza for the client (not a stanza: not counted).
type smNonzaOut struct{ data []byte }

// smUnbound handles a stream-management element before binding: resume, or an enable
// that comes too early. It reports whether the stream goes on.
func (cr *c2sReader) smUnbound(env *xmpp.Envelope) bool {
	c := cr.c
	if env.Name.Local != "resume" {
		return c.WriteRaw(smFailed("unexpected-request", nil)) == nil
	}
	a, _ := parseSMAttrs(env.Raw)
	h, hok := parseH(a.H)
	res, token, ok := parseSMID(a.PrevID)
	if hok && ok {
		bare := c.User + "@" + c.Host
		if s := cr.r.users.lookupFull(bare, res); s != nil {
			ok = cr.resumeLocal(s, token, a.PrevID, h)
		} else {
			ok = cr.resumeMoved(bare, res, token, h)
		}
	}
	if !ok {
		return c.WriteRaw(smFailed("item-not-found", nil)) == nil
	}
	cr.c.Deadline(0)
	cr.s.logger().Debug("stream resumed", "h", h)
	return true
}

// takeReader closes the connection a session is on and waits for its reader to end:
// the client may have moved networks before the server saw the old one drop, and the
// count of what it sent is final only then.
func (s *Session) takeReader() bool {
	if old := s.conn.Load(); old != nil {
		_ = old.Close()
	}
	if g := s.readerGone.Load(); g != nil {
		select {
		case <-*g:
		case <-time.After(smWait):
			return false
		}
	}
	return true
}

// resumed is the <resumed/> nonza: the resumption id, and the count of what the client sent.
func resumed(id string, h uint32) string {
	return "<resumed xmlns='" + xmpp.NSSM + "' previd='" + id + "' h='" + strconv.FormatUint(uint64(h), 10) + "'/>"
}

// stopTimer stops the resumption window's timer, if one runs.
func (sm *smState) stopTimer() {
	if sm.timer != nil {
		sm.timer.Stop()
		sm.timer = nil
	}
}

// newReader notes that a new reader serves the session's connection; the channel is to
// be closed when that reader ends (takeReader waits for it).
func (s *Session) newReader() chan struct{} {
	gone := make(chan struct{})
	s.readerGone.Store(&gone)
	return gone
}

// smWait bounds each step of a resumption (an old reader ending, a session actor or
// another node answering).
const smWait = 5 * time.Second

// resumeLocal attaches this connection to a session of this node.
func (cr *c2sReader) resumeLocal(s *Session, token, prev string, h uint32) bool {
	if !s.tokenIs(token) || !s.takeReader() {
		return false
	}
	gone := s.newReader()
	done := make(chan smAttached, 1)
	cr.r.sys.Root.Send(s.pid, &smAttach{conn: cr.c, h: h, prev: prev, done: done})
	var res smAttached
	select {
	case res = <-done:
	case <-time.After(smWait):
	}
	if !res.ok {
		close(gone)
		return false
	}
	cr.s, cr.gen, cr.gone = s, res.gen, gone
	return true
}

// resumeMoved resumes a session that is on another node (the client reconnected through
// another node, or its node is stopping): the user's owner says where it is, that node
// hands it over, and a new session here takes its place, its resource and its queue.
// What is routed to the old one meanwhile follows it here.
func (cr *c2sReader) resumeMoved(bare, res, token string, h uint32) bool {
	r := cr.r
	node, _, found := r.users.locate(bare, res)
	if !found || node == r.nodeID {
		return false
	}
	s := r.newSession(KindC2S, cr.c, func(s *Session) {
		s.Host, s.Local, s.Res = cr.c.Host, cr.c.User, res
		s.Bare, s.Full = bare, bare+"/"+res
		s.adopting = true
	})
	answer, err := r.link.Request(node, &pb.SMTakeover{Bare: bare, Resource: res, Token: token, H: h, To: toRef(s.pid)}, 2*smWait)
	st, _ := answer.(*pb.SMState)
	if err != nil || st == nil || !st.Ok {
		r.sys.Root.Stop(s.pid)
		return false
	}
	s.available.Store(st.Available)
	s.priority.Store(st.Priority)
	if len(st.Presence) > 0 {
		p := st.Presence
		s.lastPresence.Store(&p)
	}
	s.rosterInterested.Store(st.RosterInterested)
	s.blocklistInterested.Store(st.BlocklistInterested)
	s.carbons.Store(st.Carbons)
	s.userCarbons.Store(st.UserCarbons)
	for _, to := range st.Directed {
		s.addDirected(to)
	}
	s.smIn.Store(st.In)
	s.smToken = token
	s.smOn.Store(true)
	s.resumable.Store(true)
	cr.gone = s.newReader()
	r.sys.Root.Send(s.pid, &smAdopt{st: st})
	s.resumed = true
	r.users.sessions.Bind(bare, res, s)
	r.users.register(s, true)
	cr.s, cr.gen = s, 0
	return true
}

// smTakeover hands a session of this node over to a resumed stream on another node
// (pb.SMTakeover): a state that is not Ok when there is no such session, the token is
// wrong or the session could not be handed over.
func (r *Router) smTakeover(m *pb.SMTakeover) *pb.SMState {
	s := r.users.lookupFull(m.Bare, m.Resource)
	if s == nil || !s.tokenIs(m.Token) || !s.takeReader() {
		return &pb.SMState{}
	}
	done := make(chan *pb.SMState, 1)
	r.sys.Root.Send(s.pid, &smHandOver{h: m.H, to: fromRef(m.To), done: done})
	var st *pb.SMState
	select {
	case st = <-done:
	case <-time.After(smWait):
	}
	if st == nil || !st.Ok {
		return &pb.SMState{}
	}
	// It is no longer this node's: it leaves the local table (the new session replaces
	// it at the owner), forwards what still comes to it for a while, then stops.
	r.users.sessions.Unbind(s.Bare, s.Res, s)
	time.AfterFunc(movedLinger, func() { r.stopSession(s) })
	s.logger().Debug("session moved to another node for its resumption")
	return st
}

// movedLinger is how long a session that moved to another node forwards what is still
// routed to it (by senders that looked it up before the owner knew).
const movedLinger = 10 * time.Second

// smHandOver (the actor's side of smTakeover) drops what the client acknowledged and
// gives up the rest, and the session's state, to the new session; from then on what
// comes for it goes there.
func (s *Session) smHandOver(m *smHandOver) *pb.SMState {
	sm := s.sm
	if sm == nil || s.closed.Load() || s.movedTo != nil {
		return &pb.SMState{}
	}
	sm.stopTimer()
	s.smAcked(m.h)
	st := &pb.SMState{Ok: true, Id: sm.id, MaxMs: sm.max.Milliseconds(), In: s.smIn.Load(), Out: sm.out,
		Queue: sm.queue, Available: s.available.Load(), Priority: s.priority.Load(),
		RosterInterested: s.rosterInterested.Load(), Carbons: s.carbons.Load(), UserCarbons: s.userCarbons.Load(),
		Directed: s.takeDirected(), BlocklistInterested: s.blocklistInterested.Load()}
	if p := s.lastPresence.Load(); p != nil {
		st.Presence = *p
	}
	sm.queue, sm.bytes, sm.detached = nil, 0, true
	s.movedTo = m.to
	s.moved.Store(true)
	s.dropWriter()
	return st
}

// smAdopt (the new session's side of resumeMoved) takes the handed-over state: it
// writes <resumed/>, what the client had not acknowledged, then what came for it
// while it waited.
func (s *Session) smAdopt(st *pb.SMState) {
	s.sm = &smState{id: st.Id, max: time.Duration(st.MaxMs) * time.Millisecond, out: st.Out - uint32(len(st.Queue))}
	s.adopting = false
	w := s.writer()
	_, _ = w.WriteString(resumed(st.Id, st.In))
	early := s.early
	s.early = nil
	for _, d := range st.Queue {
		if !s.put(d, false) {
			return
		}
	}
	for _, d := range early {
		if !s.put(d, true) {
			return
		}
	}
	s.flush()
}

// --- the actor's side -------------------------------------------------------------

// put writes a stanza (several: maybe more than one) for the client; with stream management each is
// numbered and kept until acknowledged (and only kept while detached). false: the
// connection failed, or the session ended past its limits.
func (s *Session) put(data []byte, several bool) bool {
	switch {
	case s.movedTo != nil: // resumed on another node: it follows the session there
		s.router.link.Deliver(s.movedTo, data)
		return true
	case s.adopting: // moving here: written after <resumed/> and the handed-over queue
		s.early = append(s.early, data)
		return true
	}
	if sm := s.sm; sm != nil {
		if !s.smKeep(data, several) {
			return false
		}
		if sm.detached {
			return true
		}
	}
	if _, err := s.writer().Write(data); err != nil {
		s.abort()
		return false
	}
	return true
}

// smKeep numbers and keeps stanzas until the client acknowledges them; past
// limits.sm_max_unacked(_bytes) the session ends.
func (s *Session) smKeep(data []byte, several bool) bool {
	sm := s.sm
	n := 1
	if several { // a Deliver from another node may carry several stanzas: count them
		if envs, err := xmpp.Children(data, xmpp.NSClient); err == nil && len(envs) > 1 {
			for _, e := range envs {
				sm.queue = append(sm.queue, e.Raw)
			}
			n = len(envs)
		} else {
			sm.queue = append(sm.queue, data)
		}
	} else {
		sm.queue = append(sm.queue, data)
	}
	sm.out += uint32(n)
	sm.bytes += len(data)
	lim := s.router.limits()
	if len(sm.queue) > lim.SMMaxUnacked || sm.bytes > lim.SMMaxUnackedB {
		s.logger().Debug("too many unacknowledged stanzas: ending the session", "stanzas", len(sm.queue), "bytes", sm.bytes)
		s.smOverflow()
		return false
	}
	return true
}

// smOverflow ends a session whose client does not acknowledge what it is sent.
func (s *Session) smOverflow() {
	if s.sm.detached {
		go s.router.endSession(s)
		return
	}
	s.ended.Store(true)
	s.handle(&closeStream{err: &xmpp.StreamError{Condition: "policy-violation", Text: "too many unacknowledged stanzas"}})
}

// smRequest asks for an acknowledgement when stanzas were written since the last
// request and it is answered (one request per round trip).
func (s *Session) smRequest() {
	sm := s.sm
	if sm == nil || sm.detached || sm.requested || sm.out == sm.reqAt || len(sm.queue) == 0 {
		return
	}
	sm.requested, sm.reqAt = true, sm.out
	_, _ = s.w.WriteString("<r xmlns='" + xmpp.NSSM + "'/>")
}

// smHandle handles the stream-management messages of a session actor.
func (s *Session) smHandle(msg any) bool {
	switch m := msg.(type) {
	case *smEnable:
		s.sm = &smState{id: m.id, max: m.max}
		b := "<enabled xmlns='" + xmpp.NSSM + "'"
		if m.id != "" {
			b += " id='" + m.id + "' resume='true' max='" + strconv.Itoa(int(m.max/time.Second)) + "'"
		}
		s.nonza([]byte(b + "/>"))
	case *smNonzaOut:
		s.nonza(m.data)
	case smAnswer:
		s.nonza([]byte("<a xmlns='" + xmpp.NSSM + "' h='" + strconv.FormatUint(uint64(s.smIn.Load()), 10) + "'/>"))
	case smAck:
		if s.sm != nil {
			s.sm.requested = false
			s.smAcked(m.h)
		}
	case smDetach:
		s.smDetached(m.gen)
	case smExpire:
		if sm := s.sm; sm != nil && sm.detached && sm.gen == m.gen && !s.closed.Load() {
			s.logger().Debug("resumption window ended")
			go s.router.endSession(s)
		}
	case *smAttach:
		m.done <- s.smAttach(m)
	case *smHandOver:
		m.done <- s.smHandOver(m)
	case *smAdopt:
		s.smAdopt(m.st)
	case smEnd:
		if sm := s.sm; sm != nil && len(sm.queue) > 0 {
			q := sm.queue
			sm.queue, sm.bytes = nil, 0
			go s.router.handOn(s, q)
		}
	default:
		return false
	}
	return true
}

// nonza writes an element that is not a stanza (not counted), and flushes.
func (s *Session) nonza(b []byte) {
	if s.closed.Load() || (s.sm != nil && s.sm.detached) {
		return
	}
	if _, err := s.writer().Write(b); err != nil {
		s.abort()
		return
	}
	if !s.hold.Load() {
		s.flush()
	}
}

// smAcked drops what the client acknowledged. An h beyond what was sent, or before
// what it acknowledged already, is ignored.
func (s *Session) smAcked(h uint32) {
	sm := s.sm
	n := int(h - (sm.out - uint32(len(sm.queue))))
	if n <= 0 || n > len(sm.queue) {
		return
	}
	for _, d := range sm.queue[:n] {
		sm.bytes -= len(d)
	}
	clear(sm.queue[:n])
	sm.queue = sm.queue[n:]
}

// smDetached: the reader of attachment gen lost its connection. A resumable session
// waits to be resumed; its timer ends it.
func (s *Session) smDetached(gen uint32) {
	sm := s.sm
	if sm == nil || sm.gen != gen || s.closed.Load() || s.movedTo != nil {
		return
	}
	if !sm.detached {
		// What CSI held is kept for the next stream, in order.
		s.csi.inactive = false
		sm.detached = true
		s.releaseHeld()
		s.dropWriter()
		if c := s.conn.Load(); c != nil {
			_ = c.Close()
		}
	}
	sm.stopTimer()
	r, pid := s.router, s.pid
	sm.timer = time.AfterFunc(sm.max, func() { r.sys.Root.Send(pid, smExpire{gen: gen}) })
	s.logger().Debug("connection lost: waiting for resumption", "for", sm.max, "unacked", len(sm.queue))
}

// smAttach makes a resumed stream the session's connection: the old one is closed, the
// client's count drops what it had, and <resumed/> and what it had not are written.
func (s *Session) smAttach(m *smAttach) smAttached {
	sm := s.sm
	if sm == nil || sm.id != m.prev || s.closed.Load() {
		return smAttached{}
	}
	sm.stopTimer()
	s.dropWriter()
	if old := s.conn.Load(); old != nil {
		_ = old.Close()
	}
	s.conn.Store(m.conn)
	s.writeDeadline = time.Time{}
	s.csi = csi{}
	sm.gen++
	sm.detached, sm.requested = false, false
	s.smAcked(m.h)
	w := s.writer()
	_, _ = w.WriteString(resumed(sm.id, s.smIn.Load()))
	for _, d := range sm.queue {
		_, _ = w.Write(d)
	}
	s.flush()
	return smAttached{ok: true, gen: sm.gen}
}

// --- the end of a session -----------------------------------------------------------

// handOn treats what a session's client never acknowledged as never delivered:
// messages of type normal or chat go to the account's other resources, or offline
// storage, or back to the sender, as a message to the bare JID would; IQ requests are
// answered service-unavailable; presence, errors, carbon copies, groupchat and
// headline messages are dropped (they would be noise once the session is gone).
func (r *Router) handOn(s *Session, q [][]byte) {
	for _, d := range q {
		env, err := xmpp.ParseStanza(d)
		if err != nil {
			continue
		}
		switch env.Kind {
		case xmpp.KindMessage:
			if env.Type == "error" || env.Type == "groupchat" || env.Type == "headline" || isCarbonCopy(env) {
				continue
			}
			r.users.toUser(s, env.From, s.Bare, "", s.Bare, env)
		case xmpp.KindIQ:
			if isRequest(env) {
				r.routeMade(s, s.Full, xmpp.ErrorReply(env, s.Full, env.From, xmpp.ErrServiceUnavailable))
			}
		}
	}
}

func isCarbonCopy(env *xmpp.Envelope) bool {
	return env.HasChild && env.Child.Space == NSCarbons && (env.Child.Local == "received" || env.Child.Local == "sent")
}

// endSession ends a bound client session, once: it leaves the directory and its
// owner, goes offline, and what its client did not acknowledge is handed on.
func (r *Router) endSession(s *Session) {
	if !s.finished.CompareAndSwap(false, true) {
		return
	}
	if s.moved.Load() {
		r.stopSession(s) // it lives on on another node
		return
	}
	r.users.unbindUser(s)
	r.del.accountDown(s)
	if !s.replaced.Load() {
		r.users.goOffline(s)
	}
	if s.smOn.Load() {
		r.sys.Root.Send(s.pid, smEnd{})
	}
	r.stopSession(s)
}

// locate finds where the session of bare/res is, through the user's owner.
func (u *users) locate(bare, res string) (node string, pid *actor.PID, found bool) {
	owner, self := u.owner(bare)
	if !self {
		answer, err := u.r.link.Request(owner, &pb.SMLocate{Bare: bare, Resource: res}, smWait)
		loc, _ := answer.(*pb.SMLocation)
		if err != nil || loc == nil || loc.Node == "" {
			return "", nil, false
		}
		return loc.Node, fromRef(loc.Session), true
	}
	loc := u.ownerLocate(&pb.SMLocate{Bare: bare, Resource: res})
	return loc.Node, fromRef(loc.Session), loc.Node != ""
}

// ownerLocate answers pb.SMLocate from the owner table.
func (u *users) ownerLocate(m *pb.SMLocate) *pb.SMLocation {
	loc := &pb.SMLocation{}
	u.owners.Do(m.Bare, func(res resources) resources {
		if e := res[m.Resource]; e != nil {
			loc.Node, loc.Session = e.Node, toRef(e.PID)
		}
		return res
	})
	return loc
}

// goodbye ends a resumable session's stream with err (a draining node's
// system-shutdown) but keeps the session, detached, to be resumed on another node.
func (s *Session) goodbye(err *xmpp.StreamError) {
	sm := s.sm
	if !sm.detached {
		w := s.writer()
		if err != nil {
			_, _ = w.Write(err.Bytes())
		}
		_, _ = w.WriteString("</stream:stream>")
		_ = s.conn.Load().SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = w.Flush()
	}
	s.smDetached(sm.gen)
}
