package xmpp

import (
	"bytes"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"unsafe"
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
	NSCSI       = "urn:xmpp:csi:0" // client state indication (XEP-0352)
	NSSM        = "urn:xmpp:sm:3"  // stream management (XEP-0198)
)

// ErrStreamEnd is returned by Next when the peer closed its stream with </stream:stream>.
var ErrStreamEnd = errors.New("xmpp: stream closed by peer")

var errTooLarge = errors.New("xmpp: stanza too large")

// ErrParked is returned by Next when a lean reader's wait for the next element timed out
// and OnTimeout parked it. Nothing is lost: Next may be called again, on any goroutine,
// once input may have come (Conn.WaitReadable).
var ErrParked = errors.New("xmpp: reader parked")

const (
	readBufSize   = 1024      // TLS buffers records already; this only batches reads
	shrinkBufSize = 64 * 1024 // a buffer grown past this for one big stanza is dropped after it
)

// Reader turns a stream into envelopes, one top-level element at a time, keeping each
// element's raw bytes. It reads through its own buffer, so a stream restart (after SASL)
// loses no buffered input.
//
// Stanzas are read by a scanner of our own (scan.go) that accepts exactly what
// encoding/xml's strict decoder accepts (FuzzReaderOracle checks it against the reader
// that used encoding/xml) and resolves namespaces only where an envelope needs them (the
// stanza and its first child); deeper elements are checked but nothing is kept of them.
// Restricted XML (RFC 6120 §11.1) is refused as soon as it is recognised. A stream header
// that opens with an XML declaration (or anything but its start tag) is read with
// encoding/xml, once per stream; one that is its start tag alone (ParseStanza's) is read
// by the scanner. The scanner parses one
// construct (tag, text run, CDATA section) at a time from the buffered bytes; one cut short
// by the end of the buffer is parsed again from its start once it can be complete (see
// more), so a stanza trickling in costs linear time.
type Reader struct {
	src       io.Reader
	mem       bool   // src is in memory (Buffered reports 0)
	buf       []byte // buf[:w] read; buf[mark:w] still needed
	pos, w    int    // next byte to parse; end of the bytes read
	mark      int    // where the current top-level element (or the header) began
	maxStanza int
	rerr      error // the source's error, reported once the bytes before it are parsed
	err       error // sticky: what Next or ReadHeader last failed with

	// The stream.
	streamName  string      // raw name of the header, which the closing tag must repeat
	streamEmpty bool        // the header was self-closing: the stream is over
	streamNS    []nsBinding // namespace declarations of the header

	// The element being read; offsets are from mark.
	depth        int
	open         []span    // raw names of the open elements (their end tags must match)
	attrs        []attrRec // the stanza's attributes, then its first child's
	nStanza      int       // how many of attrs are the stanza's
	name, child  span      // raw names of the stanza and its first child
	hasChild     bool
	contentStart int
	arena        []byte // decoded attribute values (then names), one string per envelope
	binds        []nsBinding
	rawName      string // the element's qualified name, as resolve last saw it

	// Namespace well-formedness of every element (nscheck.go).
	tag     []tagAttr   // the attributes of the start tag just scanned
	tagNS   bool        // it has a prefixed name or declares the default namespace
	scope   []scopeBind // prefixes declared inside the element being read
	uris    []byte      // their namespace names
	usedNS  []bool      // which of streamNS the element uses (declared on it when relayed)
	anyUsed bool

	// BeforeFill, if set, is called before the reader waits for more input: what the
	// caller held back while input lasted can go now.
	BeforeFill func()

	// lean: src buffers what it has read already (TLS holds a whole record), so when an
	// element leaves nothing unparsed the reader gives its buffer back, and waits for
	// the next with a few bytes of its own: an idle session holds no read buffer.
	lean bool
	peek [32]byte

	// OnTimeout, if set, says what a read that timed out means. between: the reader is
	// lean and between elements, holding nothing. park (between only): Next returns
	// ErrParked; again: read again (the caller moved the deadline); neither: the timeout
	// is the read's error, as without OnTimeout.
	OnTimeout func(between bool) (park, again bool)
	parked    bool

	// A construct cut short by the end of the buffer (see more).
	tok   int // its start (absolute), -1 if none
	tried int // bytes it had at the last attempt
	fpos  int // how far the end-of-tag search got (absolute)
	fq    byte

	// First backing arrays of the slices above: a Reader for one stanza (ParseStanza)
	// allocates little more than itself.
	small struct {
		arena    [192]byte
		attrs    [6]attrRec
		binds    [4]nsBinding
		streamNS [2]nsBinding
	}
}

