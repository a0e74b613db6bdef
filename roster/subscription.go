package roster

import (
	"cmp"
	"slices"
)

// Presence subscriptions (RFC 6121 §3): how each subscription stanza changes the roster
// of the user who sends it (Out*) and of the user who receives it (In*). Every function
// returns whether the roster changed (then it must be stored and the item pushed), the
// item to push, and whether the stanza goes on (routed to the contact, or delivered to the
// user's resources). Only the server changes subscription states, never a roster set.

// Kinds of subscription stanza (presence types).
const (
	Subscribe    = "subscribe"
	Subscribed   = "subscribed"
	Unsubscribe  = "unsubscribe"
	Unsubscribed = "unsubscribed"
)

// IsSubscription reports whether a presence type is a subscription stanza.
func IsSubscription(typ string) bool {
	return typ == Subscribe || typ == Subscribed || typ == Unsubscribe || typ == Unsubscribed
}

func hasTo(sub string) bool   { return sub == SubTo || sub == SubBoth }
func hasFrom(sub string) bool { return sub == SubFrom || sub == SubBoth }

func compose(to, from bool) string {
	switch {
	case to && from:
		return SubBoth
	case to:
		return SubTo
	case from:
		return SubFrom
	}
	return SubNone
}

// item returns a pointer to jid's item, creating it (subscription none) if create is set.
func (r *Roster) item(jid string, create bool) *Item {
	if i := r.Find(jid); i >= 0 {
		if r.Items[i].Subscription == "" {
			r.Items[i].Subscription = SubNone
		}
		return &r.Items[i]
	}
	if !create {
		return nil
	}
	r.Items = append(r.Items, Item{JID: jid, Subscription: SubNone})
	return &r.Items[len(r.Items)-1]
}

// Subscription is the subscription state of jid's item ("" if there is none).
func (r *Roster) Subscription(jid string) string {
	if i := r.Find(jid); i >= 0 {
		return cmp.Or(r.Items[i].Subscription, SubNone)
	}
	return ""
}

// Sees reports whether the user lets jid see its presence (subscription from or both).
func (r *Roster) Sees(jid string) bool { return hasFrom(r.Subscription(jid)) }

// HasPending reports whether jid asked to subscribe to this user and got no answer yet.
func (r *Roster) HasPending(jid string) bool { return slices.Contains(r.PendingIn, jid) }

func (r *Roster) dropPending(jid string) bool {
	if i := slices.Index(r.PendingIn, jid); i >= 0 {
		r.PendingIn = slices.Delete(r.PendingIn, i, i+1)
		return true
	}
	return false
}

// Outbound applies a subscription stanza the user sends to contact (§3.1.2, §3.1.5,
// §3.2.2, §3.3.2). route: send it on to the contact.
func Outbound(r *Roster, typ, contact string) (changed bool, it Item, route bool) {
	switch typ {
	case Subscribe:
		x := r.item(contact, true)
		if hasTo(x.Subscription) {
			return false, *x, true // already subscribed: the contact's server answers again
		}
		if !x.Ask {
			x.Ask = true
			return true, *x, true
		}
		return false, *x, true
	case Subscribed:
		// Approval of a pending request (pre-approval, §3.4, is not offered).
		if !r.dropPending(contact) {
			if x := r.item(contact, false); x != nil && hasFrom(x.Subscription) {
				return false, *x, false
			}
			return false, Item{}, false
		}
		x := r.item(contact, true)
		x.Subscription = compose(hasTo(x.Subscription), true)
		return true, *x, true
	case Unsubscribe:
		x := r.item(contact, false)
		if x == nil {
			return false, Item{}, true
		}
		if !hasTo(x.Subscription) && !x.Ask {
			return false, *x, true
		}
		x.Subscription, x.Ask = compose(false, hasFrom(x.Subscription)), false
		return true, *x, true
	case Unsubscribed:
		dropped := r.dropPending(contact)
		x := r.item(contact, false)
		if x == nil || !hasFrom(x.Subscription) {
			if x == nil {
				return dropped, Item{}, dropped
			}
			return dropped, *x, dropped
		}
		x.Subscription = compose(hasTo(x.Subscription), false)
		return true, *x, true
	}
	return false, Item{}, false
}

// Inbound applies a subscription stanza the user receives from contact (§3.1.3, §3.1.6,
// §3.2.3, §3.3.3). deliver: give it to the user's available resources. approve: the user
// already lets the contact see its presence, so the server answers subscribed itself.
// A request nobody answers yet is remembered (PendingIn) and delivered again at the
// user's next initial presence.
func Inbound(r *Roster, typ, contact string) (changed bool, it Item, deliver, approve bool) {
	switch typ {
	case Subscribe:
		if x := r.item(contact, false); x != nil && hasFrom(x.Subscription) {
			return false, *x, false, true
		}
		if r.HasPending(contact) {
			return false, Item{}, true, false
		}
		r.PendingIn = append(r.PendingIn, contact)
		return true, Item{}, true, false
	case Subscribed:
		x := r.item(contact, false)
		if x == nil || !x.Ask {
			return false, Item{}, false, false // nothing asked: ignored (§3.1.6)
		}
		x.Subscription, x.Ask = compose(true, hasFrom(x.Subscription)), false
		return true, *x, true, false
	case Unsubscribe:
		dropped := r.dropPending(contact)
		x := r.item(contact, false)
		if x == nil || !hasFrom(x.Subscription) {
			return dropped, Item{}, dropped, false
		}
		x.Subscription = compose(hasTo(x.Subscription), false)
		return true, *x, true, false
	case Unsubscribed:
		x := r.item(contact, false)
		if x == nil || (!hasTo(x.Subscription) && !x.Ask) {
			return false, Item{}, false, false
		}
		x.Subscription, x.Ask = compose(false, hasFrom(x.Subscription)), false
		return true, *x, true, false
	}
	return false, Item{}, false, false
}
