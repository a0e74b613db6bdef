// Package blocking is XEP-0191 blocking command: users' blocklists in etcd (Store, one
// key per user, `<prefix>/blocklist/<host>/<localpart>`, whose value is the JSON list of
// blocked JIDs), every node's in-memory copy of them kept by a watch (Cache), what a
// blocked JID covers (XEP-0016 §2.1 JID matching), and the protocol's XML.
package blocking

import (
	"bytes"
	"encoding/xml"
	"errors"
	"slices"
	"strings"

	"mellium.im/xmpp/jid"
)

// NS is XEP-0191's namespace; NSErrors that of its application error condition.
const (
	NS       = "urn:xmpp:blocking"
	NSErrors = "urn:xmpp:blocking:errors"
)

// Item is one blocked JID, normalized, in its parts: a domain, a bare JID, a full JID or a
// domain with a resource.
type Item struct{ Local, Domain, Resource string }

// ParseItem parses and normalizes a JID (RFC 7622) as an item.
func ParseItem(s string) (Item, error) {
	if s == "" {
		return Item{}, ErrJIDMalformed
	}
	j, err := jid.Parse(s)
	if err != nil {
		return Item{}, ErrJIDMalformed
	}
	return Item{j.Localpart(), j.Domainpart(), j.Resourcepart()}, nil
}

func (it Item) String() string {
	var b strings.Builder
	if it.Local != "" {
		b.WriteString(it.Local)
		b.WriteByte('@')
	}
	b.WriteString(it.Domain)
	if it.Resource != "" {
		b.WriteByte('/')
		b.WriteString(it.Resource)
	}
	return b.String()
}

// Covers reports whether the item blocks the address local@domain/res (normalized), by
// XEP-0016 §2.1, which XEP-0191 §4 refers to: a full JID covers only itself; a bare JID
// every resource of it; domain/resource that resource of the domain and of any user at
// it; a domain itself and everything at it.
func (it Item) Covers(local, domain, res string) bool {
	if it.Domain != domain {
		return false
	}
	if it.Local != "" && it.Local != local {
		return false
	}
	return it.Resource == "" || it.Resource == res
}

// List is one user's blocklist as the routing checks it. It never changes once made.
type List struct {
	items []Item
	set   map[Item]struct{}
}

// NewList makes a list of items (stored strings that no longer parse are skipped).
func NewList(items []string) *List {
	l := &List{set: make(map[Item]struct{}, len(items))}
	for _, s := range items {
		it, err := ParseItem(s)
		if err != nil {
			continue
		}
		if _, dup := l.set[it]; !dup {
			l.set[it] = struct{}{}
			l.items = append(l.items, it)
		}
	}
	return l
}

// Len is how many items the list has.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.items)
}

// Items are the list's items (shared: do not modify).
func (l *List) Items() []Item {
	if l == nil {
		return nil
	}
	return l.items
}

// Blocks reports whether the list blocks the address local@domain/res (normalized
// parts): a few map lookups, in XEP-0016's order, no allocation.
func (l *List) Blocks(local, domain, res string) bool {
	if l == nil || len(l.set) == 0 {
		return false
	}
	if local != "" {
		if res != "" {
			if _, ok := l.set[Item{local, domain, res}]; ok {
				return true
			}
		}
		if _, ok := l.set[Item{local, domain, ""}]; ok {
			return true
		}
	}
	if res != "" {
		if _, ok := l.set[Item{"", domain, res}]; ok {
			return true
		}
	}
	_, ok := l.set[Item{"", domain, ""}]
	return ok
}

// Errors of a blocking IQ (XEP-0191 §3); the caller maps them to stanza errors.
var (
	ErrBadRequest   = errors.New("bad-request")
	ErrJIDMalformed = errors.New("jid-malformed")
)

// Request is a parsed blocking IQ.
type Request struct {
	Op    string // "blocklist" (a get), "block" or "unblock" (sets)
	Items []Item // the JIDs named, normalized, without repeats (unblock: none is all)
}

type xmlIQ struct {
	Type  string `xml:"type,attr"`
	Child struct {
		XMLName xml.Name
		Items   []struct {
			JID *string `xml:"jid,attr"`
		} `xml:"item"`
	} `xml:",any"`
}

// ParseIQ reads a blocking IQ: a get of <blocklist/>, a set of <block/> with at least one
// item, or a set of <unblock/> with any number (none: unblock everyone). An item without
// a valid JID is ErrJIDMalformed; anything else out of place is ErrBadRequest.
func ParseIQ(stanza []byte) (Request, error) {
	var iq xmlIQ
	if err := xml.Unmarshal(stanza, &iq); err != nil || iq.Child.XMLName.Space != NS {
		return Request{}, ErrBadRequest
	}
	req := Request{Op: iq.Child.XMLName.Local}
	switch {
	case iq.Type == "get" && req.Op == "blocklist":
		return req, nil
	case iq.Type == "set" && (req.Op == "block" || req.Op == "unblock"):
	default:
		return Request{}, ErrBadRequest
	}
	for _, x := range iq.Child.Items {
		if x.JID == nil {
			return Request{}, ErrJIDMalformed
		}
		it, err := ParseItem(*x.JID)
		if err != nil {
			return Request{}, err
		}
		if !slices.Contains(req.Items, it) {
			req.Items = append(req.Items, it)
		}
	}
	if req.Op == "block" && len(req.Items) == 0 {
		return Request{}, ErrBadRequest // XEP-0191 §3.3: at least one item
	}
	return req, nil
}

// Payload renders <blocklist/>, <block/> or <unblock/> with items (a result or a push).
func Payload(op string, items []Item) []byte {
	var b bytes.Buffer
	b.WriteString("<" + op + " xmlns='" + NS + "'")
	if len(items) == 0 {
		b.WriteString("/>")
		return b.Bytes()
	}
	b.WriteByte('>')
	for _, it := range items {
		b.WriteString("<item jid='")
		_ = xml.EscapeText(&b, []byte(it.String()))
		b.WriteString("'/>")
	}
	b.WriteString("</" + op + ">")
	return b.Bytes()
}
