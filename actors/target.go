package actors

import (
	"github.com/switchboard-im/switchboard/nodelink"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// sendVia sends b to t, through out when the session is on another node and the caller
// is a reader with an outbox.
func (r *Router) sendVia(t target, out *nodelink.Outbox, b []byte) {
	if !t.IsLocal() && out != nil {
		out.ToSession(t.PID, b)
		return
	}
	t.Send(r.link, b)
}

// writeVia sends to t what write makes (appending to the slice it is given): into the
// outbox's buffer for the session when it is on another node and the caller is a reader
// with an outbox, else as a stanza of its own.
func (r *Router) writeVia(t target, out *nodelink.Outbox, write func([]byte) []byte) {
	if !t.IsLocal() && out != nil {
		out.AppendTo(t.PID, write)
		return
	}
	t.Send(r.link, write(nil))
}

// closeTarget ends the session's stream with a stream error.
func (r *Router) closeTarget(t target, cond, text string) {
	if t.IsLocal() {
		if cond == "conflict" {
			t.Local.replaced.Store(true)
		}
		t.Local.Close(&xmpp.StreamError{Condition: cond, Text: text})
		return
	}
	if t.PID != nil {
		r.link.Send(t.PID, &pb.CloseStream{Condition: cond, Text: text})
	}
}
