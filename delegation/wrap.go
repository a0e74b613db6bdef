package delegation

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"

	"github.com/switchboard-im/switchboard/xmpp"
)

// Wrap builds the IQ that forwards a delegated stanza to its managing entity
// (XEP-0355 §5): <iq type='set'><delegation><forwarded>INNER</forwarded></delegation></iq>,
// INNER being inner readdressed from innerFrom to innerTo and put in jabber:client, all
// built in one buffer.
func Wrap(dns, outerID, from, to string, inner *xmpp.Envelope, innerFrom, innerTo string) []byte {
	return AppendWrap(nil, dns, outerID, from, to, inner, innerFrom, innerTo)
}

// AppendWrap appends what Wrap makes to dst.
func AppendWrap(dst []byte, dns, outerID, from, to string, inner *xmpp.Envelope, innerFrom, innerTo string) []byte {
	b := bytes.NewBuffer(dst)
	b.Grow(inner.RewriteLen(innerFrom, innerTo, xmpp.NSClient) + len(outerID) + len(from) + len(to) + 160)
	wrapStart(b, dns, outerID, from, to)
	inner.WriteRewritten(b, innerFrom, innerTo, xmpp.NSClient)
	b.WriteString(wrapEnd)
	return b.Bytes()
}

func wrapStart(b *bytes.Buffer, dns, outerID, from, to string) {
	b.WriteString("<iq type='set' id='")
	xmpp.EscapeAttr(b, outerID)
	b.WriteString("' from='")
	xmpp.EscapeAttr(b, from)
	b.WriteString("' to='")
	xmpp.EscapeAttr(b, to)
	b.WriteString("'><delegation xmlns='")
	b.WriteString(dns)
	b.WriteString("'><forwarded xmlns='" + NSForward + "'>")
}

const wrapEnd = "</forwarded></delegation></iq>"

// ErrBadWrapping is returned for wrappers that do not hold exactly one forwarded stanza.
var ErrBadWrapping = errors.New("not a single stanza wrapped in <forwarded/>")

// Unwrap extracts the inner IQ of a managing entity's reply. In lenient mode
// (urn:xmpp:delegation:1 components, e.g. go-xmpp) an inner IQ without
// xmlns='jabber:client' is accepted; otherwise it must carry it.
func Unwrap(dns string, outer *xmpp.Envelope, lenient bool) (*xmpp.Envelope, error) {
	return UnwrapForwarded(outer, xml.Name{Space: dns, Local: "delegation"}, "iq", lenient)
}

// UnwrapForwarded extracts the stanza named inner from
// <wrapper><forwarded xmlns='urn:xmpp:forward:0'>INNER</forwarded></wrapper>, the first
// child of outer (XEP-0355 delegation, XEP-0356 privilege). A <delay/> beside INNER is
// allowed (XEP-0297).
//
// outer was read by the stream's scanner, so its content is well-formed: the wrapper is its
// first child (outer.Child, resolved there) and must be its only element; the forwarded
// element must be the wrapper's only element. In the usual spelling (<forwarded
// xmlns='urn:xmpp:forward:0'>) both are cut out by position and only the forwarded content
// is scanned again, once; any other spelling (prefixes) takes a second scan that resolves it.
func UnwrapForwarded(outer *xmpp.Envelope, wrapper xml.Name, inner string, lenient bool) (*xmpp.Envelope, error) {
	if !outer.HasChild || outer.Child != wrapper {
		return nil, ErrBadWrapping
	}
	wc, _, ok := onlyElement(outer.Content())
	if !ok {
		return nil, ErrBadWrapping
	}
	fw, tag, ok := onlyElement(wc)
	if !ok {
		return nil, ErrBadWrapping
	}
	// The declarations in scope for INNER: outer is self-contained (the reader declared
	// on it what it used from its stream), so they are those of outer, the wrapper and
	// the forwarded element.
	outerDecls, wrapperDecls := outer.Attrs, outer.ChildAttrs
	if !plainForwarded(tag) || bytes.Contains(tag, []byte("xmlns:")) {
		top, err := xmpp.Children(outer.Content(), outer.Name.Space, outer.Attrs)
		if err != nil || len(top) != 1 || top[0].Name != wrapper || !top[0].HasChild ||
			top[0].Child != (xml.Name{Space: NSForward, Local: "forwarded"}) {
			return nil, ErrBadWrapping
		}
		outerDecls, wrapperDecls = top[0].Attrs, top[0].ChildAttrs // the wrapper's, then the forwarded element's
	}
	els, err := xmpp.Children(fw, NSForward, outerDecls, wrapperDecls)
	if err != nil {
		return nil, ErrBadWrapping
	}
	var found *xmpp.Envelope
	for _, e := range els {
		switch {
		case e.Name.Local == "delay":
		case e.Name.Local != inner || found != nil:
			return nil, ErrBadWrapping
		case e.Name.Space == xmpp.NSClient:
			found = e
		case e.Name.Space == NSForward: // no xmlns of its own
			if !lenient {
				return nil, fmt.Errorf("%w: inner %s lacks xmlns='jabber:client'", ErrBadWrapping, inner)
			}
			e.Name.Space = xmpp.NSClient
			e.Kind = xmpp.KindOf(e.Name)
			found = e
		default:
			return nil, ErrBadWrapping
		}
	}
	if found == nil {
		return nil, ErrBadWrapping
	}
	return found, nil
}

