package xmpp

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-im/switchboard/internal/nsoracle"
)

// oldReader is the reader as it was before the scanner (encoding/xml throughout), kept as the oracle of FuzzReaderOracle. It turns a stream into envelopes, one top-level element at a time, keeping each
// element's raw bytes. It reads through its own bufio.Reader, so a stream restart (after
// STARTTLS or SASL) loses no buffered input.
type oldReader struct {
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
func newOldReader(r io.Reader, maxStanza int) *oldReader {
	rd := &oldReader{maxStanza: int64(maxStanza)}
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
func (r *oldReader) Reset(src io.Reader) {
	r.br.Reset(src)
	r.src = r.br
	r.Restart()
}

// Restart begins a new stream on the same input (RFC 6120 §4.3.3).
func (r *oldReader) Restart() {
	r.dec = xml.NewDecoder(r)
	r.dec.Strict = true
	r.rec = r.rec[:0]
	r.base, r.mark = 0, 0
	r.between = false // white space before the header counts toward its size
}

// Buffered reports how many bytes are read from the connection but not yet decoded.
func (r *oldReader) Buffered() int {
	if r.br == nil {
		return 0
	}
	return r.br.Buffered()
}

// ReadByte feeds the decoder (it uses io.ByteReader when offered, so it never buffers on
// its own) and records every byte so that elements can be sliced out raw.
func (r *oldReader) ReadByte() (byte, error) {
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
func (r *oldReader) Read(p []byte) (int, error) {
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
func (r *oldReader) forget() {
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

func (r *oldReader) wrap(err error) error {
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
func (r *oldReader) ReadHeader() (xml.StartElement, error) {
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
func (r *oldReader) Next() (*Envelope, error) {
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
				env = &Envelope{Name: t.Name, Kind: KindOf(t.Name)}
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

// chunkReader serves data in pieces whose sizes cycle through sizes (1 + each byte), so
// that constructs are cut at every possible place.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = 1 + int(c.sizes[c.i%len(c.sizes)])
		c.i++
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, ErrStreamEnd):
		return "end"
	}
	if se, ok := AsStreamError(err); ok {
		return se.Condition
	}
	return "other: " + err.Error()
}

// compareReaders reads in with the old reader (encoding/xml) and the new one (fed in
// chunks) and fails if they disagree on any envelope or on how the stream ends. The one
// allowed difference: the new reader rejects a processing instruction, comment or DTD as
// restricted-xml as soon as it sees its first bytes, where the old one first read it to
// its end (and so may report not-well-formed or EOF for a broken or unfinished one).
func compareReaders(t *testing.T, in string, max int, chunks []byte) {
	t.Helper()
	compareReader(t, in, max, chunks, false)
	compareReader(t, in, max, chunks, true)
}

// compareReader compares the readers on in; lean: the new one reads as it does from TLS
// (its buffer given back between elements, a short read to wait for the next).
//
// The new reader also checks Namespaces in XML, which encoding/xml does not: where the
// namespace oracle (nscheck_oracle_test.go) finds an element that breaks a rule, the new
// reader must refuse it (not-well-formed), and an element that uses a prefix declared
// on the stream header must come with that declaration on its own start tag. Every
// element the new reader returns, and its rewrite, must parse alone for a strict receiver.
func compareReader(t *testing.T, in string, max int, chunks []byte, lean bool) {
	t.Helper()
	old := newOldReader(strings.NewReader(in), max)
	cur := NewReader(&chunkReader{data: []byte(in), sizes: chunks}, max)
	cur.lean = lean
	oh, oerr := old.ReadHeader()
	nh, nerr := cur.ReadHeader()
	hdr, stream, hok := headerDecls(in)
	if hok && errClass(nerr) == "not-well-formed" {
		if o := (&nsoracle.Checker{Header: true}); o.Tag(hdr, 0) != nil {
			return // a header that breaks a namespace rule
		}
	}
	if errClass(oerr) != errClass(nerr) || !reflect.DeepEqual(oh, nh) {
		t.Fatalf("header of %q:\nold %v %+v\nnew %v %+v", in, oerr, oh, nerr, nh)
	}
	if oerr != nil {
		return
	}
	var body string
	if i := headerEnd(in); i >= 0 {
		body = in[i:]
	}
	oracle := &nsoracle.Checker{Stream: stream}
	used, bad := oracle.Walk([]byte(body))
	for i := 0; ; i++ {
		oe, oerr := old.Next()
		ne, nerr := cur.Next()
		oc, nc := errClass(oerr), errClass(nerr)
		if i == bad {
			if nc == "not-well-formed" || nc == "restricted-xml" || nc == oc && oc != "ok" {
				return
			}
			t.Fatalf("element %d of %q breaks a namespace rule:\nold %v\nnew %v %#v", i, in, oerr, nerr, ne)
		}
		if oc != nc {
			if nc == "restricted-xml" && oc != "ok" {
				return
			}
			t.Fatalf("element %d of %q:\nold %v\nnew %v", i, in, oerr, nerr)
		}
		if oerr != nil {
			return
		}
		if i < len(used) {
			oe = declared(oe, stream, used[i])
		}
		if !sameEnvelope(oe, ne) {
			t.Fatalf("element %d of %q:\nold %#v\nnew %#v", i, in, oe, ne)
		}
		checkRelayed(t, in, ne)
	}
}

// headerEnd returns the index after the stream header's start tag in in (-1 if none).
func headerEnd(in string) int {
	d := xml.NewDecoder(strings.NewReader(in))
	for {
		tok, err := d.RawToken()
		if err != nil {
			return -1
		}
		if _, ok := tok.(xml.StartElement); ok {
			return int(d.InputOffset())
		}
	}
}

// checkRelayed fails unless env, and env rewritten as the router rewrites what it
// relays, each parse alone for a strict receiver, the rewrite with the same attributes.
func checkRelayed(t *testing.T, in string, env *Envelope) {
	t.Helper()
	if !nsoracle.Strict(env.Raw) {
		t.Fatalf("%q: element %q does not parse alone", in, env.Raw)
	}
	for _, ns := range []string{"", NSClient} {
		rw := env.RewriteNS("a@b/c", "d@e", ns)
		if !nsoracle.Strict(rw) {
			t.Fatalf("%q: rewrite %q of %q does not parse alone", in, rw, env.Raw)
		}
		again, err := OpenStream(rw, NSClient, false)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := again.Next()
		again.Release()
		if err != nil {
			t.Fatalf("%q: rewrite %q of %q: %v", in, rw, env.Raw, err)
		}
		if !reflect.DeepEqual(otherAttrs(env.Attrs, ns != ""), otherAttrs(e2.Attrs, ns != "")) || e2.From != "a@b/c" || e2.To != "d@e" {
			t.Fatalf("%q: rewrite %q of %q changed its attributes:\n%v\n%v", in, rw, env.Raw, env.Attrs, e2.Attrs)
		}
	}
}

// otherAttrs is attrs without from and to (and the default namespace, with noDefault),
// sorted.
func otherAttrs(attrs []xml.Attr, noDefault bool) []string {
	var out []string
	for _, a := range attrs {
		if a.Name.Space == "" && (a.Name.Local == "from" || a.Name.Local == "to" || noDefault && a.Name.Local == "xmlns") {
			continue
		}
		out = append(out, a.Name.Space+"|"+a.Name.Local+"="+a.Value)
	}
	slices.Sort(out)
	return out
}

func FuzzReaderOracle(f *testing.F) {
	for _, s := range typicalStanzas {
		f.Add(s, uint16(0), []byte{0}, false)
		f.Add(s+s, uint16(100), []byte{3, 7}, false)
	}
	seeds := []string{
		`<message to='a@b'><body>x</body></message><iq type='get' id='1'/>`,
		`<presence><x xmlns='y' a='&lt;'/></presence>`,
		`<iq xmlns:p='urn:p' type='set'><p:q xmlns:r='urn:r' r:a="1" p:b='2' xml:lang='en' c='&#x41;&#65;&quot;'/></iq>`,
		`<p:iq xmlns:p='jabber:client'><q xmlns='urn:q'><r xmlns='urn:r'/></q><s/></p:iq>`,
		"<message>\r\n<body a='x\r\ny\rz\tw'>a\r\nb</body></message>",
		`<message><![CDATA[<x>]]></message> <![CDATA[ ]]> <message/>`,
		`<a>]]></a>`, `<a b='<'/>`, `<a b=c/>`, `<a b/>`, `<a:b:c/>`, `<a><b></a></b>`,
		`<a>&foo;</a>`, `<a>&#0;</a>`, `<a>&#xD800;</a>`, `<a>&#x110000;</a>`, "<a>\xff</a>", "<a>\xef\xbf\xbe</a>",
		`<a><!-- c --></a>`, `<?pi x?>`, `<!DOCTYPE x>`, `</stream:stream>`, `</stream>`, `x`, `&#32;<a/>`,
		"\u00a0<a/>", `<é/>`, `<a é='1'/>`, `<·/>`, `<a xmlns:x='' x:y='1'><x:b/></a>`, `<xmlns/>`, `<xmlns:a/>`,
		`<message type='chat' id='1'><body>` + strings.Repeat("x", 300) + `</body></message>`,
		// Namespaces in XML: what a strict receiver refuses, and prefixes that must travel.
		`<message a='1' a='2'/>`, `<message><x><y b='1' c='' b='3'/></x></message>`,
		`<message><p:x/></message>`, `<message p:a='1'/>`, `<message><x><y q:z='1'/></x></message>`,
		`<message xmlns:xml='urn:x'/>`, `<message xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/>`,
		`<message xmlns:xmlns='urn:x'/>`, `<message xmlns:p='http://www.w3.org/XML/1998/namespace'/>`,
		`<message><x xmlns='http://www.w3.org/2000/xmlns/'/></message>`, `<message xmlns:p='urn:p' xmlns:q='urn:p' p:a='1' q:a='2'/>`,
		`<message><a xmlns:p='urn:p'/><p:b/></message>`, `<message xmlns:p='urn:p'><a><p:b p:c='1'/></a></message>`,
		`<message xmlns:p='urn:p' p:type='x' type='chat' to='a@b'><body>hi</body></message>`,
		`<message><:a/></message>`, `<message><a: /></message>`, `<message a:='1'/>`, `<message><xmlns:b xmlns:xmlns='u'/></message>`,
		`<message><x xmlns:p='&#117;rn:p' p:a='1'/></message>`, `<message><x xmlns:p='urn:p'><p:y xmlns:p='urn:q' p:a='1'/><p:z/></x></message>`,
		`<stream:error><stream:text/></stream:error>`, `<message><stream:x stream:y='1'/></message>`,
	}
	for _, s := range seeds {
		f.Add(s, uint16(0), []byte(nil), false)
		f.Add(s, uint16(64), []byte{0, 2, 5}, false)
	}
	f.Add(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'><db:result/><stream:features/></stream:stream>`, uint16(0), []byte{1}, true)
	f.Add(`<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client'/>`, uint16(0), []byte(nil), true)
	f.Add(`  <stream:stream xmlns:stream='http://etherx.jabber.org/streams'><message/></stream:stream >`, uint16(90), []byte{4}, true)
	f.Add(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:p='urn:p&amp;' xmlns:q="urn:'q"><message p:a='1'><q:x/></message><message/><p:y/></stream:stream>`, uint16(0), []byte{2}, true)
	f.Add(`<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='1' a='2'>`, uint16(0), []byte(nil), true)
	f.Add(`<stream:stream xmlns:stream='http://etherx.jabber.org/streams' p:a='1'>`, uint16(0), []byte(nil), true)
	f.Add(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns:xml='urn:x'>`, uint16(0), []byte(nil), true)
	f.Add(`<stream:stream xmlns:p='urn:p' xmlns:stream='http://etherx.jabber.org/streams'><p:q xmlns:p='urn:other'/><r p:s='1'/></stream:stream>`, uint16(0), []byte(nil), true)
	f.Fuzz(func(t *testing.T, body string, max uint16, chunks []byte, raw bool) {
		in := body
		if !raw {
			in = hdr + body
		}
		compareReaders(t, in, int(max), chunks)
	})
}

// sameEnvelope compares everything but where the attributes are stored.
func sameEnvelope(a, b *Envelope) bool {
	x, y := *a, *b
	x.attrBuf, y.attrBuf = [len(x.attrBuf)]xml.Attr{}, [len(y.attrBuf)]xml.Attr{}
	return reflect.DeepEqual(x, y)
}
