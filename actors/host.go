package actors

import (
	"bytes"
	"encoding/xml"
	"sort"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Namespaces of what the server answers itself.
const (
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	NSPing       = "urn:xmpp:ping"
	NSVersion    = "jabber:iq:version"
	NSRoster     = "jabber:iq:roster"
)

// Host is the actor of one served domain: it answers the IQs the server handles itself,
// for the domain and on behalf of its users' bare JIDs.
type Host struct {
	Domain string
	router *Router
	pid    *actor.PID
}

// serverIQ is an IQ the host answers. target is "" for the domain itself, or a user's bare JID.
type serverIQ struct {
	sender *Session
	from   string
	target string
	env    *xmpp.Envelope
}

func (h *Host) toServer(sender *Session, from string, env *xmpp.Envelope) {
	if env.Kind != xmpp.KindIQ {
		return // messages and presence to the bare domain: nothing handles them yet
	}
	h.serveIQ(sender, from, "", env)
}

// serveIQ queues an IQ for the host actor; it is the sender's work until answered.
func (h *Host) serveIQ(sender *Session, from, target string, env *xmpp.Envelope) {
	sender.startWork()
	h.router.sys.Root.Send(h.pid, &serverIQ{sender: sender, from: from, target: target, env: env})
}

// Receive implements actor.Actor.
func (h *Host) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(*serverIQ); ok {
		if !h.answer(m) {
			m.sender.endWork()
		}
	}
}

// iqHandler answers one kind of IQ the server handles itself: IQs in its namespace whose
// first child is elem, of the types it takes. Feature says whether disco#info
// advertises the namespace.
type iqHandler struct {
	elem     string
	get, set bool
	feature  bool
	serve    func(c *iqCall)
}

// iqCall is one server IQ being answered.
type iqCall struct {
	h      *Host
	m      *serverIQ
	from   string // the answer's 'from': the domain or the user's bare JID
	own    bool   // a user's session asking about its own bare JID
	exists bool   // the bare JID is an account (for IQs to a user's bare JID)
	goesOn bool   // the answer comes later (the handler started a goroutine)
}

func (c *iqCall) ok(payload []byte) {
	c.m.sender.Send(xmpp.IQResult(c.m.env.ID, c.from, c.m.from, payload))
}

func (c *iqCall) fail(e *xmpp.StanzaError) {
	c.m.sender.Send(xmpp.ErrorReply(c.m.env, c.from, c.m.from, e))
}

// domainIQs are what the served domain answers (the server itself), by namespace.
var domainIQs = map[string]iqHandler{
	NSDiscoInfo: {elem: "query", get: true, feature: true, serve: func(c *iqCall) {
		if noNode(c) {
			c.ok(c.h.serverInfo())
		}
	}},
	NSDiscoItems: {elem: "query", get: true, feature: true, serve: func(c *iqCall) {
		if noNode(c) {
			c.ok(c.h.serverItems())
		}
	}},
	NSPing: {elem: "ping", get: true, feature: true, serve: func(c *iqCall) { c.ok(nil) }},
	NSVersion: {elem: "query", get: true, feature: true, serve: func(c *iqCall) {
		var b bytes.Buffer
		b.WriteString("<query xmlns='" + NSVersion + "'><name>Switchboard</name><version>")
		_ = xml.EscapeText(&b, []byte(c.h.router.version))
		b.WriteString("</version></query>")
		c.ok(b.Bytes())
	}},
	// RFC 3921 session establishment, a no-op kept for old clients.
	xmpp.NSSession: {elem: "session", set: true, serve: func(c *iqCall) { c.ok(nil) }},
	NSCarbons:      {elem: "*", set: true, feature: true, serve: (*iqCall).carbons}, // enable, disable
	// XEP-0191: the user's own blocklist (blocklist, block, unblock)
	NSBlocking: {elem: "*", get: true, set: true, feature: true, serve: (*iqCall).blocklist},
}

// bareIQs are what a user's bare JID answers on the user's behalf, by namespace.
var bareIQs = map[string]iqHandler{
	xmpp.NSSession: {elem: "session", set: true, serve: func(c *iqCall) {
		if !c.own {
			c.fail(xmpp.ErrServiceUnavailable)
			return
		}
		c.ok(nil)
	}},
	NSRoster:  {elem: "query", get: true, set: true, serve: (*iqCall).roster},
	NSCarbons: {elem: "*", set: true, serve: (*iqCall).carbons}, // enable or disable
	// XEP-0191 (an IQ without 'to' comes here): blocklist, block, unblock
	NSBlocking: {elem: "*", get: true, set: true, serve: (*iqCall).blocklist},
	NSDiscoInfo: {elem: "query", get: true, feature: true, serve: func(c *iqCall) {
		if !c.exists {
			c.fail(xmpp.ErrServiceUnavailable)
		} else if noNode(c) {
			c.ok(c.h.bareInfo())
		}
	}},
	NSDiscoItems: {elem: "query", get: true, serve: func(c *iqCall) {
		if !c.exists {
			c.fail(xmpp.ErrServiceUnavailable)
			return
		}
		c.ok([]byte("<query xmlns='" + NSDiscoItems + "'/>"))
	}},
}