type span struct{ a, b int }

type attrRec struct {
	name span // raw qualified name, offsets from mark
	val  span // decoded value in arena
}

type nsBinding struct{ prefix, uri string }

// NewReader reads from r; an element (or the stream header) over maxStanza bytes fails
// with a policy-violation stream error.
func NewReader(r io.Reader, maxStanza int) *Reader {
	rd := &Reader{src: r, maxStanza: maxStanza, tok: -1, lean: buffers(r)}
	rd.arena, rd.attrs, rd.binds = rd.small.arena[:0], rd.small.attrs[:0], rd.small.binds[:0]
	if b, ok := r.(*bytes.Reader); ok {
		rd.mem = true // already in memory: read it in one go
		rd.buf = make([]byte, b.Len()+1)
	}
	rd.Restart()
	return rd
}

// Reset points the reader at a new underlying connection (after a TLS upgrade). Bytes
// read from the old one and not parsed yet are dropped.
func (r *Reader) Reset(src io.Reader) {
	r.src, r.mem, r.lean = src, false, buffers(src)
	r.pos, r.w, r.mark = 0, 0, 0
	r.rerr = nil
	r.Restart()
}

// ResetBytes points the reader at b, the whole input, which it parses in place: it
// neither copies nor changes b, and envelopes copy what they keep, so b may be reused
// once the reader is done with it. With it a Reader can be pooled for in-memory parsing.
func (r *Reader) ResetBytes(b []byte, maxStanza int) {
	r.ResetContent(b, maxStanza)
	r.streamName, r.streamNS = "", nil // b begins with its own header
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// ResetContent is ResetBytes for a document that begins with the stream header the
// reader read last: b is what follows that header (its stanzas, and the closing tag if
// any), and the header is not parsed again. A pooled reader over a synthetic stream (one
// header for many documents) skips three allocations and a sixth of its work per document.
func (r *Reader) ResetContent(b []byte, maxStanza int) {
	r.src, r.mem, r.lean = eofReader{}, true, false
	r.buf = b[:len(b):len(b)]
	r.pos, r.w, r.mark = 0, len(b), 0
	r.rerr = nil
	r.maxStanza = maxStanza
	r.restart()
}

// Restart begins a new stream on the same input (RFC 6120 §4.3.3).
func (r *Reader) Restart() {
	r.restart()
	r.streamName, r.streamNS = "", nil
}

// restart is Restart keeping what the last header said (ResetContent).
func (r *Reader) restart() {
	r.err = nil
	r.streamEmpty = false
	r.depth = 0
	r.open = r.open[:0]
	r.mark = r.pos
	r.tok = -1
}

// Buffered reports how many bytes are read from the connection but not yet decoded.
func (r *Reader) Buffered() int {
	if r.mem {
		return 0
	}
	return r.w - r.pos
}

// fill reads more input after buf[:w], dropping what is before mark and growing the buffer
// when the element being read fills it. A read error is kept in rerr.
func (r *Reader) fill() int {
	if r.mem && r.w == len(r.buf) {
		// All the input is in buf already (ResetBytes): nothing to move, and buf is the
		// caller's.
		r.rerr = io.EOF
		return 0
	}
	if r.BeforeFill != nil {
		r.BeforeFill()
	}
	if r.lean {
		if r.buf != nil && r.depth == 0 && r.pos == r.w && r.mark == r.w && r.tok < 0 {
			// Between elements with nothing unparsed (white space read, say): the
			// wait for the next is lean too.
			r.putBuf()
		}
		if r.buf == nil {
			return r.fillLean()
		}
	}
	if r.buf == nil {
		r.buf = make([]byte, readBufSize)
	}
	if r.w == len(r.buf) && r.mark > 0 {
		d := r.mark
		copy(r.buf, r.buf[d:r.w])
		r.w -= d
		r.pos -= d
		r.mark = 0
		if r.tok >= 0 {
			r.tok -= d
			r.fpos -= d
		}
	}
	if r.w == len(r.buf) {
		nb := make([]byte, 2*len(r.buf))
		copy(nb, r.buf[:r.w])
		r.buf = nb
	}
	n := r.read(r.buf[r.w:], false)
	r.w += n
	return n
}

// read reads into p until it gets bytes or an error (kept in rerr), asking OnTimeout
// what a timeout means; between: the reader holds nothing (a lean reader's wait).
func (r *Reader) read(p []byte, between bool) int {
	for empty := 0; empty < 100; {
		n, err := r.src.Read(p)
		if err != nil {
			if n == 0 && r.timedOut(err, between) {
				continue
			}
			if !r.parked {
				r.rerr = err
			}
			return n
		}
		if n > 0 {
			return n
		}
		empty++
	}
	r.rerr = io.ErrNoProgress
	return 0
}

// timedOut asks OnTimeout about err, if it is a timeout: it reports whether to read
// again; it sets parked if the reader is to park.
func (r *Reader) timedOut(err error, between bool) bool {
	var ne net.Error
	if r.OnTimeout == nil || !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	park, again := r.OnTimeout(between)
	r.parked = park && between
	return again && !r.parked
}

// readBufs holds the read buffers of lean readers between elements.
var readBufs = sync.Pool{New: func() any { return new([readBufSize]byte) }}

// buffers tells a source that keeps what it read but was not asked for (a TLS
// connection) from one where a short read would cost another system call.
func buffers(src io.Reader) bool {
	_, ok := src.(*tls.Conn)
	return ok
}

func (r *Reader) putBuf() {
	if len(r.buf) == readBufSize {
		readBufs.Put((*[readBufSize]byte)(r.buf))
	}
	r.buf, r.pos, r.w, r.mark = nil, 0, 0, 0
}

// fillLean waits for input with the reader's few bytes of its own, then takes a buffer
// for what follows; the source holds the rest of what it read until the next fill.
func (r *Reader) fillLean() int {
	n := r.read(r.peek[:], true)
	if n > 0 {
		r.buf = readBufs.Get().(*[readBufSize]byte)[:]
		r.w = copy(r.buf, r.peek[:n])
	}
	return n
}

// limit returns where the bytes the current element may use end, and whether the
// element may not go past that (any further byte would make it exceed maxStanza).
func (r *Reader) limit() (int, bool) {
	if r.maxStanza > 0 && r.w-r.mark >= r.maxStanza {
		return r.mark + r.maxStanza, true
	}
	return r.w, false
}

func (r *Reader) tooLarge() error {
	return &StreamError{Condition: "policy-violation", Text: fmt.Sprintf("stanza exceeds %d bytes", r.maxStanza)}
}

// wrap maps the errors of encoding/xml (the stream header) to stream errors.
func (r *Reader) wrap(err error) error {
	switch {
	case errors.Is(err, errTooLarge):
		return r.tooLarge()
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

// headerSource feeds the stream header to encoding/xml a byte at a time (so that it reads
// no further than the header), enforcing maxStanza over every byte from where ReadHeader
// started: white space before the header counts too (encoding/xml gathers a run of it
// into one token, so uncounted it would grow without bound before any authentication).
type headerSource struct {
	r *Reader
}

func (h *headerSource) ReadByte() (byte, error) {
	r := h.r
	if r.maxStanza > 0 && r.pos-r.mark >= r.maxStanza {
		return 0, errTooLarge
	}
	if r.pos == r.w {
		if r.rerr != nil {
			return 0, r.rerr
		}
		r.fill()
		if r.pos == r.w {
			return 0, r.rerr
		}
	}
	c := r.buf[r.pos]
	r.pos++
	return c, nil
}

func (h *headerSource) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c, err := h.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = c
	return 1, nil
}

// ReadHeader reads up to and including the opening <stream:stream> tag.
func (r *Reader) ReadHeader() (xml.StartElement, error) {
	if r.err != nil {
		return xml.StartElement{}, r.err
	}
	r.mark = r.pos
	r.tok = -1
	if h, ok, err := r.quickHeader(); ok {
		if err != nil {
			return h, r.fail(err)
		}
		return h, nil
	}
	dec := xml.NewDecoder(&headerSource{r: r})
	dec.Strict = true
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			r.err = r.wrap(err)
			return xml.StartElement{}, r.err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" {
				return xml.StartElement{}, r.fail(&StreamError{Condition: "restricted-xml"})
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return xml.StartElement{}, r.fail(&StreamError{Condition: "not-well-formed"})
			}
		case xml.StartElement:
			if err := r.startStream(r.pos - int(dec.InputOffset()-before)); err != nil {
				return xml.StartElement{}, r.fail(err)
			}
			if t.Name.Local != "stream" {
				return t, r.fail(&StreamError{Condition: "not-well-formed", Text: "expected a stream header"})
			}
			if t.Name.Space != NSStream {
				return t, r.fail(&StreamError{Condition: "invalid-namespace"})
			}
			return t.Copy(), nil
		case xml.Comment, xml.Directive:
			return xml.StartElement{}, r.fail(&StreamError{Condition: "restricted-xml"})
		default:
			return xml.StartElement{}, r.fail(&StreamError{Condition: "not-well-formed"})
		}
	}
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

