package actors

import (
	"encoding/xml"

	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/xmpp"
)

// NSPrivilege is XEP-0356 Privileged Entity (v0.4).
const NSPrivilege = "urn:xmpp:privilege:2"

// privilegeAdvertisement tells a component what it may do on behalf of a host's users.
func privilegeAdvertisement(host, comp string, o ComponentOptions) []byte {
	if !o.MessagePrivilege {
		return nil
	}
	return []byte("<message from='" + xmpp.Escape(host) + "' to='" + xmpp.Escape(comp) + "' id='" + xmpp.NewID() +
		"'><privilege xmlns='" + NSPrivilege + "'><perm access='message' type='outgoing'/></privilege></message>")
}

// privilegedMessage handles <message to=HOST><privilege><forwarded><message from=USER/>:
// a component with the message privilege sends a message on behalf of one of the host's
// users (XEP-0356 §5). Anything else is forbidden.
func (r *Router) privilegedMessage(h *Host, sender *Session, from string, env *xmpp.Envelope) {
	forbid := func() { r.bounce(sender, env, h.Domain, from, xmpp.ErrForbidden) }
	if sender.Kind != KindComponent || !r.componentOpts(sender.Bare).MessagePrivilege {
		forbid()
		return
	}
	inner, err := delegation.UnwrapForwarded(env, xml.Name{Space: NSPrivilege, Local: "privilege"}, "message", false)
	if err != nil {
		r.bounce(sender, env, h.Domain, from, xmpp.ErrBadRequest)
		return
	}
	j, err := jid.Parse(inner.From)
	if err != nil || j.Domainpart() != h.Domain || j.Localpart() == "" || j.Resourcepart() != "" ||
		!r.accounts.Exists(h.Domain, j.Localpart()) {
		forbid() // the inner from must be the bare JID of one of this host's users
		return
	}
	r.Route(sender, j.String(), inner)
}
