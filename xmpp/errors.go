package xmpp

import (
	"bytes"
	"encoding/xml"
)

// StreamError is an RFC 6120 §4.9 stream error. It ends the stream.
type StreamError struct {
	Condition string // e.g. "not-well-formed", "policy-violation"
	Text      string
}

func (e *StreamError) Error() string {
	if e.Text != "" {
		return "stream error: " + e.Condition + ": " + e.Text
	}
	return "stream error: " + e.Condition
}

// Bytes renders <stream:error> (the caller closes the stream after it).
func (e *StreamError) Bytes() []byte {
	var b bytes.Buffer
	b.WriteString("<stream:error><")
	b.WriteString(e.Condition)
	b.WriteString(" xmlns='" + NSStreams + "'/>")
	if e.Text != "" {
		b.WriteString("<text xmlns='" + NSStreams + "'>")
		xml.EscapeText(&b, []byte(e.Text))
		b.WriteString("</text>")
	}
	b.WriteString("</stream:error>")
	return b.Bytes()
}

// Stanza error types (RFC 6120 §8.3.2).
const (
	ErrCancel   = "cancel"
	ErrModify   = "modify"
	ErrAuth     = "auth"
	ErrWait     = "wait"
	ErrContinue = "continue"
)

// StanzaError is an RFC 6120 §8.3 stanza error.
type StanzaError struct {
	Type      string
	Condition string
	Text      string
	// App is an application-specific condition, as XML with its namespace declared
	// (e.g. `<blocked xmlns='urn:xmpp:blocking:errors'/>`), written after the text.
	App string
}

func (e *StanzaError) Error() string { return "stanza error: " + e.Type + "/" + e.Condition }

// Common stanza errors.
var (
	ErrServiceUnavailable    = &StanzaError{Type: ErrCancel, Condition: "service-unavailable"}
	ErrResourceConstraint    = &StanzaError{Type: ErrWait, Condition: "resource-constraint"}
	ErrFeatureNotImplemented = &StanzaError{Type: ErrCancel, Condition: "feature-not-implemented"}
	ErrBadRequest            = &StanzaError{Type: ErrModify, Condition: "bad-request"}
	ErrJIDMalformed          = &StanzaError{Type: ErrModify, Condition: "jid-malformed"}
	ErrRemoteServerNotFound  = &StanzaError{Type: ErrCancel, Condition: "remote-server-not-found"}
	ErrRemoteServerTimeout   = &StanzaError{Type: ErrWait, Condition: "remote-server-timeout"}
	ErrItemNotFound          = &StanzaError{Type: ErrCancel, Condition: "item-not-found"}
	ErrForbidden             = &StanzaError{Type: ErrAuth, Condition: "forbidden"}
	ErrNotAllowed            = &StanzaError{Type: ErrCancel, Condition: "not-allowed"}
	ErrInternalServerError   = &StanzaError{Type: ErrCancel, Condition: "internal-server-error"}
	ErrRecipientUnavailable  = &StanzaError{Type: ErrWait, Condition: "recipient-unavailable"}
)

// WriteTo appends the <error/> element.
func (e *StanzaError) writeElement(b *bytes.Buffer, by string) {
	b.WriteString("<error type='")
	b.WriteString(e.Type)
	b.WriteByte('\'')
	if by != "" {
		writeAttr(b, "by", by)
	}
	b.WriteString("><")
	b.WriteString(e.Condition)
	b.WriteString(" xmlns='" + NSStanzas + "'/>")
	if e.Text != "" {
		b.WriteString("<text xmlns='" + NSStanzas + "'>")
		xml.EscapeText(b, []byte(e.Text))
		b.WriteString("</text>")
	}
	b.WriteString(e.App)
	b.WriteString("</error>")
}

// ErrorReply builds the error response to a stanza (RFC 6120 §8.3.1): same kind and id,
// from and to swapped, type='error'. from is the address the reply comes from (usually the
// original 'to', or the server when that was empty); to is the original sender. It returns
// nil for stanzas that must never be answered with an error (errors themselves, IQ
// results), which prevents error loops.
func ErrorReply(env *Envelope, from, to string, e *StanzaError) []byte {
	if env.Type == "error" || (env.Kind == KindIQ && env.Type == "result") {
		return nil
	}
	name := env.Name.Local
	var b bytes.Buffer
	b.WriteByte('<')
	b.WriteString(name)
	if from != "" {
		writeAttr(&b, "from", from)
	}
	if to != "" {
		writeAttr(&b, "to", to)
	}
	if env.ID != "" {
		writeAttr(&b, "id", env.ID)
	}
	b.WriteString(" type='error'>")
	e.writeElement(&b, "")
	b.WriteString("</")
	b.WriteString(name)
	b.WriteByte('>')
	return b.Bytes()
}

// IQResult builds <iq type='result'> with the given payload (may be empty).
func IQResult(id, from, to string, payload []byte) []byte { return iq("result", id, from, to, payload) }

// IQSet builds <iq type='set'> with the given payload (a roster push, say).
func IQSet(id, from, to string, payload []byte) []byte { return iq("set", id, from, to, payload) }

// Presence builds an empty <presence/> of a type ("" for available) that the server
// generates: unavailable, or a subscription stanza.
func Presence(typ, from, to string) []byte {
	var b bytes.Buffer
	b.WriteString("<presence")
	if typ != "" {
		writeAttr(&b, "type", typ)
	}
	WriteAddrs(&b, from, to)
	b.WriteString("/>")
	return b.Bytes()
}

// WriteAddrs writes the from and to attributes, each only if not empty.
func WriteAddrs(b *bytes.Buffer, from, to string) {
	if from != "" {
		writeAttr(b, "from", from)
	}
	if to != "" {
		writeAttr(b, "to", to)
	}
}

func iq(typ, id, from, to string, payload []byte) []byte {
	var b bytes.Buffer
	b.Grow(64 + len(id) + len(from) + len(to) + len(payload))
	b.WriteString("<iq type='" + typ + "'")
	if id != "" {
		writeAttr(&b, "id", id)
	}
	WriteAddrs(&b, from, to)
	if len(payload) == 0 {
		b.WriteString("/>")
		return b.Bytes()
	}
	b.WriteByte('>')
	b.Write(payload)
	b.WriteString("</iq>")
	return b.Bytes()
}
