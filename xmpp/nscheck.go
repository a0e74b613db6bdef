package xmpp

import "bytes"

// Namespace well-formedness (Namespaces in XML 1.0) of every element the reader reads, at
// any depth: what Switchboard relays must parse for any strict receiver, whatever its XML
// library. encoding/xml checks none of this (an undeclared prefix stays as is, a duplicate
// attribute is kept twice), so the reader does, as it scans each start tag:
//   - every attribute appears once, by qualified name and by expanded name;
//   - every prefix in an element or attribute name is declared, in the element itself,
//     an ancestor or the stream header (the xml prefix is always declared);
//   - xml is bound to its namespace only, and nothing else is; xmlns is never declared,
//     and its namespace is never bound; no prefix is undeclared (xmlns:p='');
//   - no element name has the xmlns prefix, and no name begins or ends with a colon.
// A violation is a not-well-formed stream error, as Prosody answers.
//
// A prefix that only the stream header declares is in scope on that stream but not on
// the stream the stanza is relayed to: the reader marks the header declarations an
// element uses, and finish copies them onto its start tag (declareUsed), so that every
// envelope is self-contained.

const xmlnsURL = "http://www.w3.org/2000/xmlns/" // the shorter reserved name: len(xmlURL)-7

// tagAttr is one attribute of the start tag just scanned: its qualified name and its raw
// value between the quotes, as indexes into the buffer scanned.
type tagAttr struct{ name, val span }

// scopeBind is a prefix declared inside the element being read.
type scopeBind struct {
	prefix span // offsets from mark
	uri    span // in Reader.uris
	depth  int  // of the declaring element
}

func nsErr(msg string) error { return &StreamError{Condition: "not-well-formed", Text: msg} }

// resetScope forgets the declarations of the element read before.
func (r *Reader) resetScope() {
	r.scope, r.uris = r.scope[:0], r.uris[:0]
	if r.anyUsed {
		clear(r.usedNS)
		r.anyUsed = false
	}
	if cap(r.uris) > shrinkBufSize {
		r.uris = nil
	}
}

// popScope drops the declarations of elements deeper than the current depth (those of an
// element that has just ended).
func (r *Reader) popScope() {
	n := len(r.scope)
	for n > 0 && r.scope[n-1].depth >= r.depth {
		n--
	}
	r.scope = r.scope[:n]
}

// checkTag checks the start tag b[i:...] whose name ends at nameEnd and whose attributes
// startTag left in r.tag, and enters its declarations into the scope. For a stream
// header (header), the element's own name is left to the caller (a wrong one is
// invalid-namespace) and the previous stream's declarations are not in scope.
func (r *Reader) checkTag(b []byte, i, nameEnd int, header bool) error {
	if !r.tagNS { // no prefix, no declaration: only duplicates to look for
		if len(r.tag) > 1 {
			return r.uniqueNames(b)
		}
		return nil
	}
	prefixed := 0
	for _, a := range r.tag {
		name := b[a.name.a:a.name.b]
		c := bytes.IndexByte(name, ':')
		switch {
		case c < 0:
			// A reserved name decodes from at least as many bytes as it has.
			if string(name) == "xmlns" && a.val.b-a.val.a >= len(xmlURL)-7 {
				if v := r.value(b, a.val); reserved(v) {
					return nsErr("namespace " + string(v) + " cannot be the default namespace")
				}
			}
			continue
		case c == 0 || c == len(name)-1:
			return nsErr("invalid qualified name " + string(name))
		case string(name[:c]) != "xmlns":
			prefixed++
			continue
		}
		if err := r.declare(b, a, c); err != nil {
			return err
		}
	}
	if len(r.tag) > 1 {
		if err := r.uniqueNames(b); err != nil {
			return err
		}
	}
	if !header {
		name := b[i+1 : nameEnd]
		if c := bytes.IndexByte(name, ':'); c >= 0 {
			if c == 0 || c == len(name)-1 {
				return nsErr("invalid qualified name " + string(name))
			}
			if string(name[:c]) == "xmlns" {
				return nsErr("element " + string(name) + " has the xmlns prefix")
			}
			if _, ok := r.lookup(b, name[:c], false); !ok {
				return nsErr("undeclared namespace prefix " + string(name[:c]))
			}
		}
	}
	if prefixed == 0 {
		return nil
	}
	var expanded []string // "uri local" of each prefixed attribute, when there are several
	for _, a := range r.tag {
		name := b[a.name.a:a.name.b]
		c := bytes.IndexByte(name, ':')
		if c < 0 || string(name[:c]) == "xmlns" {
			continue
		}
		uri, ok := r.lookup(b, name[:c], header)
		if !ok {
			return nsErr("undeclared namespace prefix " + string(name[:c]))
		}
		if prefixed > 1 {
			x := uri + " " + string(name[c+1:])
			for _, y := range expanded {
				if x == y {
					return nsErr("attribute " + string(name) + " appears twice (by namespace)")
				}
			}
			expanded = append(expanded, x)
		}
	}
	return nil
}