// quickHeader reads a header that is a start tag from its first byte (no XML
// declaration, no white space before it), as ParseStanza's is, with the scanner; it
// reports !ok for any other start (ReadHeader then uses encoding/xml).
func (r *Reader) quickHeader() (xml.StartElement, bool, error) {
	for {
		lim, limited := r.limit()
		final := limited || r.rerr != nil
		b := r.buf[:lim]
		if r.pos+1 >= len(b) {
			if final {
				return xml.StartElement{}, false, nil
			}
			r.more()
			continue
		}
		if b[r.pos] != '<' || class[b[r.pos+1]]&cNameStart == 0 {
			return xml.StartElement{}, false, nil
		}
		r.attrs, r.arena = r.attrs[:0], r.arena[:0]
		end, nameEnd, empty, err := r.startTag(b, r.pos, true, final)
		if err == nil {
			r.resetScope()
			err = r.checkTag(b, r.pos, nameEnd, true)
			r.resetScope()
		}
		switch {
		case err == errNeedMore && final:
			return xml.StartElement{}, true, r.endErr(limited)
		case err == errNeedMore:
			if r.tok != r.pos {
				r.tok, r.fpos, r.fq = r.pos, r.pos, 0
			}
			r.tried = lim - r.pos
			r.more()
			continue
		case err != nil:
			return xml.StartElement{}, true, err
		}
		r.tok = -1
		r.name = span{1, nameEnd - r.mark}
		r.nStanza, r.hasChild = len(r.attrs), false
		name, _, attrs, _, nb := r.resolve(r.mark, nil)
		r.streamNS = append(r.small.streamNS[:0], r.binds[:nb]...)
		clear(r.binds)
		r.streamName = r.rawName
		r.streamEmpty = empty
		r.pos, r.mark = end, end
		t := xml.StartElement{Name: name, Attr: attrs}
		if name.Local != "stream" {
			return t, true, &StreamError{Condition: "not-well-formed", Text: "expected a stream header"}
		}
		if name.Space != NSStream {
			return t, true, &StreamError{Condition: "invalid-namespace"}
		}
		return t, true, nil
	}
}

