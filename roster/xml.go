package roster

import (
	"bytes"
	"encoding/xml"
	"errors"
	"slices"

	"mellium.im/xmpp/jid"
)

// Errors of a roster set (RFC 6121 §2.3.3, §2.5.3); the caller maps them to stanza errors.
var (
	ErrBadRequest    = errors.New("bad-request")
	ErrNotAcceptable = errors.New("not-acceptable")
	ErrJIDMalformed  = errors.New("jid-malformed")
)

type xmlItem struct {
	JID          string   `xml:"jid,attr"`
	Name         *string  `xml:"name,attr"`
	Subscription string   `xml:"subscription,attr"`
	Groups       []string `xml:"group"`
}

type xmlIQ struct {
	Query *struct {
		Ver   *string   `xml:"ver,attr"`
		Items []xmlItem `xml:"item"`
	} `xml:"jabber:iq:roster query"`
}

// Request is a parsed roster get or set.
type Request struct {
	Ver    *string // the client's cached version (get), nil if it sent none
	Item   Item    // the one item of a set
	Remove bool    // a set with subscription='remove'
}

// ParseGet reads the optional ver of a roster get (RFC 6121 §2.6.2).
func ParseGet(stanza []byte) (Request, error) {
	var iq xmlIQ
	if err := xml.Unmarshal(stanza, &iq); err != nil || iq.Query == nil {
		return Request{}, ErrBadRequest
	}
	return Request{Ver: iq.Query.Ver}, nil
}

// ParseSet reads a roster set: exactly one item, a valid JID, no empty or repeated
// group (RFC 6121 §2.3.3). 'subscription' other than remove and 'ask' are ignored: the
// server alone changes subscription states.
func ParseSet(stanza []byte) (Request, error) {
	var iq xmlIQ
	if err := xml.Unmarshal(stanza, &iq); err != nil || iq.Query == nil {
		return Request{}, ErrBadRequest
	}
	if len(iq.Query.Items) != 1 {
		return Request{}, ErrBadRequest
	}
	x := iq.Query.Items[0]
	j, err := jid.Parse(x.JID)
	if err != nil || x.JID == "" {
		return Request{}, ErrJIDMalformed
	}
	req := Request{Remove: x.Subscription == SubRemove}
	req.Item.JID = j.String()
	if x.Name != nil {
		req.Item.Name = *x.Name
	}
	for _, g := range x.Groups {
		if g == "" {
			return Request{}, ErrNotAcceptable
		}
		if slices.Contains(req.Item.Groups, g) {
			return Request{}, ErrBadRequest
		}
		req.Item.Groups = append(req.Item.Groups, g)
	}
	return req, nil
}

// AppendItem writes one <item/> (subscription "remove" for a deleted one).
func AppendItem(b *bytes.Buffer, it Item) {
	b.WriteString("<item jid='")
	escape(b, it.JID)
	b.WriteString("'")
	if it.Name != "" {
		b.WriteString(" name='")
		escape(b, it.Name)
		b.WriteString("'")
	}
	sub := it.Subscription
	if sub == "" {
		sub = SubNone
	}
	b.WriteString(" subscription='" + sub + "'")
	if it.Ask {
		b.WriteString(" ask='subscribe'")
	}
	if len(it.Groups) == 0 {
		b.WriteString("/>")
		return
	}
	b.WriteString(">")
	for _, g := range it.Groups {
		b.WriteString("<group>")
		escape(b, g)
		b.WriteString("</group>")
	}
	b.WriteString("</item>")
}

// Query renders a roster result: every item, with the version.
func Query(r *Roster) []byte {
	var b bytes.Buffer
	b.WriteString("<query xmlns='" + NS + "' ver='" + r.Version() + "'>")
	for _, it := range r.Items {
		AppendItem(&b, it)
	}
	b.WriteString("</query>")
	return b.Bytes()
}

// PushQuery renders the payload of a roster push for one changed item.
func PushQuery(ver string, it Item) []byte {
	var b bytes.Buffer
	b.WriteString("<query xmlns='" + NS + "' ver='" + ver + "'>")
	AppendItem(&b, it)
	b.WriteString("</query>")
	return b.Bytes()
}

func escape(b *bytes.Buffer, s string) { _ = xml.EscapeText(b, []byte(s)) }
