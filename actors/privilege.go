package actors

import (
	"bytes"
	"encoding/xml"
	"errors"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/nodelink/pb"
	"github.com/switchboard-im/switchboard/privileges"
	"github.com/switchboard-im/switchboard/xmpp"
)

// privileged is XEP-0356 on the router: what a privileged component may do on behalf of
// a host's users (messages, IQs, roster access) and the presence it gets (presence.go).
type privileged struct {
	r       *Router
	dyn     atomic.Pointer[dynamicPrivileges]
	tracker *delegation.Tracker[*Session] // IQs sent on behalf of users, awaiting their answer
	pid     *actor.PID                    // receives the router's answers to those IQs
}

// NSPrivilege is XEP-0356 Privileged Entity (v0.4).
const NSPrivilege = privileges.NS

// privileges are a component's privileges on a host: the dynamic layer (etcd) for that
// host and component if it has an entry, else the component's configured ones.
func (pv *privileged) privileges(host, comp string) config.Privileges {
	if dyn := pv.dyn.Load(); dyn != nil {
		if p, ok := dyn.byHost[host][comp]; ok {
			return p
		}
	}
	return pv.r.componentOpts(comp).Privileges
}

// dynamicPrivileges is the etcd layer of privileges, with the components it names.
type dynamicPrivileges struct {
	byHost map[string]map[string]config.Privileges // normalized
	comps  []string                                // every component named, sorted
}

// setDynamic replaces the privileges stored in etcd (host → component →
// privileges; an entry overrides the component's configured privileges on that host) and
// sends every connected component whose privileges changed a fresh advertisement.
func (pv *privileged) setDynamic(m map[string]map[string]config.Privileges) {
	before := make(map[[2]string]config.Privileges)
	for host := range pv.r.hosts {
		for _, c := range pv.privilegedComponents() {
			before[[2]string{host, c}] = pv.privileges(host, c)
		}
	}
	dyn := &dynamicPrivileges{byHost: make(map[string]map[string]config.Privileges, len(m))}
	for host, comps := range m {
		dyn.byHost[host] = make(map[string]config.Privileges, len(comps))
		for c, p := range comps {
			dyn.byHost[host][c] = p.Normalized()
			if !slices.Contains(dyn.comps, c) {
				dyn.comps = append(dyn.comps, c)
			}
		}
	}
	sort.Strings(dyn.comps)
	pv.dyn.Store(dyn)
	for _, host := range pv.r.sortedHosts() {
		for _, c := range pv.privilegedComponents() {
			p := pv.privileges(host, c)
			if p.Equal(before[[2]string{host, c}]) {
				continue
			}
			for _, s := range pv.r.comps.dir.Locals(c) {
				s.Send(privileges.Advertisement(host, c, p, true))
			}
		}
	}
}

// privilegedComponents lists every component that may have privileges: the configured
// ones and those named in the dynamic layer. It is asked on every presence broadcast, so
// in the usual case (etcd names no other component) it is the configured list itself.
func (pv *privileged) privilegedComponents() []string {
	configured := pv.r.settings.Load().compNames
	dyn := pv.dyn.Load()
	if dyn == nil {
		return configured
	}
	var extra []string
	for _, c := range dyn.comps {
		if !slices.Contains(configured, c) {
			extra = append(extra, c)
		}
	}
	if len(extra) == 0 {
		return configured
	}
	out := append(slices.Clone(configured), extra...)
	sort.Strings(out)
	return out
}

