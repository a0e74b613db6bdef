// Package xmpp is Switchboard's wire level: stream reading into envelopes, stream and stanza
// errors, c2s negotiation (STARTTLS, SASL, bind) and the XEP-0114 accept side. It knows
// nothing about the cluster: what happens to a stanza is decided by the caller.
package xmpp

import (
	"bytes"
	"encoding/xml"
	"strings"
)

// Kind tells what top-level element a stanza is.
type Kind uint8

const (
	KindOther Kind = iota
	KindMessage
	KindPresence
	KindIQ
)

func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindPresence:
		return "presence"
	case KindIQ:
		return "iq"
	}
	return "other"
}

// Envelope is what the router needs to know about one top-level element: its header and
// first child, plus the raw bytes. Routing never needs the rest, so the rest is never parsed.
type Envelope struct {
	Kind  Kind
	Name  xml.Name   // the element's name as the decoder resolved it
	Attrs []xml.Attr // the start tag's attributes, in order
	To    string
	From  string
	Type  string
	ID    string

	// First child element, if any.
	Child      xml.Name
	ChildAttrs []xml.Attr
	HasChild   bool

	// Raw is the element as received. Raw[contentStart:contentEnd] is everything between
	// the start tag and the end tag (empty for a self-closing element).
	Raw          []byte
	contentStart int
	contentEnd   int

	// attrBuf holds Attrs and ChildAttrs when they fit (a delegated IQ and its answer
	// have four or five), so that they come with the envelope's own allocation.
	attrBuf [5]xml.Attr
}

// NewEnvelope builds an envelope for an element already sliced out of a larger document
// (a forwarded stanza): start is its start tag, raw its bytes, raw[contentStart:contentEnd]
// its content, child its first child's start tag (nil if none). Without a namespace of
// its own (ns == ""), the element is taken as jabber:client.
func NewEnvelope(start xml.StartElement, raw []byte, contentStart, contentEnd int, child *xml.StartElement) *Envelope {
	env := &Envelope{Name: start.Name, Raw: raw, contentStart: contentStart, contentEnd: contentEnd}
	name := start.Name
	if name.Space != NSComponent && name.Space != NSServer {
		name.Space = NSClient
	}
	env.Kind = KindOf(name)
	env.setHeader(start.Attr)
	if child != nil {
		env.HasChild, env.Child, env.ChildAttrs = true, child.Name, child.Attr
	}
	return env
}

// setHeader keeps the start tag's attributes and picks out the addressing ones.
func (e *Envelope) setHeader(attrs []xml.Attr) {
	e.Attrs = attrs
	for _, a := range attrs {
		if a.Name.Space != "" {
			continue
		}
		switch a.Name.Local {
		case "to":
			e.To = a.Value
		case "from":
			e.From = a.Value
		case "type":
			e.Type = a.Value
		case "id":
			e.ID = a.Value
		}
	}
}

// Content returns the bytes between the start and end tag.
func (e *Envelope) Content() []byte { return e.Raw[e.contentStart:e.contentEnd] }

// ChildAttr returns the value of a first-child attribute.
func (e *Envelope) ChildAttr(local string) (string, bool) {
	for _, a := range e.ChildAttrs {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value, true
		}
	}
	return "", false
}

// Attr returns the value of an unqualified attribute of the stanza element.
func (e *Envelope) Attr(local string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// Rewrite returns the stanza bytes with its from and to attributes replaced (an empty value
// removes the attribute). Only the start tag is rebuilt; the content is copied as received.
func (e *Envelope) Rewrite(from, to string) []byte {
	return e.rewrite(from, to, "")
}

// RewriteNS is Rewrite that also sets the element's default namespace, as needed when a
// stanza is embedded in another one (XEP-0297 forwarded stanzas carry xmlns='jabber:client').
func (e *Envelope) RewriteNS(from, to, ns string) []byte {
	return e.rewrite(from, to, ns)
}

func (e *Envelope) rewrite(from, to, ns string) []byte {
	var b bytes.Buffer
	b.Grow(e.RewriteLen(from, to, ns))
	e.WriteRewritten(&b, from, to, ns)
	return b.Bytes()
}

// RewriteLen is about how many bytes WriteRewritten writes (to size a buffer).
func (e *Envelope) RewriteLen(from, to, ns string) int {
	return len(e.Raw) + len(from) + len(to) + len(ns) + 32
}

// WriteRewritten writes what RewriteNS returns (Rewrite's when ns is "") to b, for a
// caller that embeds the stanza in a bigger one. The other attributes are copied as they
// were written, prefixes and declarations included (the reader made the element
// self-contained), so the copy means what the original meant.
func (e *Envelope) WriteRewritten(b *bytes.Buffer, from, to, ns string) {
	name := e.Name.Local
	b.WriteByte('<')
	b.WriteString(name)
	if ns != "" {
		writeAttr(b, "xmlns", ns)
	}
	tag := e.Raw[:e.contentStart]
	for i := attrsStart(tag); ; {
		qname, attr, next, ok := nextAttr(tag, i)
		if !ok {
			break
		}
		i = next
		switch string(qname) {
		case "from", "to":
			continue
		case "xmlns":
			if ns != "" {
				continue
			}
		}
		b.WriteByte(' ')
		b.Write(attr)
	}
	if from != "" {
		writeAttr(b, "from", from)
	}
	if to != "" {
		writeAttr(b, "to", to)
	}
	b.WriteByte('>')
	b.Write(e.Content())
	b.WriteString("</")
	b.WriteString(name)
	b.WriteByte('>')
}

const xmlURL = "http://www.w3.org/XML/1998/namespace"

// attrsStart returns the index after the element name of a well-formed start tag.
func attrsStart(tag []byte) int {
	i := 1
	for i < len(tag) && class[tag[i]]&cSpace == 0 && tag[i] != '>' && tag[i] != '/' {
		i++
	}
	return i
}

// nextAttr reads the attribute at or after tag[i] in a well-formed start tag: its
// qualified name, its whole text (name='value', as written) and the index after it.
func nextAttr(tag []byte, i int) (qname, attr []byte, next int, ok bool) {
	i = skipSpace(tag, i)
	if i >= len(tag) || tag[i] == '>' || tag[i] == '/' {
		return nil, nil, i, false
	}
	start := i
	for i < len(tag) && class[tag[i]]&cSpace == 0 && tag[i] != '=' {
		i++
	}
	qname = tag[start:i]
	i = skipSpace(tag, i)
	i = skipSpace(tag, i+1) // past '='
	if i >= len(tag) {
		return nil, nil, i, false
	}
	q := tag[i]
	end := bytes.IndexByte(tag[i+1:], q)
	if end < 0 {
		return nil, nil, len(tag), false
	}
	next = i + 1 + end + 1
	return qname, tag[start:next], next, true
}

func writeAttr(b *bytes.Buffer, name, value string) {
	b.WriteByte(' ')
	b.WriteString(name)
	b.WriteString("='")
	EscapeAttr(b, value)
	b.WriteByte('\'')
}

// EscapeAttr writes s escaped for use inside a single- or double-quoted attribute.
func EscapeAttr(b *bytes.Buffer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\'':
			esc = "&apos;"
		case '"':
			esc = "&quot;"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(esc)
		last = i + 1
	}
	b.WriteString(s[last:])
}

// Escape returns s escaped for attribute or character data.
func Escape(s string) string {
	if !strings.ContainsAny(s, "&<>'\"") {
		return s
	}
	var b bytes.Buffer
	EscapeAttr(&b, s)
	return b.String()
}
