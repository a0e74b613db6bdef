package xmpp

import (
	"io"
	"testing"
)

// typicalStanzas is a mix a router sees under load: chat messages, delegated IQs and their
// forwarded replies, presence.
var typicalStanzas = []string{
	`<message to='bob@localhost/r2' id='m1' type='chat'><body>Hello, this is a typical short chat message.</body></message>`,
	`<iq type='get' to='localhost' id='q0.123'><query xmlns='urn:example:bench'/></iq>`,
	`<iq type='result' from='bench.localhost' to='localhost' id='sbd:node1:0123456789abcdef'><delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='q0.123' to='alice@localhost/r1'/></forwarded></delegation></iq>`,
	`<presence><show>away</show><status>Out for lunch</status><priority>5</priority></presence>`,
}

// loopReader serves a stream header once, then the stanzas over and over.
type loopReader struct {
	head []byte
	body []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	if len(l.head) > 0 {
		n := copy(p, l.head)
		l.head = l.head[n:]
		return n, nil
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.body[l.off:])
		n += c
		l.off = (l.off + c) % len(l.body)
	}
	return n, nil
}

var _ io.Reader = (*loopReader)(nil)

func benchReader(b *testing.B, stanzas []string) {
	var body []byte
	for _, s := range stanzas {
		body = append(body, s...)
	}
	benchNext(b, &loopReader{head: []byte(hdr), body: body}, false, len(body)/len(stanzas))
}

// benchNext reads envelopes from src (a stream header first) as fast as it can; lean: as a
// reader of a TLS connection does.
func benchNext(b *testing.B, src io.Reader, lean bool, bytesPerOp int) {
	r := NewReader(src, 1<<16)
	if _, err := r.ReadHeader(); err != nil {
		b.Fatal(err)
	}
	r.lean = lean
	b.SetBytes(int64(bytesPerOp))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// Envelope parsing (Reader.Next) over a stream of typical stanzas.
func BenchmarkReaderNext(b *testing.B) { benchReader(b, typicalStanzas) }

// The smallest common case: a delegated IQ request.
func BenchmarkReaderNextIQ(b *testing.B) { benchReader(b, typicalStanzas[1:2]) }

// Rewriting a stanza's from/to (every c2s stanza gets its from stamped).
func BenchmarkEnvelopeRewrite(b *testing.B) {
	r := NewReader(&loopReader{head: []byte(hdr), body: []byte(typicalStanzas[0])}, 1<<16)
	if _, err := r.ReadHeader(); err != nil {
		b.Fatal(err)
	}
	env, err := r.Next()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = env.Rewrite("alice@localhost/r1", "bob@localhost/r2")
	}
}

// recordReader serves the header, then one stanza per Read (as a TLS connection hands out
// one record at a time), over and over.
type recordReader struct {
	head, rec []byte
	off       int
}

func (r *recordReader) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	n := copy(p, r.rec[r.off:])
	r.off = (r.off + n) % len(r.rec)
	return n, nil
}

// A delegated IQ per read, as a client's TLS records bring them at moderate load: the
// reader keeps its buffer, or (lean, as over TLS) gives it back after each IQ and waits
// for the next with a 32-byte read.
func BenchmarkReaderNextIQPerRead(b *testing.B) {
	for _, lean := range []bool{false, true} {
		name := "buffer"
		if lean {
			name = "lean"
		}
		b.Run(name, func(b *testing.B) {
			benchNext(b, &recordReader{head: []byte(hdr), rec: []byte(typicalStanzas[1])}, lean, len(typicalStanzas[1]))
		})
	}
}
