package actors

import (
	"bytes"

	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/xmpp"
)

// XEP-0280 message carbons (v2). A resource that enabled carbons gets a copy of every
// eligible message one of the user's other resources sends ("sent") or receives
// ("received"), whichever nodes they are on: the user's owner node, which knows every
// resource and which ones enabled carbons (pb.UserRegister), makes the copies.

// NSCarbons is XEP-0280's namespace.
const NSCarbons = "urn:xmpp:carbons:2"

// carbonEligible: a chat message, or a normal one with a body, that is not marked
// private or no-copy and is not itself a carbon (XEP-0280 §6).
func carbonEligible(env *xmpp.Envelope) bool {
	if env.Kind != xmpp.KindMessage {
		return false
	}
	raw := env.Raw
	switch env.Type {
	case "chat":
	case "", "normal":
		if !bytes.Contains(raw, []byte("<body")) {
			return false
		}
	default:
		return false
	}
	return !bytes.Contains(raw, []byte(NSCarbons)) && !bytes.Contains(raw, []byte("<no-copy"))
}

// carbonsIQ enables or disables carbons for the asking session (an IQ set with
// <enable/> or <disable/>, to the server or the user's bare JID), and tells its owner.
func (c *iqCall) carbons() {
	s := c.m.sender
	if s.Kind != KindC2S || s.Host != c.h.Domain || (c.from != c.h.Domain && !c.own) {
		c.fail(xmpp.ErrForbidden) // only for oneself, to the server or one's own bare JID
		return
	}
	var on bool
	switch c.m.env.Child.Local {
	case "enable":
		on = true
	case "disable":
	default:
		c.fail(xmpp.ErrBadRequest)
		return
	}
	if s.carbons.Swap(on) != on {
		c.h.router.users.register(s, false)
	}
	c.ok(nil)
}

// carbon wraps a forwarded message for one of the user's resources.
func carbon(kind, bare, full string, inner []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(inner) + len(bare) + len(full) + 160)
	b.WriteString("<message xmlns='jabber:client' type='chat'")
	xmpp.WriteAddrs(&b, bare, full)
	b.WriteString("><" + kind + " xmlns='" + NSCarbons + "'><forwarded xmlns='urn:xmpp:forward:0'>")
	b.Write(inner)
	b.WriteString("</forwarded></" + kind + "></message>")
	return b.Bytes()
}

// sentCarbons has the user's owner copy a message a client session sent to the user's
// other resources with carbons.
func (u *users) sentCarbons(s *Session, from string, env *xmpp.Envelope) {
	if s.userCarbons.Load() && carbonEligible(env) {
		u.carbons(s.Bare, s.Res, false, env.RewriteNS(from, env.To, xmpp.NSClient))
	}
}

// receivedCarbons has the user's owner copy a message delivered straight to one of the
// user's resources (res) to the others with carbons.
func (u *users) receivedCarbons(bare, res, from string, env *xmpp.Envelope) {
	if carbonEligible(env) {
		u.carbons(bare, res, true, env.RewriteNS(from, env.To, xmpp.NSClient))
	}
}

// carbons sends copies of inner, through the user's owner, to the user's resources
// with carbons other than res.
func (u *users) carbons(bare, res string, received bool, inner []byte) {
	if node, self := u.owner(bare); !self {
		u.r.link.ToNode(node, &pb.UserCarbon{Bare: bare, Resource: res, Stanza: inner, Received: received})
		return
	}
	u.ownerCarbonsExcept(bare, res, received, inner)
}

// ownerCarbonsExcept is carbons on the user's owner: copies to every resource with
// carbons but res.
func (u *users) ownerCarbonsExcept(bare, res string, received bool, inner []byte) {
	kind := "sent"
	if received {
		kind = "received"
	}
	u.ownerCarbons(bare, kind, inner, func(r string, _ *resEntry) bool { return r == res })
}

// ownerCarbons sends a carbon of inner to every available resource of one of this node's
// users that enabled carbons, except those skip names.
func (u *users) ownerCarbons(bare, kind string, inner []byte, skip func(res string, e *resEntry) bool) {
	var to []namedEntry
	u.owners.Do(bare, func(entries resources) resources {
		for res, e := range entries {
			if e.Available && e.Carbons && !skip(res, e) {
				to = append(to, namedEntry{Res: res, Entry: e})
			}
		}
		return entries
	})
	for _, o := range to {
		o.Send(u.r.link, carbon(kind, bare, o.Full(bare), inner))
	}
}

// anyCarbons reports whether one of a user's resources enabled carbons.
func anyCarbons(res resources) bool {
	for _, e := range res {
		if e.Carbons {
			return true
		}
	}
	return false
}

// tellCarbons tells sessions whether their user wants carbons (pb.CarbonsWanted).
func (u *users) tellCarbons(to []*resEntry, any bool) {
	for _, e := range to {
		if e.Local != nil {
			e.Local.userCarbons.Store(any)
		} else if e.PID != nil {
			u.r.link.Send(e.PID, &pb.CarbonsWanted{Any: any})
		}
	}
}
