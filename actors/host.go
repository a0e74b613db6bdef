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
	h.router.sys.Root.Send(h.pid, &serverIQ{sender: sender, from: from, env: env})
}

func (h *Host) serveIQ(sender *Session, from, target string, env *xmpp.Envelope) {
	h.router.sys.Root.Send(h.pid, &serverIQ{sender: sender, from: from, target: target, env: env})
}

// Receive implements actor.Actor.
func (h *Host) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(*serverIQ); ok {
		h.answer(m)
	}
}

func (h *Host) answer(m *serverIQ) {
	env := m.env
	replyFrom := m.target
	if replyFrom == "" {
		replyFrom = h.Domain
	}
	fail := func(e *xmpp.StanzaError) { m.sender.Send(xmpp.ErrorReply(env, replyFrom, m.from, e)) }
	ok := func(payload []byte) { m.sender.Send(xmpp.IQResult(env.ID, replyFrom, m.from, payload)) }

	switch env.Type {
	case "result", "error":
		return
	case "get", "set":
	default:
		fail(xmpp.ErrBadRequest)
		return
	}
	if !env.HasChild || env.ID == "" {
		fail(xmpp.ErrBadRequest)
		return
	}
	get := env.Type == "get"
	ns := env.Child.Space
	if m.target == "" {
		switch {
		case get && ns == NSDiscoInfo && env.Child.Local == "query":
			if node, _ := env.ChildAttr("node"); node != "" {
				fail(xmpp.ErrItemNotFound)
				return
			}
			ok(h.serverInfo())
		case get && ns == NSDiscoItems && env.Child.Local == "query":
			if node, _ := env.ChildAttr("node"); node != "" {
				fail(xmpp.ErrItemNotFound)
				return
			}
			ok(h.serverItems())
		case get && ns == NSPing && env.Child.Local == "ping":
			ok(nil)
		case get && ns == NSVersion && env.Child.Local == "query":
			var b bytes.Buffer
			b.WriteString("<query xmlns='" + NSVersion + "'><name>Switchboard</name><version>")
			_ = xml.EscapeText(&b, []byte(h.router.version))
			b.WriteString("</version></query>")
			ok(b.Bytes())
		case !get && ns == xmpp.NSSession && env.Child.Local == "session":
			ok(nil)
		default:
			fail(xmpp.ErrServiceUnavailable)
		}
		return
	}

	// On behalf of a user's bare JID.
	own := m.sender.Kind == KindC2S && m.sender.Bare == m.target
	local, _, _ := cutAt(m.target)
	exists := h.router.accounts.Exists(h.Domain, local)
	switch {
	case own && !get && ns == xmpp.NSSession && env.Child.Local == "session":
		ok(nil) // RFC 3921 session establishment, a no-op kept for old clients
	case ns == NSRoster && env.Child.Local == "query":
		switch {
		case own:
		case m.sender.Kind == KindComponent && h.router.privileges(h.Domain, m.sender.Bare).RosterAllows(env.Type):
			if !exists {
				fail(xmpp.ErrServiceUnavailable)
				return
			}
		default:
			// Only the user, or an entity privileged for it, reads or changes a roster
			// (RFC 6121 §2.1.5, XEP-0356 §4.3).
			fail(xmpp.ErrForbidden)
			return
		}
		if h.router.rosters == nil {
			if get {
				ok([]byte("<query xmlns='" + NSRoster + "'/>")) // no roster storage: an empty roster
			} else {
				fail(xmpp.ErrServiceUnavailable)
			}
			return
		}
		go h.rosterIQ(m, m.target)
	case get && exists && ns == NSDiscoInfo && env.Child.Local == "query":
		if node, _ := env.ChildAttr("node"); node != "" {
			fail(xmpp.ErrItemNotFound)
			return
		}
		ok(h.bareInfo())
	case get && exists && ns == NSDiscoItems && env.Child.Local == "query":
		ok([]byte("<query xmlns='" + NSDiscoItems + "'/>"))
	default:
		fail(xmpp.ErrServiceUnavailable)
	}
}

func cutAt(bare string) (local, domain string, ok bool) {
	for i := 0; i < len(bare); i++ {
		if bare[i] == '@' {
			return bare[:i], bare[i+1:], true
		}
	}
	return "", bare, false
}

// serverFeatures are what this node really answers (see answer above).
var serverFeatures = []string{NSDiscoInfo, NSDiscoItems, NSPing, NSVersion}

// serverInfo is the domain's disco#info: its own identity and features, except those of
// delegated namespaces, which the managing entities' nested answers replace (XEP-0355 §7.2).
func (h *Host) serverInfo() []byte {
	var b delegation.InfoBuilder
	b.Identity(delegation.Identity{Category: "server", Type: "im", Name: "Switchboard"})
	h.nest(&b, serverFeatures, false)
	if h.router.deleg != nil {
		b.Feature(delegation.NS2)
	}
	return b.Query("")
}

// bareInfo is the disco#info of a user's bare JID.
func (h *Host) bareInfo() []byte {
	var b delegation.InfoBuilder
	b.Identity(delegation.Identity{Category: "account", Type: "registered"})
	h.nest(&b, []string{NSDiscoInfo}, true)
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
