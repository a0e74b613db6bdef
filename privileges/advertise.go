package privileges

import (
	"bytes"
	"maps"
	"slices"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/xmpp"
)

// NS is XEP-0356 Privileged Entity (v0.4).
const NS = "urn:xmpp:privilege:2"

// Advertisement tells a component what it may do on behalf of a host's users
// (XEP-0356 §4.2, §5.2, §6.2, §7.2). With nothing granted it is nil, unless changed is
// set: after a change an empty <privilege/> tells the component its grants were withdrawn.
func Advertisement(host, comp string, p config.Privileges, changed bool) []byte {
	p = p.Normalized()
	if !p.Any() && !changed {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("<message from='" + xmpp.Escape(host) + "' to='" + xmpp.Escape(comp) + "' id='" + xmpp.NewID() +
		"'><privilege xmlns='" + NS + "'>")
	if p.Roster != "" {
		push := "false"
		if p.RosterPush() {
			push = "true"
		}
		b.WriteString("<perm access='roster' type='" + xmpp.Escape(p.Roster) + "' push='" + push + "'/>")
	}
	if p.MessageOutgoing() {
		b.WriteString("<perm access='message' type='outgoing'/>")
	}
	if len(p.IQ) > 0 {
		b.WriteString("<perm access='iq'>")
		for _, ns := range slices.Sorted(maps.Keys(p.IQ)) {
			b.WriteString("<namespace ns='" + xmpp.Escape(ns) + "' type='" + xmpp.Escape(p.IQ[ns]) + "'/>")
		}
		b.WriteString("</perm>")
	}
	if p.ReceivesPresence() {
		b.WriteString("<perm access='presence' type='" + xmpp.Escape(p.Presence) + "'/>")
	}
	b.WriteString("</privilege></message>")
	return b.Bytes()
}