// privilegedMessage handles <message to=HOST><privilege><forwarded><message from=USER/>:
// a component with the message privilege sends a message on behalf of one of the host's
// users, or of the host itself (XEP-0356 §5: libervia-pubsub sends MAM results so).
// Anything else is forbidden.
func (pv *privileged) privilegedMessage(h *Host, sender *Session, from string, env *xmpp.Envelope) verdict {
	if sender.Kind != KindComponent || !pv.privileges(h.Domain, sender.Bare).MessageOutgoing() {
		return refuse(h.Domain, xmpp.ErrForbidden)
	}
	inner, err := delegation.UnwrapForwarded(env, xml.Name{Space: NSPrivilege, Local: "privilege"}, "message", false)
	if err != nil {
		return refuse(h.Domain, xmpp.ErrBadRequest)
	}
	j, err := jid.Parse(inner.From)
	if err != nil || j.Domainpart() != h.Domain || j.Resourcepart() != "" ||
		(j.Localpart() != "" && !pv.r.accounts.Exists(h.Domain, j.Localpart())) {
		// The inner from must be the host, or the bare JID of one of its users.
		return refuse(h.Domain, xmpp.ErrForbidden)
	}
	pv.r.Route(sender, j.String(), inner)
	return handled
}

// --- XEP-0356 §6: IQs on behalf of a user ----------------------------------------------

var errRemoteServerTimeout = &xmpp.StanzaError{Type: xmpp.ErrWait, Condition: "remote-server-timeout"}

// privilegedIQ handles <iq to=USER><privileged_iq><iq xmlns='jabber:client'/></privileged_iq>:
// the encapsulated IQ is sent as the user (from = the user's bare JID) and its answer comes
// back to the component wrapped in <privilege><forwarded/>. bare is "" when the outer IQ
// was not addressed to a user's bare JID. Every rule of XEP-0356 §6.3 is checked, and a
// violation is forbidden.
func (pv *privileged) privilegedIQ(h *Host, sender *Session, from, bare string, env *xmpp.Envelope) verdict {
	to := env.To
	forbid := refuse(to, xmpp.ErrForbidden)
	if sender.Kind != KindComponent || env.ID == "" {
		return forbid
	}
	local, _, _ := cutAt(bare)
	if bare == "" || local == "" || !pv.r.accounts.Exists(h.Domain, local) {
		return forbid // not addressed to the bare JID of a managed entity
	}
	inner, err := delegation.UnwrapChild(env, xml.Name{Space: NSPrivilege, Local: "privileged_iq"}, "iq")
	switch {
	case errors.Is(err, delegation.ErrNotClient):
		return forbid
	case err != nil:
		return refuse(to, xmpp.ErrBadRequest)
	}
	if inner.Type != env.Type {
		return forbid
	}
	if !inner.HasChild || inner.ID == "" {
		return refuse(to, xmpp.ErrBadRequest)
	}
	if !pv.privileges(h.Domain, sender.Bare).IQAllows(inner.Child.Space, inner.Type) {
		return forbid
	}
	if inner.From != "" && inner.From != bare {
		return forbid
	}
	if sender.inflightFull() {
		return refuse(to, xmpp.ErrResourceConstraint) // limits.max_inflight_iqs
	}
	id := pv.tracker.NewID()
	sender.inflight.Add(1) // until the tracker's OnDone
	pv.tracker.Add(&delegation.Pending[*Session]{Request: delegation.Request{
		OuterID: id, Host: h.Domain, Namespace: inner.Child.Space, Entity: sender.Bare,
		Via: pv.r.comps.sessionKey(sender), From: from, OrigID: inner.ID, OrigTo: inner.To,
		WrapID: env.ID, User: bare,
	}, Requester: sender})
	// The router treats the encapsulated IQ as the user's own: a stand-in session whose
	// writes (error replies the router makes) go to the privileged actor, and whose
	// address is the user's bare JID, which answers from elsewhere are addressed to.
	proxy := &Session{Kind: KindC2S, Host: h.Domain, Bare: bare, Full: bare, Local: local,
		pid: pv.pid, router: pv.r}
	out, err := xmpp.ParseStanza(rebuildIQ(inner, id, bare, inner.To))
	if err != nil {
		pv.tracker.Take(id)
		return refuse(to, xmpp.ErrBadRequest)
	}
	pv.r.Route(proxy, bare, out)
	return handled
}

