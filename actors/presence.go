package actors

import (
	"strings"

	"github.com/switchboard-im/switchboard/actors/pb"
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
			ref.send(r, readdress(presence, s.Full, c))
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
			r.sendToNode(m.ID, &pb.PresenceReplay{Host: host, Entity: s.Bare, Session: toRef(s.pid)})
		}
	}
}

// ownerReplayPresence sends the presence of every available resource of host's users
// that this node owns to a component.
func (r *Router) ownerReplayPresence(host, entity string, to target) {
	suffix := "@" + host
	var out [][]byte
	for i := range r.owned {
		sh := &r.owned[i]
		sh.mu.Lock()
		for bare, res := range sh.users {
			if len(bare) <= len(suffix) || !strings.HasSuffix(bare, suffix) {
				continue
			}
			for name, e := range res {
				if e.available && e.presence != nil {
					out = append(out, readdress(e.presence, bare+"/"+name, entity))
				}
			}
		}
		sh.mu.Unlock()
	}
	for _, b := range out {
		to.send(r, b)
	}
}
