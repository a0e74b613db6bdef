package xmpp

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Namespaces used on the wire.
const (
	NSStream    = "http://etherx.jabber.org/streams"
	NSClient    = "jabber:client"
	NSServer    = "jabber:server"
	NSComponent = "jabber:component:accept"
	NSTLS       = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL      = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSBind      = "urn:ietf:params:xml:ns:xmpp-bind"
	NSSession   = "urn:ietf:params:xml:ns:xmpp-session"
	NSStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSStreams   = "urn:ietf:params:xml:ns:xmpp-streams"
)

// ErrStreamEnd is returned by Next when the peer closed its stream with </stream:stream>.
var ErrStreamEnd = errors.New("xmpp: stream closed by peer")

var errTooLarge = errors.New("xmpp: stanza too large")

// Reader turns a stream into envelopes, one top-level element at a time, keeping each
// element's raw bytes. It reads through its own bufio.Reader, so a stream restart (after
// STARTTLS or SASL) loses no buffered input.
type Reader struct {
	br        *bufio.Reader // nil when reading from memory
	src       io.ByteReader // br, or the in-memory source
	dec       *xml.Decoder
	rec       []byte // bytes handed to the decoder, starting at decoder offset base
	base      int64
	mark      int64 // offset where the current top-level element (or gap) began
	maxStanza int64
	between   bool // no top-level element started yet: whitespace does not count
}

// NewReader reads from r; an element (or the stream header) over maxStanza bytes fails
// with a policy-violation stream error.
func NewReader(r io.Reader, maxStanza int) *Reader {
	rd := &Reader{maxStanza: int64(maxStanza)}
	if b, ok := r.(*bytes.Reader); ok {
		rd.src = b // already in memory: no buffer needed
	} else {
		rd.br = bufio.NewReaderSize(r, 1024) // TLS buffers records already; this only batches ReadByte
		rd.src = rd.br
	}
	rd.Restart()
	return rd
}

// Reset points the reader at a new underlying connection (after a TLS upgrade).
func (r *Reader) Reset(src io.Reader) {
	r.br.Reset(src)
	r.src = r.br
	r.Restart()
}

// Restart begins a new stream on the same input (RFC 6120 §4.3.3).
func (r *Reader) Restart() {
	r.dec = xml.NewDecoder(r)
	r.dec.Strict = true
	r.rec = r.rec[:0]
	r.base, r.mark = 0, 0
	r.between = true
}

// Buffered reports how many bytes are read from the connection but not yet decoded.
func (r *Reader) Buffered() int {
	if r.br == nil {
		return 0
	}
	return r.br.Buffered()
}

// ReadByte feeds the decoder (it uses io.ByteReader when offered, so it never buffers on
// its own) and records every byte so that elements can be sliced out raw.
func (r *Reader) ReadByte() (byte, error) {
	if r.maxStanza > 0 && r.base+int64(len(r.rec))-r.mark >= r.maxStanza {
		return 0, errTooLarge
	}
	c, err := r.src.ReadByte()
	if err != nil {
		return 0, err
	}
	r.rec = append(r.rec, c)
	if r.between {
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			r.mark = r.base + int64(len(r.rec))
		} else {
			r.between = false
		}
	}
	return c, nil
}

// Read is only here to satisfy io.Reader; the decoder uses ReadByte.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = c
	return 1, nil
}

// forget drops recorded bytes before the decoder's current offset.
func (r *Reader) forget() {
	off := r.dec.InputOffset()
	n := off - r.base
	if n <= 0 {
		return
	}
	r.rec = r.rec[:copy(r.rec, r.rec[n:])]
	r.base = off
	r.mark = off
	r.between = true
}

func (r *Reader) wrap(err error) error {
	switch {
	case errors.Is(err, errTooLarge):
		return &StreamError{Condition: "policy-violation", Text: fmt.Sprintf("stanza exceeds %d bytes", r.maxStanza)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return io.EOF
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		if se.Msg == "unexpected EOF" {
			return io.EOF
		}
		return &StreamError{Condition: "not-well-formed", Text: se.Msg}
	}
	var ue xml.UnmarshalError
	if errors.As(err, &ue) {
		return &StreamError{Condition: "not-well-formed", Text: string(ue)}
	}
	return err
}

// ReadHeader reads up to and including the opening <stream:stream> tag.
func (r *Reader) ReadHeader() (xml.StartElement, error) {
	for {
		tok, err := r.dec.Token()
		if err != nil {
			return xml.StartElement{}, r.wrap(err)
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" {
				return xml.StartElement{}, &StreamError{Condition: "restricted-xml"}
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return xml.StartElement{}, &StreamError{Condition: "not-well-formed"}
			}
		case xml.StartElement:
			r.forget()
			if t.Name.Local != "stream" {
				return t, &StreamError{Condition: "not-well-formed", Text: "expected a stream header"}
			}
			if t.Name.Space != NSStream {
				return t, &StreamError{Condition: "invalid-namespace"}
			}
			return t.Copy(), nil
		case xml.Comment, xml.Directive:
			return xml.StartElement{}, &StreamError{Condition: "restricted-xml"}
		default:
			return xml.StartElement{}, &StreamError{Condition: "not-well-formed"}
		}
	}
}

// Next reads the next top-level element of the stream. It returns ErrStreamEnd at
// </stream:stream>, io.EOF when the connection ends, and *StreamError for bad input.
func (r *Reader) Next() (*Envelope, error) {
	var (
		env   *Envelope
		depth int
		start int64
	)
	for {
		off := r.dec.InputOffset()
		tok, err := r.dec.Token()
		if err != nil {
			return nil, r.wrap(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 {
				start = off
				env = &Envelope{Name: t.Name, Kind: kindOf(t.Name)}
				env.setHeader(t.Attr)
				env.contentStart = int(r.dec.InputOffset() - start)
			} else if depth == 2 && !env.HasChild {
				env.HasChild = true
				env.Child = t.Name
				env.ChildAttrs = t.Attr
			}
		case xml.EndElement:
			if depth == 0 {
				return nil, ErrStreamEnd
			}
			depth--
			if depth == 0 {
				end := r.dec.InputOffset()
				env.contentEnd = int(off - start)
				env.Raw = append([]byte(nil), r.rec[start-r.base:end-r.base]...)
				r.forget()
				return env, nil
			}
		case xml.CharData:
			if depth == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, &StreamError{Condition: "not-well-formed", Text: "text between stanzas"}
				}
				// Whitespace keepalives: forget them so they never count against a stanza.
				r.forget()
			}
		case xml.Comment, xml.ProcInst, xml.Directive:
			return nil, &StreamError{Condition: "restricted-xml"}
		}
	}
}

func kindOf(n xml.Name) Kind {
	switch n.Space {
	case NSClient, NSComponent, NSServer:
	default:
		return KindOther
	}
	switch n.Local {
	case "message":
		return KindMessage
	case "presence":
		return KindPresence
	case "iq":
		return KindIQ
	}
	return KindOther
}