// features lists the namespaces of handlers that disco#info advertises.
func features(handlers map[string]iqHandler) []string {
	var out []string
	for ns, hd := range handlers {
		if hd.feature {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

// Features the domain and a bare JID advertise: what the handlers above really answer.
// (Set in init: the handlers' own disco#info answers read them.)
var serverFeatures, bareFeatures []string

func init() { serverFeatures, bareFeatures = features(domainIQs), features(bareIQs) }

// noNode answers item-not-found to a disco query for a node (the server has none) and
// reports whether the query had none.
func noNode(c *iqCall) bool {
	if node, _ := c.m.env.ChildAttr("node"); node != "" {
		c.fail(xmpp.ErrItemNotFound)
		return false
	}
	return true
}

// answer answers a server IQ by its namespace's handler; anything no handler takes is
// service-unavailable.
func (h *Host) answer(m *serverIQ) (goesOn bool) {
	env := m.env
	c := &iqCall{h: h, m: m, from: m.target}
	if c.from == "" {
		c.from = h.Domain
	}
	switch env.Type {
	case "result", "error":
		return false
	case "get", "set":
	default:
		c.fail(xmpp.ErrBadRequest)
		return false
	}
	if !env.HasChild || env.ID == "" {
		c.fail(xmpp.ErrBadRequest)
		return false
	}
	handlers := domainIQs
	if m.target != "" {
		handlers = bareIQs
		c.own = m.sender.Kind == KindC2S && m.sender.Bare == m.target
		local, _, _ := cutAt(m.target)
		c.exists = h.router.accounts.Exists(h.Domain, local)
	}
	hd, ok := handlers[env.Child.Space]
	if !ok || (hd.elem != "*" && hd.elem != env.Child.Local) || (env.Type == "get" && !hd.get) || (env.Type == "set" && !hd.set) {
		c.fail(xmpp.ErrServiceUnavailable)
		return false
	}
	hd.serve(c)
	return c.goesOn
}

// roster answers a roster get or set on a user's roster, by the user or by a component
// privileged for it (RFC 6121 §2.1.5, XEP-0356 §4.3); anyone else is forbidden.
func (c *iqCall) roster() {
	h, m, env := c.h, c.m, c.m.env
	switch {
	case c.own:
	case m.sender.Kind == KindComponent && h.router.priv.privileges(h.Domain, m.sender.Bare).RosterAllows(env.Type):
		if !c.exists {
			c.fail(xmpp.ErrServiceUnavailable)
			return
		}
	default:
		c.fail(xmpp.ErrForbidden)
		return
	}
	if h.router.rosters == nil {
		if env.Type == "get" {
			c.ok([]byte("<query xmlns='" + NSRoster + "'/>")) // no roster storage: an empty roster
		} else {
			c.fail(xmpp.ErrServiceUnavailable)
		}
		return
	}
	c.goesOn = true
	go func() {
		defer m.sender.endWork()
		h.rosterIQ(m, m.target)
	}()
}

func cutAt(bare string) (local, domain string, ok bool) {
	for i := 0; i < len(bare); i++ {
		if bare[i] == '@' {
			return bare[:i], bare[i+1:], true
		}
	}
	return "", bare, false
}

// serverInfo is the domain's disco#info: its own identity and features, except those of
// delegated namespaces, which the managing entities' nested answers replace (XEP-0355 §7.2).
func (h *Host) serverInfo() []byte {
	var b delegation.InfoBuilder
	b.Identity(delegation.Identity{Category: "server", Type: "im", Name: "Switchboard"})
	h.nest(&b, serverFeatures, false)
	if h.router.deleg != nil {
		b.Feature(delegation.NS2)
	}
	if st := h.router.offline; st != nil && st.Enabled() {
		b.Feature("msgoffline") // XEP-0160 §4
	}
	return b.Query("")
}

// bareInfo is the disco#info of a user's bare JID.
func (h *Host) bareInfo() []byte {
	var b delegation.InfoBuilder
	b.Identity(delegation.Identity{Category: "account", Type: "registered"})
	h.nest(&b, bareFeatures, true)
	return b.Query("")
}

func (h *Host) nest(b *delegation.InfoBuilder, own []string, bare bool) {
	var tbl *delegation.Table
	if h.router.deleg != nil {
		tbl = h.router.deleg.Rules.Table(h.Domain)
	}
	for _, f := range own {
		if !tbl.Delegated(f) {
			b.Feature(f)
		}
	}
	for _, rule := range tbl.All() {
		if info, ok := h.router.deleg.Disco.Get(rule.JID, rule.Namespace, bare); ok {
			b.Add(info)
		}
	}
}

func (h *Host) serverItems() []byte {
	var b bytes.Buffer
	b.WriteString("<query xmlns='" + NSDiscoItems + "'>")
	names := append([]string(nil), h.router.settings.Load().compNames...)
	sort.Strings(names)
	for _, c := range names {
		b.WriteString("<item jid='" + xmpp.Escape(c) + "'/>")
	}
	b.WriteString("</query>")
	return b.Bytes()
}
