package xmpp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"time"
)

// Conn is one accepted connection during and after negotiation. Until the caller hands
// writing over to a session actor, all writes go through WriteRaw from the reading goroutine.
type Conn struct {
	net.Conn
	R        *Reader
	StreamID string
	Host     string // the domain the peer addressed (c2s host or component JID)
	Lang     string
	Secure   bool   // TLS is up
	User     string // authenticated localpart (c2s)
	NS       string // the stream's content namespace (jabber:client or jabber:component:accept)

	headerSent bool
}

// NewConn wraps an accepted connection.
func NewConn(c net.Conn, maxStanza int, secure bool) *Conn {
	return &Conn{Conn: c, R: NewReader(c, maxStanza), Secure: secure, StreamID: NewID()}
}

// NewID returns a random identifier for streams, resources and stanza ids.
func NewID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WriteRaw writes bytes to the connection directly.
func (c *Conn) WriteRaw(b []byte) error {
	_, err := c.Conn.Write(b)
	return err
}

// SendHeader writes our stream header (once per stream).
func (c *Conn) SendHeader(from string, version bool) error {
	var b bytes.Buffer
	b.WriteString("<?xml version='1.0'?><stream:stream xmlns='")
	b.WriteString(c.NS)
	b.WriteString("' xmlns:stream='" + NSStream + "'")
	writeAttr(&b, "id", c.StreamID)
	if from != "" {
		writeAttr(&b, "from", from)
	}
	if version {
		b.WriteString(" version='1.0'")
	}
	lang := c.Lang
	if lang == "" {
		lang = "en"
	}
	writeAttr(&b, "xml:lang", lang)
	b.WriteByte('>')
	c.headerSent = true
	return c.WriteRaw(b.Bytes())
}

// Fail sends a stream error (preceded by a header if none was sent yet), closes the
// stream and the connection. It is the single way negotiation ends badly.
func (c *Conn) Fail(e *StreamError, from string) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if !c.headerSent {
		if c.NS == "" {
			c.NS = NSClient
		}
		_ = c.SendHeader(from, true)
	}
	var b bytes.Buffer
	b.Write(e.Bytes())
	b.WriteString("</stream:stream>")
	_ = c.WriteRaw(b.Bytes())
	_ = c.Conn.Close()
}

// AsStreamError turns an error from reading or negotiating into the stream error the peer
// should get; ok is false for plain connection failures, where nothing can be sent.
func AsStreamError(err error) (*StreamError, bool) {
	var se *StreamError
	if errors.As(err, &se) {
		return se, true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &StreamError{Condition: "connection-timeout"}, true
	}
	return nil, false
}

// StreamHeader is the peer's opening tag, checked.
type StreamHeader struct {
	To, From, Version, Lang, NS, ID string
}

// ParseHeader extracts the attributes that matter from a stream start tag.
func ParseHeader(se xml.StartElement) StreamHeader {
	var h StreamHeader
	for _, a := range se.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "to":
			h.To = a.Value
		case a.Name.Space == "" && a.Name.Local == "from":
			h.From = a.Value
		case a.Name.Space == "" && a.Name.Local == "version":
			h.Version = a.Value
		case a.Name.Space == "" && a.Name.Local == "id":
			h.ID = a.Value
		case a.Name.Space == xmlURL && a.Name.Local == "lang":
			h.Lang = a.Value
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			h.NS = a.Value
		}
	}
	return h
}

// versionOK accepts any 1.x (RFC 6120 §4.7.5: minor versions are backwards compatible).
func versionOK(v string) bool {
	major, _, _ := strings.Cut(v, ".")
	return major == "1"
}

// Text returns the character data content of a simple element such as <auth> or
// <handshake>; child elements are a bad-format stream error.
func Text(env *Envelope) (string, error) {
	d := xml.NewDecoder(bytes.NewReader(env.Raw))
	var s strings.Builder
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return s.String(), nil
		}
		if err != nil {
			return "", &StreamError{Condition: "not-well-formed"}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth > 1 {
				return "", &StreamError{Condition: "bad-format"}
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			s.Write(t)
		}
	}
}
