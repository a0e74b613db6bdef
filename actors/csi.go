package actors

import (
	"bytes"

	"github.com/switchboard-im/switchboard/xmpp"
)

// XEP-0352 client state indication. A client that says it is inactive (a phone in a
// pocket) does not need every presence change and chat state at once: its session
// actor holds back presence (each sender's latest only) and messages without a body,
// in order, and writes them all before anything urgent (a message with a body, an IQ,
// an error), when the client says it is active again, or past limits.csi_max_held_bytes.
// Only the session actor touches this state.

// csiState is the client's <active/> or <inactive/>, from its reader to its actor.
type csiState struct{ inactive bool }

// csi is what an inactive client's session holds back.
type csi struct {
	inactive bool
	held     []heldStanza
	bytes    int
}

type heldStanza struct {
	presenceFrom string // a presence: its sender (a newer one replaces it); "" otherwise
	data         []byte
}

// isCSI reports whether a top-level element is a CSI nonza, and which.
func isCSI(env *xmpp.Envelope) (inactive, ok bool) {
	if env.Name.Space != xmpp.NSCSI {
		return false, false
	}
	switch env.Name.Local {
	case "inactive":
		return true, true
	case "active":
		return false, true
	}
	return false, false
}

// setCSI applies the client's state: going active writes what was held.
func (s *Session) setCSI(inactive bool) {
	s.csi.inactive = inactive && s.router.limits().CSIMaxHeld > 0
	if !s.csi.inactive {
		s.releaseHeld()
		s.flush()
	}
}

// csiWrite writes data (one or more whole stanzas) for an inactive client: what can
// wait is held, anything urgent goes out with everything held before it. It reports
// whether data was taken care of (false: write it as usual).
func (s *Session) csiWrite(data []byte) bool {
	if !s.csi.inactive {
		return false
	}
	envs, err := xmpp.Children(data, xmpp.NSClient)
	if err != nil || len(envs) == 0 {
		s.releaseHeld()
		return false
	}
	for _, env := range envs {
		if !canWait(env) {
			s.releaseHeld()
			if !s.put(env.Raw, false) {
				return true
			}
			continue
		}
		h := heldStanza{data: env.Raw}
		if env.Kind == xmpp.KindPresence {
			h.presenceFrom = env.From
			for i, o := range s.csi.held {
				if o.presenceFrom == env.From {
					s.csi.bytes -= len(o.data)
					s.csi.held = append(s.csi.held[:i], s.csi.held[i+1:]...)
					break
				}
			}
		}
		s.csi.held = append(s.csi.held, h)
		s.csi.bytes += len(h.data)
		if s.csi.bytes > s.router.limits().CSIMaxHeld {
			s.releaseHeld()
		}
	}
	return true
}

// canWait: presence, and messages without a body, subject or encrypted payload (chat
// states, receipts, PEP notifications).
func canWait(env *xmpp.Envelope) bool {
	switch env.Kind {
	case xmpp.KindPresence:
		return true
	case xmpp.KindMessage:
		if env.Type == "error" {
			return false
		}
		raw := env.Raw
		return !bytes.Contains(raw, []byte("<body")) && !bytes.Contains(raw, []byte("<subject")) &&
			!bytes.Contains(raw, []byte("<encrypted"))
	}
	return false
}

// releaseHeld writes what was held, in order.
func (s *Session) releaseHeld() {
	if len(s.csi.held) == 0 {
		return
	}
	for _, h := range s.csi.held {
		if !s.put(h.data, false) {
			break
		}
	}
	s.csi.held, s.csi.bytes = nil, 0
}
