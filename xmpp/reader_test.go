package xmpp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

const hdr = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`

func readAll(t *testing.T, in string, max int) ([]*Envelope, error) {
	t.Helper()
	r := NewReader(strings.NewReader(in), max)
	if _, err := r.ReadHeader(); err != nil {
		return nil, err
	}
	var out []*Envelope
	for {
		env, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, env)
	}
}

func TestReaderRawAndHeader(t *testing.T) {
	stanzas := []string{
		`<message to='bob@localhost' id='1' type='chat'><body>a &amp; b</body></message>`,
		`<iq type='get' id='2'/>`,
		`<presence><priority>5</priority></presence>`,
		`<iq type='set' id='3'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub></iq>`,
	}
	in := hdr + stanzas[0] + "\n \t" + stanzas[1] + " " + stanzas[2] + stanzas[3] + "</stream:stream>"
	envs, err := readAll(t, in, 1024)
	if !errors.Is(err, ErrStreamEnd) {
		t.Fatalf("end: %v", err)
	}
	if len(envs) != len(stanzas) {
		t.Fatalf("got %d envelopes", len(envs))
	}
	for i, e := range envs {
		if string(e.Raw) != stanzas[i] {
			t.Errorf("raw %d = %q, want %q", i, e.Raw, stanzas[i])
		}
	}
	m := envs[0]
	if m.Kind != KindMessage || m.To != "bob@localhost" || m.ID != "1" || m.Type != "chat" || !m.HasChild || m.Child.Local != "body" {
		t.Errorf("message envelope %+v", m)
	}
	if envs[1].Kind != KindIQ || envs[1].HasChild || len(envs[1].Content()) != 0 {
		t.Errorf("self-closing iq %+v", envs[1])
	}
	p := envs[3]
	if p.Child.Space != "http://jabber.org/protocol/pubsub" || p.Child.Local != "pubsub" {
		t.Errorf("child %v", p.Child)
	}
	if got := string(m.Rewrite("alice@localhost/r", "bob@localhost/x")); got !=
		`<message id='1' type='chat' from='alice@localhost/r' to='bob@localhost/x'><body>a &amp; b</body></message>` {
		t.Errorf("rewrite: %s", got)
	}
	if got := string(envs[1].RewriteNS("", "c.localhost", NSClient)); got != `<iq xmlns='jabber:client' type='get' id='2' to='c.localhost'></iq>` {
		t.Errorf("rewriteNS: %s", got)
	}
}

func TestReaderErrors(t *testing.T) {
	cases := []struct {
		name, in, cond string
		max            int
	}{
		{"not well-formed", hdr + `<message><a></b></message>`, "not-well-formed", 1024},
		{"comment", hdr + `<!-- x -->`, "restricted-xml", 1024},
		{"pi", hdr + `<?foo bar?>`, "restricted-xml", 1024},
		{"dtd", `<!DOCTYPE x>` + hdr, "restricted-xml", 1024},
		{"text between stanzas", hdr + `hello`, "not-well-formed", 1024},
		{"too large", hdr + `<message><body>` + strings.Repeat("x", 200) + `</body></message>`, "policy-violation", 100},
		{"wrong root", `<foo/>`, "not-well-formed", 1024},
		{"wrong stream ns", `<stream:stream xmlns:stream='urn:other'>`, "invalid-namespace", 1024},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(t, tc.in, tc.max)
			se, ok := AsStreamError(err)
			if !ok || se.Condition != tc.cond {
				t.Fatalf("got %v, want %s", err, tc.cond)
			}
		})
	}
	// Whitespace keepalives never add up to a too-large stanza.
	in := hdr + strings.Repeat(" ", 500) + `<presence/>` + strings.Repeat("\n", 500) + `<presence/>`
	envs, err := readAll(t, in, 200)
	if len(envs) != 2 || !errors.Is(err, io.EOF) {
		t.Fatalf("keepalives: %d envelopes, %v", len(envs), err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add(`<message to='a@b'><body>x</body></message><iq type='get' id='1'/>`)
	f.Add(`<presence><x xmlns='y' a='&lt;'/></presence>`)
	f.Fuzz(func(t *testing.T, s string) {
		r := NewReader(strings.NewReader(hdr+s), 4096)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			env, err := r.Next()
			if err != nil {
				return
			}
			// Whatever was accepted must re-parse to the same header.
			rr := NewReader(strings.NewReader(hdr+string(env.Rewrite(env.From, env.To))), 1<<20)
			_, _ = rr.ReadHeader()
			again, err := rr.Next()
			if err != nil {
				t.Fatalf("rewrite of %q does not parse: %v", env.Raw, err)
			}
			if again.Name != env.Name || again.ID != env.ID || again.Type != env.Type {
				t.Fatalf("rewrite changed the header: %q", env.Raw)
			}
		}
	})
}

// The reader must give the same envelopes (and the same end) whatever sizes the input
// arrives in, including one byte at a time.
func TestReaderChunked(t *testing.T) {
	inputs := append([]string{}, typicalStanzas...)
	inputs = append(inputs,
		`<iq xmlns:p='urn:p' type='set' id='a&amp;b'><p:q xmlns:r='urn:r' r:a="1" p:b='2' xml:lang='en' c='&#x41;&#65;&quot;'>`+
			`<![CDATA[<x>]]>text &lt; more<deep a='b'><deeper/></deep></p:q><second/></iq>`,
		"<message>\r\n<body a='x\r\ny\rz\tw'>a\r\nb</body></message>  \n<presence/></stream:stream>",
		`<message><body>`+strings.Repeat("é", 3000)+`</body></message>`,
		`<message><body>`+strings.Repeat("x", 300)+`</body></message>`,
		`<message><body>x</body></message><a><b></a></b>`,
	)
	for _, in := range inputs {
		for _, chunks := range [][]byte{nil, {0}, {1, 4}, {63}} {
			for _, max := range []int{0, 100, 1 << 16} {
				compareReaders(t, hdr+in, max, chunks)
			}
		}
	}
}

// An element of exactly the limit is accepted, one byte more is a policy violation.
func TestReaderLimitBoundary(t *testing.T) {
	el := `<message><body>` + strings.Repeat("h", 200) + `</body></message>` // longer than the header
	for _, chunks := range [][]byte{nil, {0}} {
		for _, max := range []int{len(el) - 1, len(el), len(el) + 1} {
			compareReaders(t, hdr+"  "+el+el, max, chunks) // as encoding/xml did
		}
		r := NewReader(&chunkReader{data: []byte(hdr + "  " + el + el), sizes: chunks}, len(el))
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if env, err := r.Next(); err != nil || string(env.Raw) != el {
				t.Fatalf("at the limit: %v", err)
			}
		}
		r = NewReader(&chunkReader{data: []byte(hdr + el), sizes: chunks}, len(el)-1)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); errClass(err) != "policy-violation" {
			t.Fatalf("over the limit: %v", err)
		}
	}
}

// A large stanza trickling in one byte per read is parsed in linear time: a construct cut
// short is parsed again only when it can be complete or has doubled.
func TestReaderTrickle(t *testing.T) {
	big := `<message><body a='` + strings.Repeat("x>", 100_000) + `'>` + strings.Repeat("y", 100_000) + `</body></message>`
	r := NewReader(&chunkReader{data: []byte(hdr + big), sizes: []byte{0}}, 1<<20)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	env, err := r.Next()
	if err != nil || len(env.Raw) != len(big) {
		t.Fatalf("trickle: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("trickle took %v", d)
	}
}

// Restart keeps input already read (the client may pipeline its new stream header);
// Reset (after STARTTLS) drops it.
func TestReaderRestartReset(t *testing.T) {
	in := hdr + `<auth/>` + hdr + `<iq type='set' id='b'/>`
	r := NewReader(&chunkReader{data: []byte(in), sizes: []byte{200}}, 1024)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if env, err := r.Next(); err != nil || env.Name.Local != "auth" {
		t.Fatalf("auth: %v", err)
	}
	if r.Buffered() == 0 {
		t.Fatal("nothing buffered after the first element")
	}
	r.Restart()
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if env, err := r.Next(); err != nil || env.ID != "b" {
		t.Fatalf("after restart: %v", err)
	}
	r = NewReader(&chunkReader{data: []byte(hdr + `<starttls/><injected/>`), sizes: []byte{200}}, 1024)
	_, _ = r.ReadHeader()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	r.Reset(strings.NewReader(hdr + `<fresh/>`))
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if env, err := r.Next(); err != nil || env.Name.Local != "fresh" {
		t.Fatalf("after reset: %v %v", env, err)
	}
}

// ResetContent reads a new document under the header read last, whatever became of the
// document before (an error, the end of the stream, a stanza left unread).
func TestReaderResetContent(t *testing.T) {
	r := NewReader(strings.NewReader(""), 0)
	r.ResetBytes([]byte(hdr+`<message id='a'/></stream:stream>`), 1<<16)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	for i, doc := range []struct{ in, want, end string }{
		{`<iq type='get' id='b'><q xmlns='urn:q'/></iq>`, "b", "EOF"},
		{`<message id='c'><body>x</body></message></stream:stream>`, "c", "stream end"},
		{`<message id='d'><bad></message>`, "", "not-well-formed"},
		{`<presence id='e'/><presence id='f'/>`, "e", ""},
		{`<message id='g'/>`, "g", "EOF"},
	} {
		b := []byte(doc.in)
		r.ResetContent(b, len(b)+16)
		env, err := r.Next()
		if doc.want == "" {
			if err == nil {
				t.Fatalf("doc %d: got %s, want an error", i, env.Raw)
			}
			continue
		}
		if err != nil || env.ID != doc.want || env.Name.Space != NSClient {
			t.Fatalf("doc %d: got %v %v, want id %s in jabber:client", i, env, err, doc.want)
		}
		if doc.end == "" {
			continue
		}
		_, err = r.Next()
		switch {
		case doc.end == "EOF" && err != io.EOF,
			doc.end == "stream end" && !errors.Is(err, ErrStreamEnd):
			t.Fatalf("doc %d: ended with %v, want %s", i, err, doc.end)
		}
	}
}

// EscapeAttr's output reads back, through encoding/xml, as the value it was given, and
// leaves plain values as they are.
func TestEscapeAttr(t *testing.T) {
	for _, v := range []string{"", "alice@localhost/r1", "q0.123", "a&b", "<x>", `it's "q"`, "tab\there",
		"ünï©ødé@höst", "end&", "&start", "mid'dle", "\x01ctl"} {
		var b bytes.Buffer
		b.WriteString("<a v='")
		EscapeAttr(&b, v)
		b.WriteString("'/>")
		if !strings.ContainsAny(v, "&<>'\"") && b.String() != "<a v='"+v+"'/>" {
			t.Errorf("%q: written as %q", v, b.String())
		}
		if v == "\x01ctl" {
			continue // not an XML character: written, not readable
		}
		var e struct {
			V string `xml:"v,attr"`
		}
		if err := xml.Unmarshal(b.Bytes(), &e); err != nil {
			t.Errorf("%q: %s does not parse: %v", v, b.String(), err)
		} else if e.V != v {
			t.Errorf("%q: reads back as %q", v, e.V)
		}
	}
}

// Bytes before the stream header count toward the limit, white space included: a peer
// that sends white space and never a header is cut off at the limit, before any
// authentication, instead of being buffered without bound.
func TestReaderHeaderWhitespaceCounts(t *testing.T) {
	const max = 4096
	for _, pre := range []int{0, 16, max - len(hdr)} {
		r := NewReader(strings.NewReader(strings.Repeat(" ", pre)+hdr+"<message/>"), max)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatalf("%d bytes of white space before the header: %v", pre, err)
		}
		if _, err := r.Next(); err != nil {
			t.Fatalf("after %d bytes of white space: %v", pre, err)
		}
	}
	r := NewReader(strings.NewReader(strings.Repeat(" ", 1<<20)+hdr), max)
	if _, err := r.ReadHeader(); errClass(err) != "policy-violation" {
		t.Fatalf("1 MiB of white space before the header: %v, want policy-violation", err)
	}
	if n := cap(r.buf); n > 4*max {
		t.Fatalf("the reader grew to %d bytes for a limit of %d", n, max)
	}
}
