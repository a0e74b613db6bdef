// Package delegation implements XEP-0355 Namespace Delegation (admin mode): the rules
// (static from the config, dynamic from etcd), matching, wrapping and unwrapping of
// forwarded IQs, the pending-IQ tracker, disco nesting and metrics. It knows nothing about
// sockets or the cluster: the router asks it what to do and carries the bytes.
package delegation

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Namespaces.
const (
	NS2        = "urn:xmpp:delegation:2"
	NS1        = "urn:xmpp:delegation:1" // ejabberd's, spoken per component on request
	NSForward  = "urn:xmpp:forward:0"
	discoInfo  = "http://jabber.org/protocol/disco#info"
	discoItems = "http://jabber.org/protocol/disco#items"
)

// Pseudo-namespaces (XEP-0355 §7.3): delegate what the server does not answer itself of
// disco#info / disco#items requests to users' bare JIDs.
var (
	BareDiscoInfoRemaining  = NS2 + ":bare:disco#info:*"
	BareDiscoItemsRemaining = NS2 + ":bare:disco#items:*"
)

// Sources of a rule.
const (
	SourceConfig = "config"
	SourceEtcd   = "etcd"
)

// Rule delegates one namespace of one host to a managing entity.
type Rule struct {
	Namespace string   `json:"-"`
	JID       string   `json:"jid"`
	Filtering []string `json:"filtering,omitempty"`
	Source    string   `json:"-"`
}

// ErrForbiddenNamespace is returned for attempts to delegate delegation itself.
var ErrForbiddenNamespace = errors.New("the delegation namespace itself cannot be delegated")

// Validate checks a rule before it is stored or applied.
func Validate(ns string, r Rule) error {
	if ns == "" {
		return errors.New("empty namespace")
	}
	// Namespaces and JIDs go into XML the components parse (the advertisement, disco
	// nesting): they must be text XML allows, or the component's stream breaks.
	if !xmlText(ns) {
		return fmt.Errorf("namespace %q: not valid UTF-8 text for XML (control characters?)", ns)
	}
	if !xmlText(r.JID) {
		return fmt.Errorf("%s: jid %q: not valid UTF-8 text for XML", ns, r.JID)
	}
	if ns == NS2 || ns == NS1 || (strings.HasPrefix(ns, NS2+":") && ns != BareDiscoInfoRemaining && ns != BareDiscoItemsRemaining) {
		return fmt.Errorf("%s: %w", ns, ErrForbiddenNamespace)
	}
	if r.JID == "" {
		return fmt.Errorf("%s: empty jid", ns)
	}
	if strings.Contains(r.JID, "/") {
		return fmt.Errorf("%s: jid %q must be a bare JID", ns, r.JID)
	}
	for _, a := range r.Filtering {
		if a == "" || strings.ContainsAny(a, " \t\n<>&'\"") {
			return fmt.Errorf("%s: bad filtering attribute %q", ns, a)
		}
	}
	return nil
}

// xmlText reports whether s is valid UTF-8 made of characters XML 1.0 allows (§2.2: no
// control characters but tab, newline and carriage return), none of those either here.
func xmlText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0xFFFE || r == 0xFFFF || (r >= 0xD800 && r <= 0xDFFF) {
			return false
		}
	}
	return true
}

// Table is the immutable set of effective rules of one host (config overlaid by etcd).
type Table struct {
	Host  string
	rules map[string]Rule
}

// NewTable builds a table; later sources win per namespace.
func NewTable(host string, layers ...map[string]Rule) *Table {
	t := &Table{Host: host, rules: make(map[string]Rule)}
	for _, l := range layers {
		for ns, r := range l {
			r.Namespace = ns
			t.rules[ns] = r
		}
	}
	return t
}

// Lookup returns the rule for a namespace.
func (t *Table) Lookup(ns string) (Rule, bool) {
	if t == nil {
		return Rule{}, false
	}
	r, ok := t.rules[ns]
	return r, ok
}

// Match reports whether an IQ whose first child is in ns, with attrs present, is delegated:
// every filtering attribute must be present (XEP-0355 §4.2).
func (t *Table) Match(ns string, has func(attr string) bool) (Rule, bool) {
	r, ok := t.Lookup(ns)
	if !ok {
		return Rule{}, false
	}
	for _, a := range r.Filtering {
		if !has(a) {
			return Rule{}, false
		}
	}
	return r, true
}

// All returns the rules sorted by namespace.
func (t *Table) All() []Rule {
	if t == nil {
		return nil
	}
	out := make([]Rule, 0, len(t.rules))
	for _, r := range t.rules {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace < out[j].Namespace })
	return out
}

// For returns the rules whose managing entity is jid, sorted by namespace.
func (t *Table) For(jid string) []Rule {
	var out []Rule
	for _, r := range t.All() {
		if r.JID == jid {
			out = append(out, r)
		}
	}
	return out
}

// Delegated reports whether a feature var falls under a delegated namespace (the server
// then hides its own feature, as XEP-0355 §7.2 asks for disco nesting).
func (t *Table) Delegated(feature string) bool {
	if t == nil {
		return false
	}
	for ns := range t.rules {
		if strings.HasPrefix(feature, ns) {
			return true
		}
	}
	return false
}

// Affected lists the managing entities whose set of delegations differs between two tables.
func Affected(old, new *Table) []string {
	seen := map[string]bool{}
	add := func(j string) { seen[j] = true }
	for ns, r := range old.rulesOrNil() {
		if n, ok := new.Lookup(ns); !ok || !sameRule(n, r) {
			add(r.JID)
			if ok {
				add(n.JID)
			}
		}
	}
	for ns, n := range new.rulesOrNil() {
		if _, ok := old.Lookup(ns); !ok {
			add(n.JID)
		}
	}
	out := make([]string, 0, len(seen))
	for j := range seen {
		out = append(out, j)
	}
	sort.Strings(out)
	return out
}

func (t *Table) rulesOrNil() map[string]Rule {
	if t == nil {
		return nil
	}
	return t.rules
}

func sameRule(a, b Rule) bool {
	if a.JID != b.JID || len(a.Filtering) != len(b.Filtering) {
		return false
	}
	for i := range a.Filtering {
		if a.Filtering[i] != b.Filtering[i] {
			return false
		}
	}
	return true
}