// rebuildIQ is the IQ with a new id, from and to, in the client namespace (xml:lang and
// the prefixes it declares kept).
func rebuildIQ(env *xmpp.Envelope, id, from, to string) []byte {
	var b bytes.Buffer
	b.WriteString("<iq xmlns='" + xmpp.NSClient + "' type='")
	xmpp.EscapeAttr(&b, env.Type)
	b.WriteString("' id='")
	xmpp.EscapeAttr(&b, id)
	b.WriteString("'")
	xmpp.WriteAddrs(&b, from, to)
	for _, a := range env.Attrs {
		switch {
		case a.Name.Space == "http://www.w3.org/XML/1998/namespace" && a.Name.Local == "lang":
			b.WriteString(" xml:lang='")
		case a.Name.Space == "xmlns": // the content may use the prefix
			b.WriteString(" xmlns:" + a.Name.Local + "='")
		default:
			continue
		}
		xmpp.EscapeAttr(&b, a.Value)
		b.WriteString("'")
	}
	b.WriteString(">")
	b.Write(env.Content())
	b.WriteString("</iq>")
	return b.Bytes()
}

// isPrivilegedReply reports whether an IQ answer carries one of the privileged trackers'
// ids (it answers an IQ sent on behalf of a user).
func isPrivilegedReply(env *xmpp.Envelope) bool {
	return env.Kind == xmpp.KindIQ && !isRequest(env) &&
		delegation.NodeOfTagged(delegation.TagPrivileged, env.ID) != ""
}

// routePrivilegedReply sends an answer to a privileged IQ (from: its vouched-for sender)
// to the node that holds it.
func (pv *privileged) routePrivilegedReply(from string, env *xmpp.Envelope) {
	node := delegation.NodeOfTagged(delegation.TagPrivileged, env.ID)
	if node == pv.r.nodeID || pv.r.cluster == nil {
		pv.privilegedReply(from, env)
		return
	}
	pv.r.link.ToNode(node, &pb.PrivilegedReply{Stanza: stamp(env, from, env.To)})
}

// privilegedReply wraps the answer to an IQ sent on behalf of a user and gives it to the
// privileged entity (XEP-0356 §6.3). An answer from anyone but the IQ's addressee is dropped.
func (pv *privileged) privilegedReply(from string, env *xmpp.Envelope) {
	if !pv.tracker.Owns(env.ID) {
		return
	}
	p, ok := pv.tracker.TakeIf(env.ID, func(p *delegation.Pending[*Session]) bool { return replyFromOK(&p.Request, from) })
	if !ok {
		return
	}
	comp := p.Requester
	var b bytes.Buffer
	b.WriteString("<iq type='result' id='")
	xmpp.EscapeAttr(&b, p.WrapID)
	b.WriteString("' from='")
	xmpp.EscapeAttr(&b, p.User)
	b.WriteString("' to='")
	xmpp.EscapeAttr(&b, p.From)
	b.WriteString("'><privilege xmlns='" + NSPrivilege + "'><forwarded xmlns='" + delegation.NSForward + "'>")
	b.Write(rebuildIQ(env, p.OrigID, from, p.User))
	b.WriteString("</forwarded></privilege></iq>")
	comp.Send(b.Bytes())
}

// replyFromOK: the answer must come from the encapsulated IQ's 'to' (the user's bare JID
// when it had none).
func replyFromOK(p *delegation.Request, from string) bool {
	want := p.OrigTo
	if want == "" {
		want = p.User
	}
	return from == want || (from == "" && want == p.User)
}

// privilegedTimeout tells the component its IQ got no answer in time.
func (pv *privileged) privilegedTimeout(p *delegation.Pending[*Session]) {
	p.Requester.Send(iqErrorTo(p.WrapID, p.User, p.From, errRemoteServerTimeout))
}

// privilegedActor receives what the router writes to a privileged IQ's stand-in session
// (error answers), here or from other nodes.
func (pv *privileged) privilegedActor(ctx actor.Context) {
	var data []byte
	switch m := ctx.Message().(type) {
	case *deliver:
		data = m.data
	case *pb.Deliver:
		data = m.Data
	default:
		return
	}
	env, err := xmpp.ParseStanza(data)
	if err != nil || env.Kind != xmpp.KindIQ {
		return
	}
	pv.privilegedReply(env.From, env)
}
