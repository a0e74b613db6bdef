package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The load generator must not be the bottleneck on a 2-core machine that also runs the
// server, so it does not run a full XML decoder. Scanner splits a stream into top-level
// elements with a quote-aware tag scan and reads only what the tool needs: the start tag's
// attributes, the first child's name and namespace, and (on demand) the first element at
// a given depth. It trusts the server to send well-formed XML; anything it cannot split
// is an error.

// ErrStreamEnd is returned by Next at </stream:stream>.
var ErrStreamEnd = errors.New("bench: stream closed by the server")

const maxStanza = 1 << 20

// Attr is an attribute value as it appears on the wire (still escaped) with its quote.
type Attr struct {
	Val []byte
	Q   byte
}

// String returns the unescaped value.
func (a Attr) String() string { return unescape(a.Val) }

// Is reports whether the (escaped) value equals s, which must need no escaping.
func (a Attr) Is(s string) bool { return string(a.Val) == s }

// Stanza is one top-level element. Its slices point into the scanner's buffer and are
// valid until the next call to Next.
type Stanza struct {
	Raw    []byte
	Name   []byte // qualified name, e.g. "iq", "stream:features"
	Header bool   // the <stream:stream> opening tag (Raw is the tag only)

	ID, Type, From, To Attr

	Child    []byte // first child's qualified name (nil: no child)
	ChildNS  Attr   // its xmlns attribute, if it has one
	ChildEnd int    // offset in Raw just past the first child's start tag

	xmlns Attr
}

// Text returns the character data between the start and end tags (unescaped), for
// simple elements like <challenge> or <jid>.
func (s *Stanza) Text() string {
	i := bytes.IndexByte(s.Raw, '>')
	j := bytes.LastIndex(s.Raw, []byte("</"))
	if i < 0 || j <= i || s.Raw[i-1] == '/' {
		return ""
	}
	return unescape(s.Raw[i+1 : j])
}

// Scanner reads top-level elements from a stream.
type Scanner struct {
	r     io.Reader
	buf   []byte
	start int // first unconsumed byte
	end   int // end of valid data
	depth int // 0: before the stream header; 1: between stanzas
	st    Stanza

	// BeforeRead, if set, is called whenever the scanner is about to block on the
	// connection: the point at which the caller has processed everything that arrived and
	// should flush what it wants to write (coalescing many stanzas into one write).
	BeforeRead func() error
}

// NewScanner reads from r.
func NewScanner(r io.Reader) *Scanner {
	return &Scanner{r: r, buf: make([]byte, 32<<10)}
}

// Restart expects a new stream header (after SASL success).
func (s *Scanner) Restart() { s.depth = 0 }

// Reset reads from a new connection (after STARTTLS) and expects a stream header.
func (s *Scanner) Reset(r io.Reader) {
	s.r = r
	s.start, s.end, s.depth = 0, 0, 0
}

// Buffered is how many received bytes wait to be scanned.
func (s *Scanner) Buffered() int { return s.end - s.start }

// Next returns the next top-level element (or the stream header).
func (s *Scanner) Next() (*Stanza, error) {
	for {
		st, n, err := s.scan(s.buf[s.start:s.end])
		if err != nil {
			return nil, err
		}
		if n > 0 {
			s.start += n
			if st != nil {
				return st, nil
			}
			continue
		}
		if err := s.fill(); err != nil {
			return nil, err
		}
	}
}

