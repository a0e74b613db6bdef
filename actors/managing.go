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
func (r *Router) managesAnything(bare string) bool {
	if r.deleg == nil {
		return false
	}
	for _, host := range r.sortedHosts() {
		if len(r.deleg.Rules.Table(host).For(bare)) > 0 {
			return true
		}
	}
	return false
}

// accountUp enters an available resource of a managing account and advertises.
func (r *Router) accountUp(s *Session) {
	if !r.managesAnything(s.Bare) || !s.managing.CompareAndSwap(false, true) {
		return
	}
	r.components.Add(s.Bare, &compRef{Handle: localTarget(s), Key: r.sessionKey(s), Full: s.Full})
	if r.cluster != nil {
		e := r.entry(s)
		e.Full = s.Full
		r.cluster.AddComponent(e)
	}
	for _, host := range r.sortedHosts() {
		if rules := r.deleg.Rules.Table(host).For(s.Bare); len(rules) > 0 {
			s.Send(delegation.Advertisement(delegation.NS2, host, s.Full, rules))
		}
	}
}

// accountDown withdraws a managing account's resource (unavailable or gone).
func (r *Router) accountDown(s *Session) {
	if !s.managing.CompareAndSwap(true, false) {
		return
	}
	key := r.sessionKey(s)
	r.components.Remove(s.Bare, key)
	if r.cluster != nil {
		e := r.entry(s)
		e.Full = s.Full
		r.cluster.RemoveComponent(e)
	}
	r.failVia(key)
}

func (r *Router) sessionKey(s *Session) string { return r.nodeID + "/" + s.pid.Id }

// accountsChanged brings local resources of accounts whose delegations changed in line:
// entered (and advertised) when they became managing entities, withdrawn when they no
// longer are; still-managing ones get the new advertisement.
func (r *Router) accountsChanged(ch delegation.Change) {
	for _, entity := range ch.Affected {
		if !isAccount(entity) {
			continue
		}
		var sessions []*Session
		for _, s := range r.sessions.Of(entity) {
			if s.available.Load() {
				sessions = append(sessions, s)
			}
		}
		for _, s := range sessions {
			switch {
			case !r.managesAnything(entity):
				if ch.New != nil {
					s.Send(delegation.Advertisement(delegation.NS2, ch.Host, s.Full, nil))
				}
				r.accountDown(s)
			case s.managing.Load():
				s.Send(delegation.Advertisement(delegation.NS2, ch.Host, s.Full, ch.New.For(entity)))
			default:
				r.accountUp(s)
			}
		}
	}
}