// startStream keeps what the stanzas need of the header tag buf[start:pos] (which
// encoding/xml has accepted): its raw name and its namespace declarations.
func (r *Reader) startStream(start int) error {
	r.mark = start
	r.attrs, r.arena = r.attrs[:0], r.arena[:0]
	end, nameEnd, empty, err := r.startTag(r.buf[:r.pos], start, true, false)
	if err != nil || end != r.pos { // not expected: the scanner accepts what encoding/xml does
		return &StreamError{Condition: "not-well-formed", Text: "unexpected stream header"}
	}
	r.resetScope()
	err = r.checkTag(r.buf[:r.pos], start, nameEnd, true)
	r.resetScope()
	if err != nil {
		return err
	}
	r.streamName = string(r.buf[start+1 : nameEnd])
	r.streamEmpty = empty
	for _, a := range r.attrs {
		space, local := splitName(string(r.buf[start+a.name.a : start+a.name.b]))
		switch {
		case space == "xmlns":
		case space == "" && local == "xmlns":
			local = ""
		default:
			continue
		}
		if r.streamNS == nil {
			r.streamNS = r.small.streamNS[:0]
		}
		r.streamNS = append(r.streamNS, nsBinding{local, string(r.arena[a.val.a:a.val.b])})
	}
	r.attrs, r.arena = r.attrs[:0], r.arena[:0]
	r.mark = r.pos
	return nil
}

