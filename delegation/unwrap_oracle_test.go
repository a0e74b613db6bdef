package delegation

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/switchboard-im/switchboard/xmpp"
)

// oldUnwrapForwarded is the encoding/xml implementation UnwrapForwarded replaced; it
// extracts the stanza named inner from
// <wrapper><forwarded xmlns='urn:xmpp:forward:0'>INNER</forwarded></wrapper>, the first
// child of outer (XEP-0355 delegation, XEP-0356 privilege).
func oldUnwrapForwarded(outer *xmpp.Envelope, wrapper xml.Name, inner string, lenient bool) (*xmpp.Envelope, error) {
	content := outer.Content()
	d := xml.NewDecoder(bytes.NewReader(content))
	var found *xmpp.Envelope
	depth := 0
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 1:
				if t.Name != wrapper {
					return nil, ErrBadWrapping
				}
			case 2:
				if t.Name.Space != NSForward || t.Name.Local != "forwarded" {
					return nil, ErrBadWrapping
				}
			case 3:
				if t.Name.Local == "delay" {
					if err := d.Skip(); err != nil {
						return nil, ErrBadWrapping
					}
					depth--
					continue
				}
				if t.Name.Local != inner || found != nil {
					return nil, ErrBadWrapping
				}
				switch t.Name.Space {
				case xmpp.NSClient:
				case NSForward: // no xmlns of its own
					if !lenient {
						return nil, fmt.Errorf("%w: inner %s lacks xmlns='jabber:client'", ErrBadWrapping, inner)
					}
				default:
					return nil, ErrBadWrapping
				}
				// One pass: the inner stanza's header, first child and content bounds are
				// read here, so it is never parsed again.
				env, err := sliceElement(d, t.Copy(), content, int(off))
				if err != nil {
					return nil, ErrBadWrapping
				}
				found = env
				depth--
			}
		case xml.EndElement:
			depth--
		}
	}
	if found == nil {
		return nil, ErrBadWrapping
	}
	return found, nil
}

// sliceElement reads the rest of the element whose start tag d just returned (it began
// at offset start of doc) and returns it as an envelope over its own copy of the bytes.
func sliceElement(d *xml.Decoder, st xml.StartElement, doc []byte, start int) (*xmpp.Envelope, error) {
	contentStart := int(d.InputOffset())
	var child *xml.StartElement
	depth := 1
	for {
		before := int(d.InputOffset())
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && child == nil {
				c := t.Copy()
				child = &c
			}
		case xml.EndElement:
			depth--
			if depth == 0 {
				end := int(d.InputOffset())
				raw := append([]byte(nil), doc[start:end]...)
				return xmpp.NewEnvelope(st, raw, contentStart-start, before-start, child), nil
			}
		}
	}
}

func wrapped(content string) string {
	return `<iq type='result' from='c.localhost' to='localhost' id='sbd:n:1'>` + content + `</iq>`
}

const (
	innerOK  = `<iq xmlns='jabber:client' type='result' id='q1' to='a@localhost/r'><query xmlns='urn:x'><item a='1'>t&amp;</item></query></iq>`
	innerRaw = `<iq type='result' id='q1' to='a@localhost/r'/>`
)

