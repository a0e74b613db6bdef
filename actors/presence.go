package actors

import (
	"github.com/switchboard-im/switchboard/nodelink/pb"
)

// XEP-0356 §7: components with the presence privilege on a host get the initial and the
// unavailable presence of its users, as directed presence from the user's full JID, and a
// replay of every current presence when they connect.

// privilegedPresence sends a user's initial or unavailable presence (from = the full JID)
// to every component holding the presence privilege on the user's host.
func (r *Router) privilegedPresence(s *Session, presence []byte) {
	for _, c := range r.privilegedComponents() {
		if !r.privileges(s.Host, c).ReceivesPresence() {
			continue
		}
		if ref, ok := r.pickComponent(c, s.Bare); ok {
			ref.Send(r.link, readdress(presence, s.Full, c))
		}
	}
}

// replayPresence sends a component that just connected the current presence of the
// host's available users, from every node's owner tables.
func (r *Router) replayPresence(host string, s *Session) {
	r.ownerReplayPresence(host, s.Bare, localTarget(s))
	if r.cluster == nil {
		return
	}
	for _, m := range r.cluster.Members() {
		if m.ID != r.nodeID && m.State == "alive" {
			r.link.ToNode(m.ID, &pb.PresenceReplay{Host: host, Entity: s.Bare, Session: toRef(s.pid)})
		}
	}
}

// ownerReplayPresence sends the presence of every available resource of host's users
// that this node owns to a component.
func (r *Router) ownerReplayPresence(host, entity string, to target) {
	var out [][]byte
	r.owners.RangeHost(host, func(bare string, res resources) {
		for name, e := range res {
			if e.Available && e.Presence != nil {
				out = append(out, readdress(e.Presence, bare+"/"+name, entity))
			}
		}
	})
	for _, b := range out {
		to.Send(r.link, b)
	}
}
