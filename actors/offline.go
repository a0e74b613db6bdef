package actors

import (
	"bytes"
	"errors"
	"hash/maphash"
	"time"

	"github.com/switchboard-im/switchboard/offline"
	"github.com/switchboard-im/switchboard/xmpp"
)

// Offline messages (XEP-0160). A message of type normal or chat with a body, for an
// account that has no available resource, is stored by the user's owner node instead
// of bounced; the user's next session that sends initial presence with a non-negative
// priority gets the stored messages, oldest first, each with an XEP-0203 delay. Each
// user's writes keep the order the messages were routed in (one queue per shard of
// users), and a message stored just as the user came online is handed on at once.

// NSDelay is XEP-0203 delayed delivery.
const NSDelay = "urn:xmpp:delay"

// offlineWork serializes each user's offline writes: a user's always go to the same one
// of a few work queues.
type offlineWork struct {
	seed   maphash.Seed
	shards [16]workQueue
}

// offlineQueueMax bounds what waits in one shard's queue: past it, a message is bounced
// (resource-constraint) rather than queued.
const offlineQueueMax = 1024

// do queues f behind the user's earlier writes; false: the queue is full.
func (w *offlineWork) do(bare string, f func()) bool {
	return w.shards[maphash.String(w.seed, bare)%uint64(len(w.shards))].push(f, offlineQueueMax)
}

// storable: a message XEP-0160 keeps (normal or chat, with a body).
func storable(env *xmpp.Envelope) bool {
	return env.Kind == xmpp.KindMessage && (env.Type == "" || env.Type == "normal" || env.Type == "chat") &&
		bytes.Contains(env.Raw, []byte("<body"))
}

// storeOffline stores a message for one of this node's users who has no available
// resource; errors go back to sender. It reports whether it took the message.
func (u *users) storeOffline(bare string, data []byte, env *xmpp.Envelope, sender target) bool {
	st := u.r.offline
	if st == nil || !st.Enabled() || !storable(env) {
		return false
	}
	local, host, _ := cutAt(bare)
	if u.r.hosts[host] == nil || !u.r.accounts.Exists(host, local) {
		return false
	}
	from := env.From
	if u.r.blocked(bare, from) {
		return true // XEP-0191: dropped, not kept
	}
	bounce := func(e *xmpp.StanzaError) {
		if sender.IsLocal() || sender.PID != nil {
			sender.Send(u.r.link, xmpp.ErrorReply(env, bare, from, e))
		}
	}
	queued := u.offline.do(bare, func() {
		ctx, cancel := rosterCtx()
		defer cancel()
		err := st.Append(ctx, host, local, data, time.Now())
		switch {
		case errors.Is(err, offline.ErrFull):
			bounce(xmpp.ErrResourceConstraint)
			return
		case err != nil:
			u.r.log.Warn("offline message not stored", "to", bare, "err", err)
			bounce(xmpp.ErrServiceUnavailable)
			return
		}
		// The user may have come online while it was being stored.
		if u.hasAvailable(bare) {
			u.flushOffline(host, local)
		}
	})
	if !queued {
		bounce(xmpp.ErrResourceConstraint)
	}
	return true
}

// hasAvailable reports whether one of this node's users has an available resource
// with a non-negative priority.
func (u *users) hasAvailable(bare string) bool {
	found := false
	u.owners.Do(bare, func(entries resources) resources {
		for _, e := range entries {
			if e.Available && e.Priority >= 0 {
				found = true
			}
		}
		return entries
	})
	return found
}

// flushOffline routes a user's stored messages again (to whichever resources are
// available now; stored again if none is).
func (u *users) flushOffline(host, local string) {
	bare := local + "@" + host
	for _, data := range u.takeOffline(host, local) {
		env, err := xmpp.ParseStanza(data)
		if err != nil {
			continue
		}
		u.ownerStanza(bare, "", env.From, data, env, target{})
	}
}

// takeOffline takes a user's stored messages, oldest first, each with its delay; those
// from a JID the user blocked since they were stored are dropped (XEP-0191).
func (u *users) takeOffline(host, local string) [][]byte {
	ctx, cancel := rosterCtx()
	defer cancel()
	bare := local + "@" + host
	msgs, err := u.r.offline.Take(ctx, host, local)
	if err != nil {
		u.r.log.Warn("offline messages not read", "user", bare, "err", err)
		return nil
	}
	l := u.r.blocklists.Lookup(bare)
	out := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		if l != nil {
			if env, err := xmpp.ParseStanza(m.Stanza); err == nil && u.r.covers(l, env.From) {
				continue
			}
		}
		out = append(out, withDelay(m.Stanza, host, m.Stamp))
	}
	return out
}

// deliverOffline gives a session that just sent initial presence the messages stored
// for its user, oldest first (on the session's work queue: after its presence).
func (u *users) deliverOffline(s *Session) {
	if u.r.offline == nil || s.priority.Load() < 0 {
		return
	}
	s.later(func() {
		for _, data := range u.takeOffline(s.Host, s.Local) {
			s.Send(data)
		}
	})
}

// withDelay adds an XEP-0203 <delay/> (from the host, stamped when it was stored) as the
// last child of a stored message.
func withDelay(stanza []byte, host string, stamp time.Time) []byte {
	i := bytes.LastIndex(stanza, []byte("</"))
	if i < 0 {
		return stanza
	}
	var b bytes.Buffer
	b.Grow(len(stanza) + 96)
	b.Write(stanza[:i])
	b.WriteString("<delay xmlns='" + NSDelay + "' from='")
	xmpp.EscapeAttr(&b, host)
	b.WriteString("' stamp='" + stamp.UTC().Format("2006-01-02T15:04:05Z") + "'/>")
	b.Write(stanza[i:])
	return b.Bytes()
}
