package delegation

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"

	"github.com/switchboard-im/switchboard/xmpp"
)

// Wrap builds the IQ that forwards a delegated stanza to its managing entity
// (XEP-0355 §5): <iq type='set'><delegation><forwarded>INNER</forwarded></delegation></iq>.
// inner must already carry xmlns='jabber:client' (see xmpp.Envelope.RewriteNS).
func Wrap(dns, outerID, from, to string, inner []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(inner) + len(outerID) + len(from) + len(to) + 160)
	b.WriteString("<iq type='set' id='")
	xmpp.EscapeAttr(&b, outerID)
	b.WriteString("' from='")
	xmpp.EscapeAttr(&b, from)
	b.WriteString("' to='")
	xmpp.EscapeAttr(&b, to)
	b.WriteString("'><delegation xmlns='")
	b.WriteString(dns)
	b.WriteString("'><forwarded xmlns='" + NSForward + "'>")
	b.Write(inner)
	b.WriteString("</forwarded></delegation></iq>")
	return b.Bytes()
}

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
// child of outer (XEP-0355 delegation, XEP-0356 privilege).
func UnwrapForwarded(outer *xmpp.Envelope, wrapper xml.Name, inner string, lenient bool) (*xmpp.Envelope, error) {
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

// ErrNotClient is returned by UnwrapChild when the inner stanza is not in jabber:client.
var ErrNotClient = errors.New("inner stanza not in jabber:client")

// UnwrapChild extracts the one stanza named inner directly inside the wrapper element
// that is outer's first child: <wrapper><INNER xmlns='jabber:client'/></wrapper>
// (XEP-0356 privileged_iq). An inner stanza in another namespace is ErrNotClient.
func UnwrapChild(outer *xmpp.Envelope, wrapper xml.Name, inner string) (*xmpp.Envelope, error) {
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
				if t.Name.Local != inner || found != nil {
					return nil, ErrBadWrapping
				}
				if t.Name.Space != xmpp.NSClient {
					return nil, ErrNotClient
				}
				env, err := sliceElement(d, t.Copy(), content, int(off))
				if err != nil {
					return nil, ErrBadWrapping
				}
				found = env
				depth--
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 1 && len(bytes.TrimSpace(t)) > 0 {
				return nil, ErrBadWrapping
			}
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

const wrapperHeader = "<stream:stream xmlns='jabber:client' xmlns:stream='" + xmpp.NSStream + "'>"

// ParseStanza turns the bytes of one stanza into an envelope (as if read from a client stream).
func ParseStanza(raw []byte) (*xmpp.Envelope, error) {
	r := xmpp.NewReader(concatReader(wrapperHeader, raw), len(raw)+len(wrapperHeader)+16)
	if _, err := r.ReadHeader(); err != nil {
		return nil, err
	}
	return r.Next()
}

func concatReader(a string, b []byte) *bytes.Reader {
	buf := make([]byte, 0, len(a)+len(b))
	buf = append(buf, a...)
	buf = append(buf, b...)
	return bytes.NewReader(buf)
}

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