// Next reads the next top-level element of the stream. It returns ErrStreamEnd at
// </stream:stream>, io.EOF when the connection ends, and *StreamError for bad input.
func (r *Reader) Next() (*Envelope, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.streamEmpty {
		return nil, r.fail(ErrStreamEnd)
	}
	env, err := r.next()
	if err == ErrParked {
		r.parked = false
		return nil, err
	}
	if err != nil {
		return nil, r.fail(err)
	}
	if r.pos == r.w && (r.lean || len(r.buf) > shrinkBufSize) {
		// Nothing read is left. A buffer grown for one big stanza goes; a lean reader
		// gives its buffer back, as the next element may be a long time coming.
		r.putBuf()
	}
	if cap(r.arena) > shrinkBufSize {
		r.arena = nil
	}
	return env, nil
}

func (r *Reader) next() (*Envelope, error) {
	for {
		if r.depth == 0 {
			// White space between elements (keepalives) never counts against a stanza.
			r.pos = skipSpace(r.buf[:r.w], r.pos)
			r.mark = r.pos
		}
		lim, limited := r.limit()
		final := limited || r.rerr != nil
		if r.pos < lim || final {
			env, atEnd, err := r.token(lim, final, limited)
			switch {
			case err == nil && atEnd:
				// The input ended the construct: nothing can follow it.
				return nil, r.endErr(limited)
			case err == nil:
				r.tok = -1
				if env != nil {
					return env, nil
				}
				continue
			case err != errNeedMore:
				return nil, err
			case final:
				return nil, r.endErr(limited)
			}
			if r.tok != r.pos {
				r.tok, r.fpos, r.fq = r.pos, r.pos, 0
			}
			r.tried = lim - r.pos
		}
		r.more()
		if r.parked {
			return nil, ErrParked
		}
	}
}