// fill reads more input, compacting or growing the buffer first.
func (s *Scanner) fill() error {
	if s.start == s.end {
		s.start, s.end = 0, 0
	} else if s.start > 0 && s.end == len(s.buf) {
		s.end = copy(s.buf, s.buf[s.start:s.end])
		s.start = 0
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= maxStanza {
			return fmt.Errorf("bench: element larger than %d bytes", maxStanza)
		}
		nb := make([]byte, 2*len(s.buf))
		s.end = copy(nb, s.buf[s.start:s.end])
		s.start = 0
		s.buf = nb
	}
	if s.BeforeRead != nil {
		if err := s.BeforeRead(); err != nil {
			return err
		}
	}
	n, err := s.r.Read(s.buf[s.end:])
	s.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// scan looks at the unconsumed bytes b. It returns how many bytes it consumed (0: needs
// more input) and the element it completed, if any (nil with n > 0: it skipped whitespace,
// a declaration or a comment).
func (s *Scanner) scan(b []byte) (*Stanza, int, error) {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i == len(b) {
		return nil, i, nil
	}
	if b[i] != '<' {
		// Text between stanzas: skip it up to the next tag.
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			return nil, len(b), nil
		}
		return nil, i + j, nil
	}
	rest := b[i:]
	if len(rest) < 4 {
		return nil, 0, nil // too short to tell a tag from a comment
	}
	switch {
	case bytes.HasPrefix(rest, []byte("<?")):
		j := bytes.Index(rest, []byte("?>"))
		if j < 0 {
			return nil, 0, nil
		}
		return nil, i + j + 2, nil
	case bytes.HasPrefix(rest, []byte("<!--")):
		j := bytes.Index(rest, []byte("-->"))
		if j < 0 {
			return nil, 0, nil
		}
		return nil, i + j + 3, nil
	}
	if s.depth == 0 {
		te := tagEnd(rest)
		if te < 0 {
			return nil, 0, nil
		}
		tag := rest[:te+1]
		st := &s.st
		*st = Stanza{Raw: tag, Header: true}
		st.Name = parseTag(tag, st)
		if string(st.Name) != "stream:stream" && string(st.Name) != "stream" {
			return nil, 0, fmt.Errorf("bench: expected a stream header, got %.80q", tag)
		}
		s.depth = 1
		return st, i + te + 1, nil
	}
	if rest[1] == '/' {
		// The stream's end tag.
		if tagEnd(rest) < 0 {
			return nil, 0, nil
		}
		return nil, 0, ErrStreamEnd
	}
	// A stanza: walk its tags to the matching end tag.
	st := &s.st
	*st = Stanza{}
	depth := 0
	p := 0
	for {
		j := bytes.IndexByte(rest[p:], '<')
		if j < 0 {
			return nil, 0, nil
		}
		p += j
		t := rest[p:]
		if len(t) < 2 {
			return nil, 0, nil
		}
		switch t[1] {
		case '/':
			te := tagEnd(t)
			if te < 0 {
				return nil, 0, nil
			}
			depth--
			p += te + 1
			if depth == 0 {
				st.Raw = rest[:p]
				return st, i + p, nil
			}
			continue
		case '!':
			if len(t) < 9 {
				return nil, 0, nil
			}
			if bytes.HasPrefix(t, []byte("<![CDATA[")) {
				k := bytes.Index(t, []byte("]]>"))
				if k < 0 {
					return nil, 0, nil
				}
				p += k + 3
				continue
			}
			if bytes.HasPrefix(t, []byte("<!--")) {
				k := bytes.Index(t, []byte("-->"))
				if k < 0 {
					return nil, 0, nil
				}
				p += k + 3
				continue
			}
			return nil, 0, fmt.Errorf("bench: unexpected %.20q", t)
		case '?':
			k := bytes.Index(t, []byte("?>"))
			if k < 0 {
				return nil, 0, nil
			}
			p += k + 2
			continue
		}
		te := tagEnd(t)
		if te < 0 {
			return nil, 0, nil
		}
		tag := t[:te+1]
		selfClose := tag[len(tag)-2] == '/'
		switch depth {
		case 0:
			st.Name = parseTag(tag, st)
		case 1:
			if st.Child == nil {
				var c Stanza
				st.Child = parseTag(tag, &c)
				st.ChildNS = c.xmlns
				st.ChildEnd = p + te + 1
			}
		}
		p += te + 1
		if !selfClose {
			depth++
		} else if depth == 0 {
			st.Raw = rest[:p]
			return st, i + p, nil
		}
	}
}

// tagEnd returns the index of the '>' closing the tag that starts b, skipping quoted
// attribute values; -1 if the tag is incomplete.
func tagEnd(b []byte) int {
	var q byte
	for i := 1; i < len(b); i++ {
		c := b[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '\'' || c == '"':
			q = c
		case c == '>':
			return i
		}
	}
	return -1
}

