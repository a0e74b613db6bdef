package xmpp

import (
	"bytes"
	"encoding/xml"
	"strings"

	"github.com/switchboard-im/switchboard/internal/nsoracle"
)

// What FuzzReaderOracle expects of namespaces; the rules themselves are checked by
// internal/nsoracle, written apart from the reader's (nscheck.go).

// headerDecls returns the first start tag of in (the stream header), raw, and its
// declarations.
func headerDecls(in string) (xml.StartElement, []nsoracle.Decl, bool) {
	d := xml.NewDecoder(strings.NewReader(in))
	d.Strict = true
	for {
		tok, err := d.RawToken()
		if err != nil {
			return xml.StartElement{}, nil, false
		}
		if st, ok := tok.(xml.StartElement); ok {
			var ds []nsoracle.Decl
			for _, a := range st.Attr {
				switch {
				case a.Name.Space == "xmlns":
					ds = append(ds, nsoracle.Decl{Prefix: a.Name.Local, URI: a.Value})
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					ds = append(ds, nsoracle.Decl{URI: a.Value})
				}
			}
			return st, ds, true
		}
	}
}

// declared is what the reader makes of an element that uses the stream header's
// declarations used: the declarations written after its name, first among its attributes.
func declared(env *Envelope, stream []nsoracle.Decl, used map[int]bool) *Envelope {
	if len(used) == 0 {
		return env
	}
	out := *env
	nameEnd := attrsStart(env.Raw)
	var ins bytes.Buffer
	var attrs []xml.Attr
	for k, d := range stream {
		if !used[k] {
			continue
		}
		ins.WriteString(" xmlns:" + d.Prefix + "='")
		EscapeAttr(&ins, d.URI)
		ins.WriteByte('\'')
		attrs = append(attrs, xml.Attr{Name: xml.Name{Space: "xmlns", Local: d.Prefix}, Value: d.URI})
	}
	raw := append([]byte(nil), env.Raw[:nameEnd]...)
	raw = append(raw, ins.Bytes()...)
	out.Raw = append(raw, env.Raw[nameEnd:]...)
	out.contentStart += ins.Len()
	out.contentEnd += ins.Len()
	out.Attrs = append(attrs, env.Attrs...)
	return &out
}