// ErrNotClient is returned by UnwrapChild when the inner stanza is not in jabber:client.
var ErrNotClient = errors.New("inner stanza not in jabber:client")

// UnwrapChild extracts the one stanza named inner directly inside the wrapper element
// that is outer's first child: <wrapper><INNER xmlns='jabber:client'/></wrapper>
// (XEP-0356 privileged_iq). An inner stanza in another namespace is ErrNotClient.
func UnwrapChild(outer *xmpp.Envelope, wrapper xml.Name, inner string) (*xmpp.Envelope, error) {
	top, err := xmpp.Children(outer.Content(), outer.Name.Space, outer.Attrs)
	if err != nil || len(top) != 1 || top[0].Name != wrapper {
		return nil, ErrBadWrapping
	}
	els, err := xmpp.Children(top[0].Content(), wrapper.Space, top[0].Attrs)
	if err != nil || len(els) != 1 || els[0].Name.Local != inner {
		return nil, ErrBadWrapping
	}
	if els[0].Name.Space != xmpp.NSClient {
		return nil, ErrNotClient
	}
	return els[0], nil
}

// plainForwarded reports whether a start tag is exactly <forwarded ...> with
// xmlns='urn:xmpp:forward:0' among its attributes and no prefixed name.
func plainForwarded(tag []byte) bool {
	rest, ok := bytes.CutPrefix(tag, []byte("<forwarded"))
	if !ok || len(rest) == 0 || !isSpace(rest[0]) {
		return false
	}
	return bytes.Contains(rest, []byte(" xmlns='"+NSForward+"'")) || bytes.Contains(rest, []byte(` xmlns="`+NSForward+`"`))
}

// onlyElement returns the content and the start tag of the one element in s (white
// space around it allowed). s was checked as well-formed already; a second element or
// stray text makes the result not well-formed, which the next pass reports.
func onlyElement(s []byte) (content, tag []byte, ok bool) {
	s = bytes.TrimSpace(s)
	if len(s) < 2 || s[0] != '<' || s[len(s)-1] != '>' {
		return nil, nil, false
	}
	// The end of the start tag: the first '>' outside a quoted attribute value.
	var q byte
	i := 1
	for ; i < len(s); i++ {
		c := s[i]
		if q != 0 {
			if c == q {
				q = 0
			}
			continue
		}
		if c == '\'' || c == '"' {
			q = c
		} else if c == '>' {
			break
		}
	}
	if i == len(s) || s[i-1] == '/' {
		return nil, nil, false // no end of the tag, or an empty element: nothing inside
	}
	// The start tag's raw name, which its end tag repeats.
	n := 1
	for n < i && !isSpace(s[n]) && s[n] != '>' && s[n] != '/' {
		n++
	}
	// s must end with its end tag: "</" name, white space, ">".
	e := len(s) - 1
	for e > i && isSpace(s[e-1]) {
		e--
	}
	name := s[1:n]
	j := e - len(name) - 2
	if j <= i || s[j] != '<' || s[j+1] != '/' || !bytes.Equal(s[j+2:e], name) {
		return nil, nil, false
	}
	return s[i+1 : j], s[:i+1], true
}

// isSpace reports whether c is XML white space.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Advertisement is the <message/> that tells a managing entity what is delegated to it
// (XEP-0355 §4.2). An empty list is still sent after a change, so that an entity learns
// that its last delegation was withdrawn.
func Advertisement(dns, from, to string, rules []Rule) []byte {
	var b bytes.Buffer
	b.WriteString("<message from='")
	xmpp.EscapeAttr(&b, from)
	b.WriteString("' to='")
	xmpp.EscapeAttr(&b, to)
	b.WriteString("' id='")
	b.WriteString(xmpp.NewID())
	b.WriteString("'><delegation xmlns='")
	b.WriteString(dns)
	b.WriteString("'>")
	for _, r := range rules {
		b.WriteString("<delegated namespace='")
		xmpp.EscapeAttr(&b, r.Namespace)
		b.WriteString("'")
		if len(r.Filtering) == 0 {
			b.WriteString("/>")
			continue
		}
		b.WriteString(">")
		for _, a := range r.Filtering {
			b.WriteString("<attribute name='")
			xmpp.EscapeAttr(&b, a)
			b.WriteString("'/>")
		}
		b.WriteString("</delegated>")
	}
	b.WriteString("</delegation></message>")
	return b.Bytes()
}

// DiscoNode is the disco#info node a managing entity answers for disco nesting
// (XEP-0355 §7.2): dns::NS for the server, dns:bare:NS for users' bare JIDs.
func DiscoNode(dns, ns string, bare bool) string {
	if bare {
		return dns + ":bare:" + ns
	}
	return dns + "::" + ns
}

// DiscoQuery is the disco#info request for a nesting node.
func DiscoQuery(id, from, to, node string) []byte {
	var b bytes.Buffer
	b.WriteString("<iq type='get' id='")
	xmpp.EscapeAttr(&b, id)
	b.WriteString("' from='")
	xmpp.EscapeAttr(&b, from)
	b.WriteString("' to='")
	xmpp.EscapeAttr(&b, to)
	b.WriteString("'><query xmlns='" + discoInfo + "' node='")
	xmpp.EscapeAttr(&b, node)
	b.WriteString("'/></iq>")
	return b.Bytes()
}