// parseTag reads a start tag's name and the attributes Stanza keeps (id, type, from,
// to, xmlns).
func parseTag(tag []byte, st *Stanza) []byte {
	i := 1
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	name := tag[1:i]
	forEachAttr(tag[i:], func(k []byte, v Attr) {
		switch string(k) {
		case "id":
			st.ID = v
		case "type":
			st.Type = v
		case "from":
			st.From = v
		case "to":
			st.To = v
		case "xmlns":
			st.xmlns = v
		}
	})
	return name
}

func forEachAttr(b []byte, f func(k []byte, v Attr)) {
	i := 0
	for {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) || b[i] == '/' || b[i] == '>' {
			return
		}
		k := i
		for i < len(b) && b[i] != '=' && !isSpace(b[i]) {
			i++
		}
		key := b[k:i]
		for i < len(b) && (b[i] == '=' || isSpace(b[i])) {
			i++
		}
		if i >= len(b) {
			return
		}
		q := b[i]
		if q != '\'' && q != '"' {
			return
		}
		i++
		v := i
		for i < len(b) && b[i] != q {
			i++
		}
		f(key, Attr{Val: b[v:i], Q: q})
		i++
	}
}

// Element is a start tag found inside a stanza.
type Element struct {
	Name               []byte
	ID, Type, From, To Attr
	NS                 Attr
	Node               Attr
}

// FindElement returns the first element at the given depth (0 is the stanza itself, 1 its
// first child's level, ...) whose ancestors are all first children, i.e. the element at
// the end of the first-child chain.
func FindElement(raw []byte, depth int) (Element, bool) {
	d := -1
	p := 0
	for {
		j := bytes.IndexByte(raw[p:], '<')
		if j < 0 {
			return Element{}, false
		}
		p += j
		t := raw[p:]
		if len(t) < 2 || t[1] == '/' || t[1] == '!' || t[1] == '?' {
			return Element{}, false
		}
		te := tagEnd(t)
		if te < 0 {
			return Element{}, false
		}
		tag := t[:te+1]
		d++
		if d == depth {
			e := Element{}
			i := 1
			for i < len(tag) && !isSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
				i++
			}
			e.Name = tag[1:i]
			forEachAttr(tag[i:], func(k []byte, v Attr) {
				switch string(k) {
				case "id":
					e.ID = v
				case "type":
					e.Type = v
				case "from":
					e.From = v
				case "to":
					e.To = v
				case "xmlns":
					e.NS = v
				case "node":
					e.Node = v
				}
			})
			return e, true
		}
		if tag[len(tag)-2] == '/' {
			return Element{}, false // a self-closing ancestor has no children
		}
		p += te + 1
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func unescape(b []byte) string {
	if bytes.IndexByte(b, '&') < 0 {
		return string(b)
	}
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] != '&' {
			out = append(out, b[i])
			continue
		}
		j := bytes.IndexByte(b[i:], ';')
		if j < 0 {
			out = append(out, b[i:]...)
			break
		}
		switch string(b[i+1 : i+j]) {
		case "amp":
			out = append(out, '&')
		case "lt":
			out = append(out, '<')
		case "gt":
			out = append(out, '>')
		case "apos":
			out = append(out, '\'')
		case "quot":
			out = append(out, '"')
		default:
			out = append(out, b[i:i+j+1]...)
		}
		i += j
	}
	return string(out)
}

// appendEscaped writes s escaped for an attribute value or character data.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			b = append(b, "&amp;"...)
		case '<':
			b = append(b, "&lt;"...)
		case '>':
			b = append(b, "&gt;"...)
		case '\'':
			b = append(b, "&apos;"...)
		case '"':
			b = append(b, "&quot;"...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendAttr writes name=value with the value's original quoting.
func appendAttr(b []byte, name string, a Attr) []byte {
	q := a.Q
	if q == 0 {
		q = '\''
	}
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '=', q)
	b = append(b, a.Val...)
	return append(b, q)
}
