// Package nsoracle checks Namespaces in XML 1.0 over encoding/xml's raw tokens. It is
// the tests' own account of what a strict receiver accepts, written apart from the
// stream reader's checks (xmpp/nscheck.go) so that the two can be compared
// (FuzzReaderOracle) and so that end-to-end tests can check what a user receives.
package nsoracle

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
)

const (
	xmlURL   = "http://www.w3.org/XML/1998/namespace"
	xmlnsURL = "http://www.w3.org/2000/xmlns/"
)

// Decl is a namespace declaration (prefix "" for the default namespace).
type Decl struct{ Prefix, URI string }

// Checker walks one document (an element, or a stream body) and checks every start tag;
// stream is the declarations in scope outside it. It returns the indexes of stream that
// top-level element k uses (per element, for those read), and the index of the first
// top-level element that breaks a rule (-1 if none before the tokens end).
type Checker struct {
	Stream []Decl // declarations in scope outside the document (a stream header's)
	Header bool   // the tag checked is a stream header: its name is not checked
	scope  []scoped
	used   map[int]bool
}

type scoped struct {
	prefix, uri string
	depth       int
}

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

func (o *Checker) resolve(prefix string) (string, bool) {
	if prefix == "xml" {
		return xmlURL, true
	}
	for k := len(o.scope) - 1; k >= 0; k-- {
		if o.scope[k].prefix == prefix {
			return o.scope[k].uri, true
		}
	}
	for k := len(o.Stream) - 1; k >= 0; k-- {
		if o.Stream[k].Prefix == prefix && prefix != "" {
			if o.used == nil {
				o.used = map[int]bool{}
			}
			o.used[k] = true
			return o.Stream[k].URI, true
		}
	}
	return "", false
}

// ErrNS: a rule of Namespaces in XML 1.0 is broken.
var ErrNS = errors.New("namespace rule broken")

// Tag checks one raw start tag at depth and enters its declarations.
func (o *Checker) Tag(st xml.StartElement, depth int) error {
	seen := map[string]bool{}
	for _, a := range st.Attr {
		q := qname(a.Name)
		if seen[q] {
			return ErrNS
		}
		seen[q] = true
		switch {
		case a.Name.Space == "" && strings.Contains(a.Name.Local, ":"):
			return ErrNS
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			if a.Value == xmlURL || a.Value == xmlnsURL {
				return ErrNS
			}
		case a.Name.Space == "xmlns":
			p := a.Name.Local
			switch {
			case p == "xmlns", p == "xml" && a.Value != xmlURL, p != "xml" && (a.Value == xmlURL || a.Value == xmlnsURL), a.Value == "":
				return ErrNS
			}
			if p != "xml" {
				o.scope = append(o.scope, scoped{p, a.Value, depth})
			}
		}
	}
	if !o.Header {
		n := st.Name
		switch {
		case n.Space == "" && strings.Contains(n.Local, ":"), n.Space == "xmlns":
			return ErrNS
		case n.Space != "":
			if _, ok := o.resolve(n.Space); !ok {
				return ErrNS
			}
		}
	}
	expanded := map[string]bool{}
	for _, a := range st.Attr {
		if a.Name.Space == "" || a.Name.Space == "xmlns" {
			continue
		}
		uri, ok := o.resolve(a.Name.Space)
		if !ok {
			return ErrNS
		}
		x := uri + " " + a.Name.Local
		if expanded[x] {
			return ErrNS
		}
		expanded[x] = true
	}
	return nil
}

// Walk reads doc's tokens; top-level elements are counted from 0. It returns, for each
// top-level element ended, the stream declarations it used, and the index of the first
// element that breaks a rule (-1: none before the tokens end).
func (o *Checker) Walk(doc []byte) (used []map[int]bool, bad int) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	depth, k := 0, 0
	for {
		tok, err := d.RawToken()
		if err != nil {
			if err == io.EOF {
				return used, -1
			}
			return used, -1
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := o.Tag(t, depth); err != nil {
				return used, k
			}
			depth++
		case xml.EndElement:
			if depth == 0 {
				return used, -1 // the stream's end
			}
			depth--
			n := len(o.scope)
			for n > 0 && o.scope[n-1].depth >= depth {
				n--
			}
			o.scope = o.scope[:n]
			if depth == 0 {
				used = append(used, o.used)
				o.used = nil
				k++
			}
		}
	}
}

// Strict reports whether raw, alone, is a namespace-well-formed element whose
// prefixes are all declared inside it (what any receiver can parse).
func Strict(raw []byte) bool {
	o := &Checker{}
	used, bad := o.Walk(raw)
	return bad < 0 && len(used) == 1 && len(used[0]) == 0
}
