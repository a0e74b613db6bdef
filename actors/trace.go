package actors

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-im/switchboard/xmpp"
)

// Live traces of one JID's stanzas (`switchboard trace JID`, the admin API's /trace): off
// until someone asks (one atomic load per routed stanza), at most maxTraces at once per
// node, each at most traceRate events a second (the rest are counted as dropped) and
// with a bounded queue: tracing never holds routing up.

// TraceEvent is one stanza routed on this node that a trace's JID sent or was sent.
type TraceEvent struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Outcome string    `json:"outcome"` // routed, or the condition it was refused with
	Stanza  string    `json:"stanza"`  // its first 200 bytes
}

const (
	maxTraces   = 4
	traceRate   = 100 // events a second, per trace
	traceBuffer = 256
)

// trace is one JID being traced.
type trace struct {
	jid     string // a bare or a full JID
	events  chan TraceEvent
	dropped atomic.Int64

	mu     sync.Mutex
	second time.Time
	count  int
}

func (t *trace) matches(addr string) bool {
	return addr == t.jid || (strings.HasPrefix(addr, t.jid) && len(addr) > len(t.jid) && addr[len(t.jid)] == '/')
}

// traces are the traces under way (copy-on-write: routing reads them without a lock).
type traces struct {
	mu  sync.Mutex
	all atomic.Pointer[[]*trace]
}

// Trace starts tracing jid's stanzas on this node; events are sent on the channel until
// stop is called. ok is false when maxTraces are under way.
func (r *Router) Trace(jid string) (events <-chan TraceEvent, dropped func() int64, stop func(), ok bool) {
	ts := &r.traces
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var cur []*trace
	if p := ts.all.Load(); p != nil {
		cur = *p
	}
	if len(cur) >= maxTraces {
		return nil, nil, nil, false
	}
	t := &trace{jid: jid, events: make(chan TraceEvent, traceBuffer)}
	next := append(append([]*trace(nil), cur...), t)
	ts.all.Store(&next)
	stop = func() {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		var rest []*trace
		if p := ts.all.Load(); p != nil {
			for _, o := range *p {
				if o != t {
					rest = append(rest, o)
				}
			}
		}
		if len(rest) == 0 {
			ts.all.Store(nil)
		} else {
			ts.all.Store(&rest)
		}
	}
	return t.events, t.dropped.Load, stop, true
}

// traced records a routed stanza for the traces whose JID sent it or was sent it.
func (r *Router) traced(from string, env *xmpp.Envelope, outcome string) {
	p := r.traces.all.Load()
	if p == nil {
		return
	}
	for _, t := range *p {
		if !t.matches(from) && !t.matches(env.To) {
			continue
		}
		now := time.Now()
		t.mu.Lock()
		if now.Sub(t.second) >= time.Second {
			t.second, t.count = now, 0
		}
		t.count++
		over := t.count > traceRate
		t.mu.Unlock()
		if over {
			t.dropped.Add(1)
			continue
		}
		ev := TraceEvent{At: now, Kind: env.Name.Local, From: from, To: env.To, Outcome: outcome, Stanza: firstBytes(env.Raw)}
		select {
		case t.events <- ev:
		default:
			t.dropped.Add(1)
		}
	}
}
