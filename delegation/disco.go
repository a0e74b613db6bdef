package delegation

import (
	"bytes"
	"encoding/xml"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-im/switchboard/xmpp"
)

// Identity is a disco#info identity.
type Identity struct {
	Category string `xml:"category,attr"`
	Type     string `xml:"type,attr"`
	Name     string `xml:"name,attr,omitempty"`
	Lang     string `xml:"http://www.w3.org/XML/1998/namespace lang,attr,omitempty"`
}

// Info is what a managing entity says about one delegated namespace at a nesting node.
type Info struct {
	Identities []Identity
	Features   []string
	Forms      [][]byte // raw XEP-0128 <x xmlns='jabber:x:data'/> extensions
}

type discoKey struct {
	entity, ns string
	bare       bool
}

type discoQuery struct {
	key  discoKey
	host string
}

// DiscoCache keeps the disco nesting answers per managing entity and namespace, and the
// queries in flight. Answers for one entity never touch another's.
type DiscoCache struct {
	mu      sync.RWMutex
	info    map[discoKey]Info
	queries map[string]discoQuery
}

// NewDiscoCache makes an empty cache.
func NewDiscoCache() *DiscoCache {
	return &DiscoCache{info: make(map[discoKey]Info), queries: make(map[string]discoQuery)}
}

// discoQueryTTL bounds how long an unanswered nesting query is remembered (an entity that
// never answers must not make the table grow with every reconnection).
const discoQueryTTL = time.Minute

// Query records a nesting query sent with this id.
func (c *DiscoCache) Query(id, host, entity, ns string, bare bool) {
	c.mu.Lock()
	c.queries[id] = discoQuery{key: discoKey{entity, ns, bare}, host: host}
	c.mu.Unlock()
	time.AfterFunc(discoQueryTTL, func() {
		c.mu.Lock()
		delete(c.queries, id)
		c.mu.Unlock()
	})
}

// Answer handles a reply to a nesting query; false if id is not one of them. An error
// reply or an unparsable one leaves nothing cached for that node.
func (c *DiscoCache) Answer(id, from string, env *xmpp.Envelope) bool {
	c.mu.Lock()
	q, ok := c.queries[id]
	if ok {
		delete(c.queries, id)
	}
	c.mu.Unlock()
	if !ok {
		return false
	}
	if from != q.key.entity {
		return true
	}
	info, ok := parseInfo(env)
	c.mu.Lock()
	if ok {
		c.info[q.key] = info
	} else {
		delete(c.info, q.key)
	}
	c.mu.Unlock()
	return true
}

// Get returns the cached answer of entity for ns (server node, or bare node).
func (c *DiscoCache) Get(entity, ns string, bare bool) (Info, bool) {
	c.mu.RLock()
	i, ok := c.info[discoKey{entity, ns, bare}]
	c.mu.RUnlock()
	return i, ok
}

// Forget drops what entity said about ns (its delegation was withdrawn or moved).
func (c *DiscoCache) Forget(entity, ns string) {
	c.mu.Lock()
	delete(c.info, discoKey{entity, ns, false})
	delete(c.info, discoKey{entity, ns, true})
	c.mu.Unlock()
}

func parseInfo(env *xmpp.Envelope) (Info, bool) {
	if env.Type != "result" {
		return Info{}, false
	}
	var v struct {
		Query *struct {
			Identities []Identity `xml:"identity"`
			Features   []struct {
				Var string `xml:"var,attr"`
			} `xml:"feature"`
		} `xml:"http://jabber.org/protocol/disco#info query"`
	}
	if err := xml.Unmarshal(env.Raw, &v); err != nil || v.Query == nil {
		return Info{}, false
	}
	var info Info
	info.Identities = v.Query.Identities
	for _, f := range v.Query.Features {
		if f.Var != "" {
			info.Features = append(info.Features, f.Var)
		}
	}
	info.Forms = rawForms(env)
	return info, true
}

// rawForms returns the raw bytes of the jabber:x:data children of the query.
func rawForms(env *xmpp.Envelope) [][]byte {
	content := env.Content()
	d := xml.NewDecoder(bytes.NewReader(content))
	var out [][]byte
	depth := 0
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			return out
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Space == "jabber:x:data" && t.Name.Local == "x" {
				if err := d.Skip(); err != nil {
					return out
				}
				raw := append([]byte(nil), content[off:d.InputOffset()]...)
				if !bytes.Contains(raw[:bytes.IndexByte(raw, '>')], []byte("xmlns")) {
					raw = append([]byte("<x xmlns='jabber:x:data'"), raw[2:]...)
				}
				// Read again with the declarations in scope, so that a form using a
				// prefix declared outside it carries the declaration along.
				if els, err := xmpp.Children(raw, "jabber:x:data", env.Attrs, env.ChildAttrs); err == nil && len(els) == 1 {
					out = append(out, els[0].Raw)
				}
				depth--
			}
		case xml.EndElement:
			depth--
		}
	}
}

// InfoBuilder assembles a disco#info answer.
type InfoBuilder struct {
	identities []Identity
	features   map[string]bool
	forms      [][]byte
}

// Identity adds an identity.
func (b *InfoBuilder) Identity(i Identity) { b.identities = append(b.identities, i) }

// Feature adds a feature.
func (b *InfoBuilder) Feature(f string) {
	if b.features == nil {
		b.features = make(map[string]bool)
	}
	b.features[f] = true
}

// Add merges a nested answer.
func (b *InfoBuilder) Add(i Info) {
	for _, id := range i.Identities {
		b.Identity(id)
	}
	for _, f := range i.Features {
		b.Feature(f)
	}
	b.forms = append(b.forms, i.Forms...)
}

// Query renders <query xmlns='disco#info' [node]>.
func (b *InfoBuilder) Query(node string) []byte {
	var out bytes.Buffer
	out.WriteString("<query xmlns='" + discoInfo + "'")
	if node != "" {
		out.WriteString(" node='")
		xmpp.EscapeAttr(&out, node)
		out.WriteString("'")
	}
	out.WriteString(">")
	seen := map[Identity]bool{}
	for _, i := range b.identities {
		if seen[i] {
			continue
		}
		seen[i] = true
		out.WriteString("<identity category='")
		xmpp.EscapeAttr(&out, i.Category)
		out.WriteString("' type='")
		xmpp.EscapeAttr(&out, i.Type)
		out.WriteString("'")
		if i.Name != "" {
			out.WriteString(" name='")
			xmpp.EscapeAttr(&out, i.Name)
			out.WriteString("'")
		}
		if i.Lang != "" {
			out.WriteString(" xml:lang='")
			xmpp.EscapeAttr(&out, i.Lang)
			out.WriteString("'")
		}
		out.WriteString("/>")
	}
	feats := make([]string, 0, len(b.features))
	for f := range b.features {
		feats = append(feats, f)
	}
	sort.Strings(feats)
	for _, f := range feats {
		out.WriteString("<feature var='")
		xmpp.EscapeAttr(&out, f)
		out.WriteString("'/>")
	}
	for _, f := range b.forms {
		out.Write(f)
	}
	out.WriteString("</query>")
	return out.Bytes()
}
