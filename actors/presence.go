package actors

import (
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/nodelink/pb"
)

// XEP-0356 §7: components with the presence privilege on a host get the initial and the
// unavailable presence of its users, as directed presence from the user's full JID, and a
// replay of every current presence when they connect.

// privilegedPresence sends a user's initial or unavailable presence (from = the full JID)
// to every component holding the presence privilege on the user's host.
func (pv *privileged) privilegedPresence(s *Session, presence []byte) {
	for _, c := range pv.privilegedComponents() {
		if !pv.privileges(s.Host, c).ReceivesPresence() {
			continue
		}
		if ref, ok := pv.r.comps.pickComponent(c, s.Bare); ok {
			ref.Send(pv.r.link, readdress(presence, s.Full, c))
		}
	}
}

// replayPresence sends a component that just connected the current presence of the
// host's available users, from every node's owner tables.
func (pv *privileged) replayPresence(host string, s *Session) {
	pv.r.users.ownerReplayPresence(host, s.Bare, localTarget(s))
	if pv.r.cluster == nil {
		return
	}
	for _, m := range pv.r.cluster.Members() {
		if m.ID != pv.r.nodeID && m.State == "alive" {
			pv.r.link.ToNode(m.ID, &pb.PresenceReplay{Host: host, Entity: s.Bare, Session: toRef(s.pid)})
		}
	}
}

// rosterPresence gives a user's presence to the components with the presence privilege
// of type roster on the hosts of the contacts that received it (XEP-0356 §7.3), once per
// component, unless the component already got it as a managed entity's presence (an
// initial or unavailable one: managedSent).
func (pv *privileged) rosterPresence(s *Session, presence []byte, managedSent bool, hosts map[string]bool) {
	if len(hosts) == 0 {
		return
	}
	for _, c := range pv.privilegedComponents() {
		if managedSent && pv.privileges(s.Host, c).ReceivesPresence() {
			continue // privilegedPresence sent it already
		}
		for host := range hosts {
			if pv.privileges(host, c).Presence == config.PresenceRoster {
				if ref, ok := pv.r.comps.pickComponent(c, s.Bare); ok {
					ref.Send(pv.r.link, readdress(presence, s.Full, c))
				}
				break
			}
		}
	}
}
