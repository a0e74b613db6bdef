package xmpp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"sync"
)

// ParseStanza turns the bytes of one stanza into an envelope, as if read from a client
// stream (default namespace jabber:client). Stanzas that crossed nodes, or that the
// server made itself, are parsed with it; the envelope owns its bytes.
func ParseStanza(raw []byte) (*Envelope, error) {
	p, err := OpenStream(raw, NSClient, false)
	if err != nil {
		return nil, err
	}
	defer p.Release()
	return p.Next()
}

// Children reads content (elements, and white space between them) as the stanzas of a
// stream whose default namespace is ns; each becomes an envelope over its own bytes.
// Text other than white space is not-well-formed here. scope holds the namespace
// declarations (attributes xmlns:p, as Envelope.Attrs has them) of the elements that
// enclosed content: a child that uses one gets it declared on its own start tag, so that
// every envelope is self-contained.
func Children(content []byte, ns string, scope ...[]xml.Attr) ([]*Envelope, error) {
	var binds []nsBinding
	for _, attrs := range scope {
		for _, a := range attrs {
			if a.Name.Space == "xmlns" {
				binds = append(binds, nsBinding{a.Name.Local, a.Value})
			}
		}
	}
	p, err := openStream(content, ns, false, true, binds)
	if err != nil {
		return nil, err
	}
	defer p.Release()
	var out []*Envelope
	for {
		env, err := p.Next()
		if errors.Is(err, ErrStreamEnd) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, env)
	}
}

// Parser is a Reader over a synthetic stream, and that stream's bytes; both are pooled
// (a reply from a managing entity is unwrapped with two of them: without the pool each
// cost a Reader and two copies of the content, a third of a node's allocation).
type Parser struct {
	r   *Reader
	buf []byte
	ns  string // the header r read last ("": none that may be used again)
}

var parsers = sync.Pool{New: func() any { return &Parser{r: NewReader(bytes.NewReader(nil), 0)} }}

// Next reads the next stanza of the synthetic stream.
func (p *Parser) Next() (*Envelope, error) { return p.r.Next() }

// Release returns the parser to the pool; the envelopes it read own their bytes.
func (p *Parser) Release() {
	if cap(p.buf) > 64<<10 {
		p.buf = nil // one big stanza does not pin its buffer
	}
	p.r.ResetContent(nil, 0) // the header stays: the next stream may share it
	parsers.Put(p)
}

// OpenStream returns a parser, past the header, over content wrapped in a stream whose
// default namespace is ns (jabber:client if empty), closed at the end if closed is set.
// The caller releases it.
func OpenStream(content []byte, ns string, closed bool) (*Parser, error) {
	return openStream(content, ns, false, closed, nil)
}

// openStream is OpenStream; with noDefault the stream has no default namespace, and
// scope is declarations in scope besides the header's (the header is then read afresh,
// and not used again).
func openStream(content []byte, ns string, noDefault, closed bool, scope []nsBinding) (*Parser, error) {
	key := ns
	switch {
	case noDefault:
		key = "\x00"
	case ns == "":
		ns, key = NSClient, NSClient
	}
	const end = "</stream:stream>"
	p := parsers.Get().(*Parser)
	buf := p.buf[:0]
	same := p.ns == key && scope == nil
	if !same {
		buf = append(buf, "<stream:stream"...)
		if !noDefault {
			buf = append(buf, " xmlns='"...)
			buf = append(buf, ns...)
			buf = append(buf, '\'')
		}
		buf = append(buf, " xmlns:stream='"...)
		buf = append(buf, NSStream...)
		buf = append(buf, "'>"...)
	}
	buf = append(buf, content...)
	if closed {
		buf = append(buf, end...)
	}
	p.buf = buf
	if same {
		p.r.ResetContent(buf, len(buf)+16)
		return p, nil
	}
	p.r.ResetBytes(buf, len(buf)+16)
	if _, err := p.r.ReadHeader(); err != nil {
		p.ns = ""
		p.Release()
		return nil, err
	}
	p.ns = key
	if scope != nil {
		p.r.streamNS = append(p.r.streamNS, scope...) // later ones win
		p.ns = ""
	}
	return p, nil
}