// declare checks the declaration a (an attribute xmlns:p, the colon at c of its name) and
// enters it into the scope.
func (r *Reader) declare(b []byte, a tagAttr, c int) error {
	name := b[a.name.a:a.name.b]
	prefix := name[c+1:]
	v := r.value(b, a.val)
	switch {
	case string(prefix) == "xmlns":
		return nsErr("the xmlns prefix cannot be declared")
	case string(prefix) == "xml":
		if string(v) != xmlURL {
			return nsErr("the xml prefix cannot be bound to " + string(v))
		}
		return nil // always declared
	case reserved(v):
		return nsErr("namespace " + string(v) + " cannot be bound to " + string(prefix))
	case len(v) == 0:
		return nsErr("prefix " + string(prefix) + " cannot be undeclared")
	}
	u := len(r.uris)
	r.uris = append(r.uris, v...)
	r.scope = append(r.scope, scopeBind{
		prefix: span{a.name.a + c + 1 - r.mark, a.name.b - r.mark},
		uri:    span{u, len(r.uris)},
		depth:  r.depth,
	})
	return nil
}

// reserved reports the namespaces only their own prefixes may have.
func reserved(v []byte) bool { return string(v) == xmlURL || string(v) == xmlnsURL }

// value returns the attribute value at raw (between its quotes) as a parser reports it;
// it is b's own bytes when there is nothing to decode, as in the usual declaration.
func (r *Reader) value(b []byte, raw span) []byte {
	v := b[raw.a:raw.b]
	if bytes.IndexByte(v, '&') < 0 && bytes.IndexByte(v, '\r') < 0 {
		return v
	}
	var out []byte
	attrValue(b[:raw.b+1], raw.a, b[raw.b], &out, true) // checked by startTag already
	return out
}

// uniqueNames fails if an attribute name of r.tag appears twice.
func (r *Reader) uniqueNames(b []byte) error {
	const small = 16
	if len(r.tag) <= small {
		for k, a := range r.tag {
			x := b[a.name.a:a.name.b]
			for _, o := range r.tag[:k] {
				if o.name.b-o.name.a == len(x) && bytes.Equal(x, b[o.name.a:o.name.b]) {
					return nsErr("attribute " + string(x) + " appears twice")
				}
			}
		}
		return nil
	}
	seen := make(map[string]struct{}, len(r.tag))
	for _, a := range r.tag {
		x := b[a.name.a:a.name.b]
		if _, dup := seen[string(x)]; dup {
			return nsErr("attribute " + string(x) + " appears twice")
		}
		seen[string(x)] = struct{}{}
	}
	return nil
}

// lookup finds the namespace bound to prefix: in the element being read, then on the
// stream header (unless the tag is a header), whose declarations it marks as used.
func (r *Reader) lookup(b []byte, prefix []byte, header bool) (string, bool) {
	if string(prefix) == "xml" {
		return xmlURL, true
	}
	for k := len(r.scope) - 1; k >= 0; k-- {
		s := r.scope[k]
		if bytes.Equal(b[r.mark+s.prefix.a:r.mark+s.prefix.b], prefix) {
			return string(r.uris[s.uri.a:s.uri.b]), true
		}
	}
	if header {
		return "", false
	}
	for k := len(r.streamNS) - 1; k >= 0; k-- {
		if r.streamNS[k].prefix == string(prefix) { // (prefix is never "": the default is not looked up)
			if len(r.usedNS) < len(r.streamNS) {
				r.usedNS = make([]bool, len(r.streamNS))
			}
			r.usedNS[k], r.anyUsed = true, true
			return r.streamNS[k].uri, true
		}
	}
	return "", false
}

// declareUsed returns the element env with the stream header's declarations it uses
// written onto its start tag (after its name, nameLen bytes after the '<'), read again
// so that its raw bytes, attributes and content offsets agree.
func (r *Reader) declareUsed(env *Envelope, nameLen int) (*Envelope, error) {
	var b bytes.Buffer
	b.Grow(len(env.Raw) + 64)
	b.Write(env.Raw[:1+nameLen])
	for k, used := range r.usedNS {
		if !used {
			continue
		}
		d := r.streamNS[k]
		b.WriteString(" xmlns:")
		b.WriteString(d.prefix)
		b.WriteString("='")
		EscapeAttr(&b, d.uri)
		b.WriteByte('\'')
	}
	b.Write(env.Raw[1+nameLen:])
	def, hasDef := "", false
	for _, d := range r.streamNS {
		if d.prefix == "" {
			def, hasDef = d.uri, true
		}
	}
	p, err := openStream(b.Bytes(), def, !hasDef, false, nil)
	if err != nil {
		return nil, err
	}
	defer p.Release()
	return p.Next()
}
