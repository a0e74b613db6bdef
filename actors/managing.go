package actors

import (
	"strings"

	"github.com/switchboard-im/switchboard/delegation"
)

// A delegation rule's managing entity may be a local account instead of a component
// (as Prosody's mod_delegation allows). Each available resource of such an account is a
// connection of the managing entity, entered in the same cluster-wide directory as
// component sessions (with its full JID): it gets the advertisement when it sends initial
// presence, delegated IQs are addressed to it and balanced over the resources like
// component connections, and when it goes offline the IQs it holds fail.

func isAccount(entity string) bool { return strings.Contains(entity, "@") }

// managesAnything reports whether bare is the managing entity of any rule.
func (d *delegator) managesAnything(bare string) bool {
	if d.r.deleg == nil {
		return false
	}
	for _, host := range d.r.sortedHosts() {
		if len(d.r.deleg.Rules.Table(host).For(bare)) > 0 {
			return true
		}
	}
	return false
}

// accountUp enters an available resource of a managing account and advertises.
func (d *delegator) accountUp(s *Session) {
	if !d.managesAnything(s.Bare) || !s.managing.CompareAndSwap(false, true) {
		return
	}
	d.r.comps.addComponent(s)
	d.r.comps.publishComponent(s)
	for _, host := range d.r.sortedHosts() {
		if rules := d.r.deleg.Rules.Table(host).For(s.Bare); len(rules) > 0 {
			s.Send(delegation.Advertisement(delegation.NS2, host, s.Full, rules))
		}
	}
}

// accountDown withdraws a managing account's resource (unavailable or gone).
func (d *delegator) accountDown(s *Session) {
	if !s.managing.CompareAndSwap(true, false) {
		return
	}
	d.r.comps.removeComponent(s, false)
}

// accountsChanged brings local resources of accounts whose delegations changed in line:
// entered (and advertised) when they became managing entities, withdrawn when they no
// longer are; still-managing ones get the new advertisement.
func (d *delegator) accountsChanged(ch delegation.Change) {
	for _, entity := range ch.Affected {
		if !isAccount(entity) {
			continue
		}
		var sessions []*Session
		for _, s := range d.r.users.sessions.Of(entity) {
			if s.available.Load() {
				sessions = append(sessions, s)
			}
		}
		for _, s := range sessions {
			switch {
			case !d.managesAnything(entity):
				if ch.New != nil {
					s.Send(delegation.Advertisement(delegation.NS2, ch.Host, s.Full, nil))
				}
				d.accountDown(s)
			case s.managing.Load():
				s.Send(delegation.Advertisement(delegation.NS2, ch.Host, s.Full, ch.New.For(entity)))
			default:
				d.accountUp(s)
			}
		}
	}
}