// The scanner-based UnwrapForwarded against the encoding/xml one it replaced: the same
// inner stanza where both accept; refused where the old one refused; stricter only on
// stray text, which XEP-0297 does not allow.
func TestUnwrapForwardedCases(t *testing.T) {
	d2 := `<delegation xmlns='urn:xmpp:delegation:2'>`
	fw := `<forwarded xmlns='urn:xmpp:forward:0'>`
	for _, tc := range []struct {
		content string
		lenient bool
		ok      bool
	}{
		{d2 + fw + innerOK + `</forwarded></delegation>`, false, true},
		{" \n" + d2 + " " + fw + "\n" + innerOK + " </forwarded>\n</delegation> ", false, true},
		{d2 + fw + `<delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/>` + innerOK + `</forwarded></delegation>`, false, true},
		{`<d:delegation xmlns:d='urn:xmpp:delegation:2'><f:forwarded xmlns:f='urn:xmpp:forward:0'>` + innerOK + `</f:forwarded></d:delegation>`, false, true},
		{d2 + fw + innerRaw + `</forwarded></delegation>`, true, true},
		{d2 + fw + innerRaw + `</forwarded></delegation>`, false, false},
		{d2 + fw + `</forwarded></delegation>`, false, false},
		{d2 + `<forwarded xmlns='urn:xmpp:forward:0'/></delegation>`, false, false},
		{d2 + fw + innerOK + innerOK + `</forwarded></delegation>`, false, false},
		{d2 + fw + `<message xmlns='jabber:client'/></forwarded></delegation>`, false, false},
		{d2 + fw + `<iq xmlns='jabber:server' type='result' id='q1'/></forwarded></delegation>`, false, false},
		{`<delegation xmlns='urn:xmpp:delegation:1'>` + fw + innerOK + `</forwarded></delegation>`, false, false},
		{d2 + `<forwarded xmlns='urn:other'>` + innerOK + `</forwarded></delegation>`, false, false},
		{d2 + fw + innerOK + `</forwarded>` + fw + innerOK + `</forwarded></delegation>`, false, false},
		{d2 + fw + innerOK + `</forwarded></delegation><extra/>`, false, false},
		{d2 + fw + innerOK + "</forwarded ></delegation\n\t>", false, true},
		{`<delegation xmlns='urn:xmpp:delegation:2' a='>'>` + `<forwarded xmlns='urn:xmpp:forward:0' b="&lt;/forwarded>">` + innerOK + `</forwarded></delegation>`, false, true},
		{`<d:delegation xmlns:d='urn:xmpp:delegation:2'><f:forwarded xmlns:f='urn:xmpp:forward:0'>` + innerOK + "</f:forwarded \r\n></d:delegation>", false, true},
		{``, false, false},
	} {
		outer, err := xmpp.ParseStanza([]byte(wrapped(tc.content)))
		if err != nil {
			t.Fatalf("%s: %v", tc.content, err)
		}
		got, err := UnwrapForwarded(outer, xml.Name{Space: NS2, Local: "delegation"}, "iq", tc.lenient)
		if (err == nil) != tc.ok {
			t.Errorf("%s (lenient %v): err %v, want ok=%v", tc.content, tc.lenient, err, tc.ok)
			continue
		}
		old, oerr := oldUnwrapForwarded(outer, xml.Name{Space: NS2, Local: "delegation"}, "iq", tc.lenient)
		if err == nil {
			if oerr != nil {
				t.Errorf("%s: accepted, the old one refused: %v", tc.content, oerr)
			} else if d := sameInner(got, old); d != "" {
				t.Errorf("%s: %s", tc.content, d)
			}
		}
	}
}

func sameInner(a, b *xmpp.Envelope) string {
	if !bytes.Equal(a.Raw, b.Raw) || !bytes.Equal(a.Content(), b.Content()) || a.Kind != b.Kind || a.ID != b.ID ||
		a.Type != b.Type || a.To != b.To || a.From != b.From || a.HasChild != b.HasChild || a.Child != b.Child ||
		!reflect.DeepEqual(a.Attrs, b.Attrs) {
		return fmt.Sprintf("new %+v\nold %+v", a, b)
	}
	return ""
}

// Whatever the new UnwrapForwarded accepts, the old one accepted, with the same result.
func FuzzUnwrapForwarded(f *testing.F) {
	f.Add(`<delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'>`+innerOK+`</forwarded></delegation>`, false)
	f.Add(`<delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'>`+innerRaw+`</forwarded></delegation>`, true)
	f.Fuzz(func(t *testing.T, content string, lenient bool) {
		outer, err := xmpp.ParseStanza([]byte(wrapped(content)))
		if err != nil {
			return
		}
		got, err := UnwrapForwarded(outer, xml.Name{Space: NS2, Local: "delegation"}, "iq", lenient)
		if err != nil {
			if !errors.Is(err, ErrBadWrapping) {
				t.Fatalf("error %v is not ErrBadWrapping", err)
			}
			return
		}
		old, oerr := oldUnwrapForwarded(outer, xml.Name{Space: NS2, Local: "delegation"}, "iq", lenient)
		if oerr != nil {
			t.Fatalf("accepted what the old one refused (%v): %q", oerr, content)
		}
		if d := sameInner(got, old); d != "" {
			t.Fatal(d)
		}
	})
}

// The encoding/xml unwrap, for comparison with BenchmarkUnwrap.
func BenchmarkUnwrapOld(b *testing.B) {
	env := mustParse(b, benchReply)
	b.ReportAllocs()
	for b.Loop() {
		inner, err := oldUnwrapForwarded(env, xml.Name{Space: NS2, Local: "delegation"}, "iq", false)
		if err != nil || inner.ID != "q0.123" {
			b.Fatal(inner, err)
		}
	}
}