// endErr is the error for input that ends (or hits the size limit) inside an element.
func (r *Reader) endErr(limited bool) error {
	if limited {
		return r.tooLarge()
	}
	if errors.Is(r.rerr, io.EOF) || errors.Is(r.rerr, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	return r.rerr
}

// more reads until the construct cut short at tok may be complete: its terminator has
// come, or it has twice the bytes it had when last tried (so that a long construct
// trickling in is parsed O(log n) times, not once per read), or the input ended.
func (r *Reader) more() {
	for {
		old := r.w - r.fill() // fill may move the bytes
		if r.rerr != nil || r.tok < 0 || r.w-r.tok >= 2*r.tried {
			return
		}
		if _, limited := r.limit(); limited {
			return
		}
		b := r.buf[:r.w]
		switch t := r.tok; {
		case r.w-t < 3:
			return
		case b[t] != '<':
			if bytes.IndexByte(b[old:], '<') >= 0 {
				return
			}
		case b[t+1] == '!' && b[t+2] == '[':
			if bytes.Contains(b[max(old-2, t):], []byte("]]>")) {
				return
			}
		default:
			if r.tagEnd() {
				return
			}
		}
	}
}

// tagEnd looks for the '>' that ends the tag at tok, outside quoted values, from where it
// last stopped.
func (r *Reader) tagEnd() bool {
	b := r.buf[:r.w]
	i := r.fpos
	for i < len(b) {
		if r.fq != 0 {
			k := bytes.IndexByte(b[i:], r.fq)
			if k < 0 {
				i = len(b)
				break
			}
			i += k + 1
			r.fq = 0
			continue
		}
		c := b[i]
		i++
		switch c {
		case '>':
			r.fpos = i
			return true
		case '\'', '"':
			r.fq = c
		}
	}
	r.fpos = i
	return false
}

// token parses the construct at pos in buf[:lim]. It returns the envelope when that ends
// a top-level element. With final, lim is where the input ends (or where the size limit
// cuts it: limited); atEnd reports a construct that only the end completed.
func (r *Reader) token(lim int, final, limited bool) (env *Envelope, atEnd bool, err error) {
	b := r.buf[:lim]
	i := r.pos
	if i >= len(b) {
		return nil, false, errNeedMore
	}
	if b[i] != '<' {
		end, atEnd, err := charData(b, i, final)
		if err != nil {
			return nil, false, err
		}
		if r.depth == 0 && !allSpace(b[i:end], false) {
			return nil, false, syntaxErr("text between stanzas")
		}
		r.pos = end
		return nil, atEnd, nil
	}
	if i+1 >= len(b) {
		return nil, false, errNeedMore
	}
	switch b[i+1] {
	case '/':
		return r.endTag(b, i)
	case '?':
		// Processing instructions, comments and DTDs are restricted XML (RFC 6120 §11.1);
		// rejected as soon as they are recognised.
		return nil, false, &StreamError{Condition: "restricted-xml"}
	case '!':
		if i+2 >= len(b) {
			return nil, false, errNeedMore
		}
		switch b[i+2] {
		case '-':
			if i+3 >= len(b) {
				return nil, false, errNeedMore
			}
			if b[i+3] != '-' {
				return nil, false, syntaxErr("invalid sequence <!- not part of <!--")
			}
			return nil, false, &StreamError{Condition: "restricted-xml"}
		case '[':
			return r.cdata(b, i, final && !limited && r.rerr == io.EOF)
		}
		return nil, false, &StreamError{Condition: "restricted-xml"}
	}
	return r.element(b, i, final)
}

func (r *Reader) cdata(b []byte, i int, eof bool) (*Envelope, bool, error) {
	const open = "<![CDATA["
	for k := 3; k < len(open); k++ {
		if i+k >= len(b) {
			return nil, false, errNeedMore
		}
		if b[i+k] != open[k] {
			return nil, false, syntaxErr("invalid <![ sequence")
		}
	}
	start := i + len(open)
	k := bytes.Index(b[start:], []byte("]]>"))
	if k < 0 {
		if eof {
			return nil, false, syntaxErr("unexpected EOF in CDATA section")
		}
		return nil, false, errNeedMore
	}
	text := b[start : start+k]
	if !checkText(text) {
		return nil, false, syntaxErr("invalid UTF-8 or character in CDATA section")
	}
	if r.depth == 0 && !allSpace(text, true) {
		return nil, false, syntaxErr("text between stanzas")
	}
	r.pos = start + k + 3
	return nil, false, nil
}

// element handles a start tag at b[i].
func (r *Reader) element(b []byte, i int, final bool) (*Envelope, bool, error) {
	keep := r.depth == 0 || r.depth == 1 && !r.hasChild
	if r.depth == 0 {
		r.attrs, r.arena, r.nStanza = r.attrs[:0], r.arena[:0], 0
		r.hasChild = false
		r.open = r.open[:0]
		r.resetScope()
	}
	nAttrs, nArena := len(r.attrs), len(r.arena)
	end, nameEnd, empty, err := r.startTag(b, i, keep, final)
	if err == nil {
		err = r.checkTag(b, i, nameEnd, false)
	}
	if err != nil {
		r.attrs, r.arena = r.attrs[:nAttrs], r.arena[:nArena]
		return nil, false, err
	}
	name := span{i + 1 - r.mark, nameEnd - r.mark}
	switch {
	case r.depth == 0:
		r.nStanza = len(r.attrs)
		r.name = name
		r.pos = end
		if empty {
			n := end - r.mark
			r.contentStart = n
			env, err := r.finish(end, n)
			return env, false, err
		}
		r.contentStart = end - r.mark
	case keep:
		r.hasChild = true
		r.child = name
	}
	r.pos = end
	if empty {
		r.popScope() // its declarations end with it
	} else {
		r.depth++
		r.open = append(r.open, name)
	}
	return nil, false, nil
}

// startTag parses the start tag at b[i] and returns the index after it and after its
// name. With keep, its attributes are appended to r.attrs (names as offsets from mark)
// with their values decoded into r.arena.
func (r *Reader) startTag(b []byte, i int, keep, final bool) (end, nameEnd int, empty bool, err error) {
	j, colon, err := scanQName(b, i+1)
	if err != nil {
		if err == errNoName {
			err = syntaxErr("expected element name after <")
		}
		return 0, 0, false, err
	}
	nameEnd = j
	r.tag, r.tagNS = r.tag[:0], colon
	for {
		j = skipSpace(b, j)
		if j >= len(b) {
			return 0, 0, false, errNeedMore
		}
		switch b[j] {
		case '/':
			if j+1 >= len(b) {
				return 0, 0, false, errNeedMore
			}
			if b[j+1] != '>' {
				return 0, 0, false, syntaxErr("expected /> in element")
			}
			return j + 2, nameEnd, true, nil
		case '>':
			return j + 1, nameEnd, false, nil
		}
		a := j
		if j, colon, err = scanQName(b, j); err != nil {
			if err == errNoName {
				err = syntaxErr("expected attribute name in element")
			}
			return 0, 0, false, err
		}
		attrEnd := j
		if colon || attrEnd-a == 5 && string(b[a:attrEnd]) == "xmlns" {
			r.tagNS = true
		}
		j = skipSpace(b, j)
		if j >= len(b) {
			return 0, 0, false, errNeedMore
		}
		if b[j] != '=' {
			return 0, 0, false, syntaxErr("attribute name without = in element")
		}
		j = skipSpace(b, j+1)
		if j >= len(b) {
			return 0, 0, false, errNeedMore
		}
		q := b[j]
		if q != '\'' && q != '"' {
			return 0, 0, false, syntaxErr("unquoted or missing attribute value in element")
		}
		valStart := j + 1
		if !keep {
			if j, err = attrValue(b, valStart, q, nil, final); err != nil {
				return 0, 0, false, err
			}
		} else {
			v := len(r.arena)
			if j, err = attrValue(b, valStart, q, &r.arena, final); err != nil {
				return 0, 0, false, err
			}
			r.attrs = append(r.attrs, attrRec{name: span{a - r.mark, attrEnd - r.mark}, val: span{v, len(r.arena)}})
		}
		r.tag = append(r.tag, tagAttr{name: span{a, attrEnd}, val: span{valStart, j - 1}})
	}
}

// endTag handles an end tag at b[i].
func (r *Reader) endTag(b []byte, i int) (*Envelope, bool, error) {
	j, err := scanName(b, i+2)
	if err != nil {
		if err == errNoName {
			err = syntaxErr("expected element name after </")
		}
		return nil, false, err
	}
	name := b[i+2 : j]
	j = skipSpace(b, j)
	if j >= len(b) {
		return nil, false, errNeedMore
	}
	if b[j] != '>' {
		return nil, false, syntaxErr("invalid characters between </" + string(name) + " and >")
	}
	end := j + 1
	if r.depth == 0 {
		if string(name) != r.streamName {
			return nil, false, syntaxErr("element <" + r.streamName + "> closed by </" + string(name) + ">")
		}
		r.pos = end
		return nil, false, ErrStreamEnd
	}
	top := r.open[len(r.open)-1]
	if open := r.buf[r.mark+top.a : r.mark+top.b]; !bytes.Equal(name, open) {
		return nil, false, syntaxErr("element <" + string(open) + "> closed by </" + string(name) + ">")
	}
	r.open = r.open[:len(r.open)-1]
	r.depth--
	r.popScope()
	r.pos = end
	if r.depth == 0 {
		env, err := r.finish(end, i-r.mark)
		return env, false, err
	}
	return nil, false, nil
}

// finish builds the envelope of the element buf[mark:end].
func (r *Reader) finish(end, contentEnd int) (*Envelope, error) {
	env := &Envelope{
		contentStart: r.contentStart,
		contentEnd:   contentEnd,
	}
	var attrs []xml.Attr
	env.Name, env.Child, attrs, env.Raw, _ = r.resolve(end, env.attrBuf[:0])
	env.Kind = KindOf(env.Name)
	env.setHeader(attrs[:r.nStanza:r.nStanza])
	if r.hasChild {
		env.HasChild = true
		env.ChildAttrs = attrs[r.nStanza:]
	}
	clear(r.binds) // no references to this envelope's strings
	nameLen := len(r.rawName)
	r.rawName = ""
	if cap(r.open) > 1024 {
		r.open = nil
	}
	if r.anyUsed {
		return r.declareUsed(env, nameLen)
	}
	return env, nil
}

// resolve returns the names and attributes of the element read (r.name, the first
// r.nStanza of r.attrs) and of its first child (if r.hasChild; its attributes follow),
// namespaces resolved as encoding/xml resolves them, and a copy of r.buf[r.mark:end]: one
// allocation holds that copy and every name and value. attrs uses dst when it has room.
// The element's own namespace declarations are left in r.binds[len(streamNS):nb].
func (r *Reader) resolve(end int, dst []xml.Attr) (name, child xml.Name, attrs []xml.Attr, raw []byte, nb int) {
	m := r.mark
	// Names go into the arena after the values.
	toArena := func(s span) span {
		a := len(r.arena)
		r.arena = append(r.arena, r.buf[m+s.a:m+s.b]...)
		return span{a, len(r.arena)}
	}
	nameAt := toArena(r.name)
	var childAt span
	if r.hasChild {
		childAt = toArena(r.child)
	}
	for i := range r.attrs {
		r.attrs[i].name = toArena(r.attrs[i].name)
	}
	// The raw copy first, its capacity cut so that an append to it cannot reach the
	// strings after it, which are never written again.
	n := end - m
	mem := make([]byte, n+len(r.arena))
	copy(mem, r.buf[m:end])
	copy(mem[n:], r.arena)
	raw = mem[:n:n]
	s := unsafe.String(unsafe.SliceData(mem[n:]), len(r.arena))
	str := func(sp span) string { return s[sp.a:sp.b] }
	r.rawName = str(nameAt)

	if dst != nil && cap(dst) >= len(r.attrs) {
		attrs = dst[:len(r.attrs)]
	} else {
		attrs = make([]xml.Attr, len(r.attrs))
	}
	r.binds = append(r.binds[:0], r.streamNS...)
	nb = -1
	for i, a := range r.attrs {
		if i == r.nStanza {
			nb = len(r.binds)
		}
		space, local := splitName(str(a.name))
		attrs[i] = xml.Attr{Name: xml.Name{Space: space, Local: local}, Value: str(a.val)}
		switch {
		case space == "xmlns":
			r.binds = append(r.binds, nsBinding{local, attrs[i].Value})
		case space == "" && local == "xmlns":
			r.binds = append(r.binds, nsBinding{"", attrs[i].Value})
		}
	}
	if nb < 0 {
		nb = len(r.binds)
	}
	sb := r.binds[:nb]
	space, local := splitName(r.rawName)
	name = xml.Name{Space: translate(space, local, true, sb), Local: local}
	for i := range attrs[:r.nStanza] {
		attrs[i].Name.Space = translate(attrs[i].Name.Space, attrs[i].Name.Local, false, sb)
	}
	if r.hasChild {
		space, local := splitName(str(childAt))
		child = xml.Name{Space: translate(space, local, true, r.binds), Local: local}
		for i := range attrs[r.nStanza:] {
			a := &attrs[r.nStanza+i]
			a.Name.Space = translate(a.Name.Space, a.Name.Local, false, r.binds)
		}
	}
	return name, child, attrs, raw, nb
}

// translate resolves a name's prefix as encoding/xml does, with binds the declarations
// in scope (later ones win).
func translate(space, local string, isElement bool, binds []nsBinding) string {
	switch {
	case space == "xmlns":
		return space
	case space == "" && !isElement:
		return space
	case space == "xml":
		space = xmlURL
	case space == "" && local == "xmlns":
		return space
	}
	for i := len(binds) - 1; i >= 0; i-- {
		if binds[i].prefix == space {
			return binds[i].uri
		}
	}
	return space
}

// KindOf tells a stanza's kind from its element name (KindOther outside the stanza
// namespaces jabber:client, jabber:component:accept and jabber:server).
func KindOf(n xml.Name) Kind {
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
