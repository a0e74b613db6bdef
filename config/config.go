// Package config holds Switchboard's node configuration: the YAML file format,
// its defaults, environment-variable overrides and validation.
//
// A configuration is built in three layers, each overriding the one before:
// the defaults ([Default]), the YAML file ([Load]) and the environment
// ([Config.ApplyEnv]). Keys missing from the file keep their default, so an
// explicit zero value in the file (for example `tls: {required: false}`) is
// honoured rather than replaced by the default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Namespaces of XEP-0355 Namespace Delegation.
const (
	// DelegationNS2 is the current namespace of XEP-0355 (urn:xmpp:delegation:2).
	DelegationNS2 = "urn:xmpp:delegation:2"
	// DelegationNS1 is the older namespace still spoken by ejabberd-style
	// components (urn:xmpp:delegation:1).
	DelegationNS1 = "urn:xmpp:delegation:1"
)

// Balancing policies for the delegated IQs of a component with several sessions.
const (
	// BalanceRoundRobin hands each IQ to the next session in turn.
	BalanceRoundRobin = "round-robin"
	// BalanceLeastPending hands each IQ to the session with the fewest IQs
	// awaiting a reply.
	BalanceLeastPending = "least-pending"
	// BalanceSender keeps all IQs of one sender bare JID on the same session.
	BalanceSender = "sender"
)

// Log levels and formats accepted in log.level and log.format.
const (
	LogLevelDebug = "debug"
	LogLevelInfo  = "info"
	LogLevelWarn  = "warn"
	LogLevelError = "error"

	LogFormatText = "text"
	LogFormatJSON = "json"
)

// Defaults that are not obvious from [Default] alone.
const (
	// DefaultNodeID is the node id used when the hostname is unknown.
	DefaultNodeID = "node1"
	// MinSCRAMIterations is the smallest accepted accounts.scram_iterations
	// (RFC 7677 recommends at least 4096).
	MinSCRAMIterations = 4096
)

// Duration is a time.Duration written in YAML (and in environment variables)
// as a Go duration string such as "30s", "5m" or "1h30m". It marshals back to
// the same form.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does ("30s", "10m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it parses a Go duration
// string ("30s"). A bare number other than 0 is rejected: the unit is required.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(text)))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"5m\")", string(text))
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf("line %d: a duration must be a string such as \"30s\"", n.Line)}}
	}
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	return nil
}

// Config is the configuration of one Switchboard node.
//
// Every scalar key and every list of strings can also be set from the
// environment; see [Config.ApplyEnv].
type Config struct {
	// Node identifies this node and where it keeps local state.
	Node NodeConfig `yaml:"node"`
	// Listen holds the addresses of the node's listeners.
	Listen ListenConfig `yaml:"listen"`
	// TLS configures the certificate used by the c2s listeners.
	TLS TLSConfig `yaml:"tls"`
	// Etcd configures the store for shared state (delegation rules, accounts).
	Etcd EtcdConfig `yaml:"etcd"`
	// Cluster configures membership (memberlist) and node-to-node messaging.
	Cluster ClusterConfig `yaml:"cluster"`
	// Hosts lists the XMPP domains this cluster serves.
	// Default: a single host "localhost" without delegations.
	// Not settable from the environment.
	Hosts []HostConfig `yaml:"hosts"`
	// Components lists the external components (XEP-0114) allowed to connect.
	// Default: none. Not settable from the environment.
	Components []ComponentConfig `yaml:"components"`
	// Delegation tunes XEP-0355 namespace delegation.
	Delegation DelegationConfig `yaml:"delegation"`
	// Limits bounds the resources one connection may use.
	Limits LimitsConfig `yaml:"limits"`
	// Accounts configures how user credentials are stored.
	Accounts AccountsConfig `yaml:"accounts"`
	// Admin configures what the admin HTTP listener (listen.admin) serves.
	Admin AdminConfig `yaml:"admin"`
	// S2S configures federation with other XMPP servers (listen.s2s).
	S2S S2SConfig `yaml:"s2s"`
	// Log configures the process log.
	Log LogConfig `yaml:"log"`
}

// NodeConfig identifies this node (key `node`).
type NodeConfig struct {
	// ID is the node's name in the cluster; it must be unique among the nodes
	// and must not contain whitespace or "/".
	// Default: the machine's hostname, or "node1" if that is unknown.
	ID string `yaml:"id"`
	// DataDir is the directory for the node's local state: the embedded etcd
	// data and the self-signed TLS pair when none is configured.
	// Default: "./data".
	DataDir string `yaml:"data_dir"`
	// GCHeadroomBytes: the heap may grow at least this much past what the last
	// garbage collection found live before the next one starts (Go's own pacing
	// starts one when the heap has doubled, several times a second on a small
	// heap under load). GOGC still applies when it allows more, GOMEMLIMIT still
	// bounds the heap; 0 leaves the pacing to GOGC alone. Read by `serve` (the
	// whole process). Default: 33554432 (32 MiB).
	GCHeadroomBytes int64 `yaml:"gc_headroom_bytes"`
	// DrainTimeout: on SIGTERM the node withdraws its component connections from
	// the cluster and waits this long at most for the delegated IQs in flight over
	// them, and for those of its own clients, before it closes its streams
	// (system-shutdown); 0 closes them at once. The process's own stop budget
	// (15 s past this for `serve`) bounds the rest. Default: 10s.
	DrainTimeout Duration `yaml:"drain_timeout"`
}

// ListenConfig holds listener addresses as host:port (key `listen`). An empty
// address disables that listener. Port 0 picks a free port.
type ListenConfig struct {
	// C2S is the client-to-server listener with STARTTLS (RFC 6120).
	// Default: "127.0.0.1:5222".
	C2S string `yaml:"c2s"`
	// C2STLS is the client-to-server listener with direct TLS (XEP-0368).
	// Default: "127.0.0.1:5223".
	C2STLS string `yaml:"c2s_tls"`
	// Component is the external component listener (XEP-0114).
	// Default: "127.0.0.1:5347".
	Component string `yaml:"component"`
	// Admin is the HTTP listener for /healthz, /readyz and /metrics.
	// Default: "127.0.0.1:5280".
	Admin string `yaml:"admin"`
	// S2S is the server-to-server listener (RFC 6120 federation). Empty: no
	// federation (stanzas to other domains get remote-server-not-found).
	// Default: "".
	S2S string `yaml:"s2s"`
}

// S2SConfig configures federation (key `s2s`): the certificate is tls.cert/tls.key,
// which must name every served domain for the remote servers to accept it.
type S2SConfig struct {
	// CAFile is a PEM file of CA certificates trusted, besides the system's, for
	// remote servers' certificates (a private federation). Default: "".
	CAFile string `yaml:"ca_file"`
	// RequireEncryption: streams without TLS are refused, both ways. Default: true.
	RequireEncryption bool `yaml:"require_encryption"`
	// Dialback enables XEP-0220 server dialback where certificates do not
	// authenticate a peer (SASL EXTERNAL, XEP-0178, is always offered first): the
	// peer's domain is checked by asking its server (found by static route or DNS)
	// to vouch for the key. Default: true.
	Dialback bool `yaml:"dialback"`
	// StaticRoutes pins remote domains to host:port addresses instead of DNS
	// (SRV _xmpp-server._tcp, then A/AAAA on 5269). Not settable from the
	// environment.
	StaticRoutes map[string]string `yaml:"static_routes,omitempty"`
	// ConnectTimeout bounds the setup of an outgoing stream (DNS, TCP, TLS,
	// authentication); past it what waits for it is bounced with
	// remote-server-timeout. Default: 10s.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// MaxQueuedBytes bounds what waits for one outgoing stream being set up;
	// past it a stanza is bounced with resource-constraint. Default: 1048576.
	MaxQueuedBytes int `yaml:"max_queued_bytes"`
	// MaxStreamsPerDomain caps the incoming streams from one remote domain (on
	// this node). Default: 4.
	MaxStreamsPerDomain int `yaml:"max_streams_per_domain"`
	// BytesPerSecond and StanzasPerSecond shape what one incoming stream may send
	// (a token bucket each, with limits.client_rate_burst of burst); past them its
	// reading waits. 0: no limit. Defaults: 4194304 and 20000.
	BytesPerSecond   int `yaml:"bytes_per_second"`
	StanzasPerSecond int `yaml:"stanzas_per_second"`
	// IdleTimeout closes an outgoing stream nothing was written to for this long
	// (the next stanza opens it again). Default: 5m.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// TLSConfig configures the c2s certificate (key `tls`).
type TLSConfig struct {
	// Cert is the path to the PEM certificate chain. Set both Cert and Key, or
	// neither: when both are empty a self-signed pair is generated in
	// node.data_dir. Default: "".
	Cert string `yaml:"cert"`
	// Key is the path to the PEM private key of Cert. Default: "".
	Key string `yaml:"key"`
	// Required makes STARTTLS mandatory on the c2s listener: no
	// authentication happens on a plain-text stream. Default: true.
	Required bool `yaml:"required"`
}

// EtcdConfig configures the etcd store (key `etcd`).
type EtcdConfig struct {
	// Endpoints are the client URLs of an external etcd cluster
	// (e.g. "http://etcd1:2379"). When empty, the node runs an embedded
	// single-member etcd in node.data_dir. Default: [] (embedded).
	// In the environment: comma-separated.
	Endpoints []string `yaml:"endpoints"`
	// Prefix is prepended to every key Switchboard stores; it must start with
	// "/" and must not end with "/". Default: "/switchboard".
	Prefix string `yaml:"prefix"`
	// DialTimeout bounds the initial connection to etcd. Default: 5s.
	DialTimeout Duration `yaml:"dial_timeout"`
	// MaxResponseBytes bounds one response the node accepts from etcd; loads of
	// accounts, rules and privileges are read in pages of 500 keys, so only a page
	// must fit. Default: 33554432 (32 MiB).
	MaxResponseBytes int `yaml:"max_response_bytes"`
	// Embedded configures the embedded etcd, used when Endpoints is empty.
	Embedded EmbeddedEtcdConfig `yaml:"embedded"`
}

// EmbeddedEtcdConfig holds the addresses of the embedded etcd
// (key `etcd.embedded`), as host:port.
type EmbeddedEtcdConfig struct {
	// Client is the address etcd clients connect to. Default: "127.0.0.1:2379".
	Client string `yaml:"client"`
	// Peer is the etcd peer (raft) address. Default: "127.0.0.1:2380".
	Peer string `yaml:"peer"`
}

// ClusterConfig configures how nodes find and talk to each other (key `cluster`).
type ClusterConfig struct {
	// Bind is the memberlist (gossip) address, host:port, TCP and UDP.
	// Empty runs a standalone node: no membership, no remoting.
	// Default: "127.0.0.1:7946".
	Bind string `yaml:"bind"`
	// Advertise is the memberlist address announced to other nodes, host:port,
	// when it differs from Bind (NAT, containers). Default: "" (use Bind).
	Advertise string `yaml:"advertise"`
	// Remote is the address, host:port, of the actor remoting (gRPC) endpoint
	// that carries stanzas between nodes. Default: "127.0.0.1:8946".
	Remote string `yaml:"remote"`
	// RemoteAdvertise is the remoting address other nodes use to reach this one,
	// when it differs from Remote (NAT, containers). Default: "" (use Remote).
	RemoteAdvertise string `yaml:"remote_advertise"`
	// ProbeInterval is how often memberlist probes a random member; with
	// SuspicionMult it sets how fast a dead node is detected (roughly
	// probe_interval × suspicion_mult plus a probe timeout). Default: 1s.
	ProbeInterval Duration `yaml:"probe_interval"`
	// SuspicionMult is how many probe intervals a suspected member has to
	// refute before it is declared dead. Default: 3.
	SuspicionMult int `yaml:"suspicion_mult"`
	// Join lists seed nodes' memberlist addresses (host or host:port; DNS
	// names allowed) to join at start. Default: [] (start a new cluster).
	// In the environment: comma-separated.
	Join []string `yaml:"join"`
	// SecretKeyFile holds the gossip keys: one base64 32-byte key per line, the
	// first used to encrypt, the others also accepted (`switchboard cluster key`
	// makes one; rotation: add the new key on every node, SIGHUP, move it first,
	// SIGHUP, drop the old one, SIGHUP). Memberlist then encrypts and authenticates
	// every gossip message: a node without a key can neither join nor listen.
	// Default: "" (no encryption; loopback binds or cluster.insecure only).
	SecretKeyFile string `yaml:"secret_key_file"`
	// TLS is mutual TLS on the remote port: this node's certificate and key, and
	// the cluster CA that must have signed every peer's (`switchboard cluster
	// secrets` makes them). Default: none (loopback binds or cluster.insecure only).
	TLS ClusterTLS `yaml:"tls"`
	// Insecure lets a node bind cluster addresses reachable off this machine
	// without secret_key_file and tls: anyone who reaches those ports is then a
	// member. Default: false.
	Insecure bool `yaml:"insecure"`
	// MaxQueuedBytes bounds the messages waiting in the transport for one other
	// node (a slow or stalled one); past it what is sent to that node is dropped,
	// as if it were gone, and counted in switchboard_node_link_dropped_total.
	// Default: 67108864 (64 MiB).
	MaxQueuedBytes int `yaml:"max_queued_bytes"`
}

// ClusterTLS is mutual TLS between nodes (key `cluster.tls`): PEM files, all three or
// none.
type ClusterTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// Set reports whether mutual TLS is configured.
func (t ClusterTLS) Set() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }

// HostConfig is one served XMPP domain (an entry of `hosts`).
type HostConfig struct {
	// Domain is the XMPP domain, e.g. "example.com". It is lowercased;
	// it must be unique and must not also be a component JID.
	Domain string `yaml:"domain"`
	// Delegations are the static XEP-0355 delegation rules of this host,
	// keyed by the delegated namespace (e.g. "urn:xmpp:mam:2"). Rules stored
	// in etcd for the same namespace take precedence. The delegation
	// namespaces themselves cannot be delegated. Default: none.
	Delegations map[string]DelegationRule `yaml:"delegations,omitempty"`
}

// DelegationRule delegates one namespace to a managing entity.
type DelegationRule struct {
	// JID is the bare JID of the managing entity, normally a component
	// domain such as "pubsub.example.com". Required.
	JID string `yaml:"jid"`
	// Filtering lists attribute names that must all be present on the IQ's
	// first child for the IQ to be delegated (XEP-0355 §4.2). Default: none
	// (every IQ of the namespace is delegated).
	Filtering []string `yaml:"filtering,omitempty"`
}

// ComponentConfig is one external component allowed to connect (an entry of
// `components`).
type ComponentConfig struct {
	// JID is the component's domain, e.g. "pubsub.example.com" (no "@" or
	// "/"). It is lowercased; it must be unique and must not be a host domain.
	// Required.
	JID string `yaml:"jid"`
	// Secret is the XEP-0114 handshake secret. Required, unless SecretFile is set.
	Secret string `yaml:"secret,omitempty"`
	// SecretFile is a file holding the secret (e.g. a mounted Kubernetes Secret); it is
	// read at start and at every reload. Default: "".
	SecretFile string `yaml:"secret_file,omitempty"`
	// DelegationNS is the XEP-0355 namespace spoken with this component:
	// "urn:xmpp:delegation:2", or "urn:xmpp:delegation:1" for ejabberd-style
	// components. Default: "urn:xmpp:delegation:2".
	DelegationNS string `yaml:"delegation_ns"`
	// Balance is how delegated IQs are spread over several sessions of this
	// component: "round-robin", "least-pending" (fewest IQs awaiting a reply)
	// or "sender" (by sender bare JID). Default: "round-robin".
	Balance string `yaml:"balance"`
	// Privileges are the XEP-0356 privileges granted to this component.
	// Default: none.
	Privileges Privileges `yaml:"privileges,omitempty"`
}

// Privileges grants a component XEP-0356 (urn:xmpp:privilege:2) permissions on
// every host (an entry stored in etcd overrides them per host). The same shape is
// the JSON value of `<prefix>/privileges/<host>/<component>`.
type Privileges struct {
	// Roster: "none", "get", "set" or "both" (read and/or change the host's users'
	// rosters; with get or both the component also gets their roster pushes).
	// Default: "none".
	Roster string `yaml:"roster,omitempty" json:"roster,omitempty"`
	// RosterPushes (key roster_push): false keeps the users' roster pushes from a
	// component with roster get or both that does not want them (XEP-0356 §4.4 push
	// attribute). Default: true with roster get or both.
	RosterPushes *bool `yaml:"roster_push,omitempty" json:"roster_push,omitempty"`
	// Message: "none" or "outgoing" (send messages on behalf of the host's users).
	// Default: "none".
	Message string `yaml:"message,omitempty" json:"message,omitempty"`
	// Presence: "none", "managed_entity" (receive the users' initial and
	// unavailable presence) or "roster" (also every presence their contacts send
	// them; needs roster get or both). Default: "none".
	Presence string `yaml:"presence,omitempty" json:"presence,omitempty"`
	// IQ: namespace → "get", "set", "both" or "none" (send IQs of that namespace
	// on behalf of the host's users).
	IQ map[string]string `yaml:"iq,omitempty" json:"iq,omitempty"`
}

// Privilege values with a meaning beyond "granted" (XEP-0356).
const (
	PrivilegeNone         = "none"
	PrivilegeOutgoing     = "outgoing"       // message
	PresenceManagedEntity = "managed_entity" // presence
	PresenceRoster        = "roster"         // presence
	PrivilegeAccessBoth   = "both"           // roster, iq
)

// Normalized is p with "none" written as absent: an empty string, and no IQ entry. It is
// the form routing keeps, so that "none" and an absent key compare equal.
func (p Privileges) Normalized() Privileges {
	none := func(v string) string {
		if v == PrivilegeNone {
			return ""
		}
		return v
	}
	out := Privileges{Roster: none(p.Roster), Message: none(p.Message), Presence: none(p.Presence)}
	if p.RosterPushes != nil && !*p.RosterPushes && (out.Roster == "get" || out.Roster == PrivilegeAccessBoth) {
		no := false
		out.RosterPushes = &no
	}
	for ns, t := range p.IQ {
		if t = none(t); t != "" {
			if out.IQ == nil {
				out.IQ = make(map[string]string)
			}
			out.IQ[ns] = t
		}
	}
	return out
}

// Equal reports whether p and q grant the same.
func (p Privileges) Equal(q Privileges) bool {
	a, b := p.Normalized(), q.Normalized()
	return a.Roster == b.Roster && a.RosterPush() == b.RosterPush() && a.Message == b.Message &&
		a.Presence == b.Presence && maps.Equal(a.IQ, b.IQ)
}

// Any reports whether anything is granted.
func (p Privileges) Any() bool {
	granted := func(v string) bool { return v != "" && v != PrivilegeNone }
	if granted(p.Roster) || p.MessageOutgoing() || p.ReceivesPresence() {
		return true
	}
	for _, t := range p.IQ {
		if granted(t) {
			return true
		}
	}
	return false
}

// RosterAllows reports whether an IQ of type typ (get or set) on a user's roster is allowed.
func (p Privileges) RosterAllows(typ string) bool { return accessAllows(p.Roster, typ) }

// RosterPush reports whether the entity gets the users' roster pushes: with roster get
// or both (XEP-0356 §4.4), unless roster_push is false.
func (p Privileges) RosterPush() bool {
	return (p.Roster == "get" || p.Roster == PrivilegeAccessBoth) && (p.RosterPushes == nil || *p.RosterPushes)
}

// IQAllows reports whether an IQ of type typ in namespace ns may be sent as a user.
func (p Privileges) IQAllows(ns, typ string) bool { return accessAllows(p.IQ[ns], typ) }

// MessageOutgoing reports whether messages may be sent on behalf of users.
func (p Privileges) MessageOutgoing() bool { return p.Message == PrivilegeOutgoing }

// ReceivesPresence reports whether the entity gets the users' presence (managed_entity
// or roster).
func (p Privileges) ReceivesPresence() bool {
	return p.Presence == PresenceManagedEntity || p.Presence == PresenceRoster
}

func accessAllows(perm, typ string) bool {
	return perm == PrivilegeAccessBoth || (perm == typ && typ != "" && typ != PrivilegeNone)
}

// PrivilegeProblem is one invalid privilege: Key is relative to the privileges
// (e.g. "roster", "iq.urn:example").
type PrivilegeProblem struct{ Key, Problem string }

// ValidatePrivileges checks XEP-0356 privileges (from the config file or etcd).
func ValidatePrivileges(pr Privileges) []PrivilegeProblem {
	var out []PrivilegeProblem
	add := func(k, f string, a ...any) { out = append(out, PrivilegeProblem{k, fmt.Sprintf(f, a...)}) }
	access := func(v string) bool { return v == "" || v == "none" || v == "get" || v == "set" || v == "both" }
	if !access(pr.Roster) {
		add("roster", "%q is not one of none, get, set, both", pr.Roster)
	}
	if pr.RosterPushes != nil && *pr.RosterPushes && pr.Roster != "get" && pr.Roster != "both" {
		add("roster_push", "true needs roster: get or both (pushes come with reading the roster)")
	}
	if pr.Message != "" && pr.Message != "none" && pr.Message != "outgoing" {
		add("message", "%q is not one of none, outgoing", pr.Message)
	}
	switch pr.Presence {
	case "", "none", "managed_entity":
	case "roster":
		if pr.Roster != "get" && pr.Roster != "both" {
			add("presence", "roster needs roster: get or both (XEP-0356 §7.3)")
		}
	default:
		add("presence", "%q is not one of none, managed_entity, roster", pr.Presence)
	}
	nss := make([]string, 0, len(pr.IQ))
	for ns := range pr.IQ {
		nss = append(nss, ns)
	}
	sort.Strings(nss)
	for _, ns := range nss {
		if ns == "" {
			add("iq", "empty namespace")
			continue
		}
		if !access(pr.IQ[ns]) {
			add("iq."+ns, "%q is not one of none, get, set, both", pr.IQ[ns])
		}
	}
	return out
}

// DelegationConfig tunes namespace delegation (key `delegation`).
type DelegationConfig struct {
	// Timeout is how long a delegated IQ waits for the managing entity's
	// reply before the requester gets service-unavailable. Must be > 0.
	// Default: 30s.
	Timeout Duration `yaml:"timeout"`
	// StallAfter: a component connection (on any node) with delegated IQs waiting
	// on it that has answered none for this long takes no new IQ while another
	// connection of the component answers; the waiting IQs stay with it. 0: off.
	// Default: 1s.
	StallAfter Duration `yaml:"stall_after"`
}

// LimitsConfig bounds per-connection resources (key `limits`).
type LimitsConfig struct {
	// MaxStanzaBytes is the largest stanza accepted; a bigger one closes the
	// stream with policy-violation. Default: 262144 (256 KiB).
	MaxStanzaBytes int `yaml:"max_stanza_bytes"`
	// NegotiationTimeout bounds stream negotiation (TLS, SASL, bind or the
	// component handshake). Default: 30s.
	NegotiationTimeout Duration `yaml:"negotiation_timeout"`
	// IdleTimeout closes a connection that sent nothing (not even whitespace
	// keepalives) for this long; 0 never closes. Default: 10m.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// ParkAfter: a client session that sent nothing for this long waits for its next
	// input on a goroutine with the smallest stack (2 KiB instead of 8), until input
	// comes; 0 never parks. Default: 5s.
	ParkAfter Duration `yaml:"park_after"`
	// WriteTimeout bounds one write to a connection; a peer that does not
	// read for this long is disconnected. Default: 30s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxAuthAttempts is how many failed SASL attempts a connection may make
	// before it is closed. Default: 3.
	MaxAuthAttempts int `yaml:"max_auth_attempts"`
	// MaxSendQueueBytes is how many bytes may wait to be written to one
	// connection; beyond that the slow peer is disconnected.
	// Default: 8388608 (8 MiB).
	MaxSendQueueBytes int `yaml:"max_send_queue_bytes"`
	// CSIMaxHeldBytes: while a client says it is inactive (XEP-0352), presence
	// and messages without a body wait for it, each sender's latest presence only;
	// past this many bytes held, all of it is written. 0: nothing is held.
	// Default: 65536.
	CSIMaxHeldBytes int `yaml:"csi_max_held_bytes"`
	// SMResumeTimeout is the longest a client's stream-management session
	// (XEP-0198) waits to be resumed after its connection drops: the client's own
	// 'max' is honoured up to it. 0: resumption is not offered (acks still are).
	// Default: 300s.
	SMResumeTimeout Duration `yaml:"sm_resume_timeout"`
	// SMMaxUnacked and SMMaxUnackedBytes bound the stanzas a stream-management
	// session keeps until the client acknowledges them (XEP-0198): past either, the
	// session ends and what it kept goes to offline storage or back to its senders.
	// Defaults: 500 and 1048576.
	SMMaxUnacked      int `yaml:"sm_max_unacked"`
	SMMaxUnackedBytes int `yaml:"sm_max_unacked_bytes"`
	// OfflineMaxMessages and OfflineMaxBytes bound what is stored in etcd for one
	// user while none of their resources is available (XEP-0160: messages of type
	// normal or chat with a body); past either, a message is bounced with
	// resource-constraint. 0 in either: nothing is stored (messages bounce).
	// Defaults: 100 and 262144.
	OfflineMaxMessages int `yaml:"offline_max_messages"`
	OfflineMaxBytes    int `yaml:"offline_max_bytes"`
	// MaxRosterItems is how many items one user's roster may hold; a roster set
	// beyond it gets resource-constraint. Default: 1000.
	MaxRosterItems int `yaml:"max_roster_items"`
	// BlocklistMaxItems is how many JIDs one user may block (XEP-0191); a block
	// beyond it gets resource-constraint. Default: 1000.
	BlocklistMaxItems int `yaml:"blocklist_max_items"`
	// MaxPendingWork is how much work one session's stanzas may have started and
	// not finished (server IQs waiting for the host, roster reads and writes,
	// presence to contacts) before the session is not read until it drains to
	// half: a flooding client is slowed by TCP, not buffered. Default: 64.
	MaxPendingWork int `yaml:"max_pending_work"`
	// MaxInflightIQs is how many IQs one session may have waiting for another
	// entity's answer through the server (delegated, XEP-0355; privileged,
	// XEP-0356); past it a new one is answered resource-constraint. Default: 256.
	MaxInflightIQs int `yaml:"max_inflight_iqs"`
	// MaxEtcdRequests is how many etcd requests client stanzas (roster reads and
	// writes, presence broadcasts) may have under way at once on a node; more wait
	// for a turn, and their sessions' pending work (max_pending_work) stops their
	// reading. Default: 64.
	MaxEtcdRequests int `yaml:"max_etcd_requests"`
	// MaxUnauthenticated is how many connections, on the c2s and component ports
	// together, may be negotiating (TLS, SASL, bind, handshake) at once; one more is
	// closed at once. Default: 4096.
	MaxUnauthenticated int `yaml:"max_unauthenticated"`
	// MaxUnauthenticatedPerIP is the same per remote address. Default: 64.
	MaxUnauthenticatedPerIP int `yaml:"max_unauthenticated_per_ip"`
	// AuthFailuresPerIP is how many failed authentication attempts (SASL, component
	// handshake) one address may make within AuthFailureWindow; past it nothing
	// authenticates from that address, with any password, until the window since its
	// first failure has passed. Default: 10.
	AuthFailuresPerIP int `yaml:"auth_failures_per_ip"`
	// AuthFailureWindow: see AuthFailuresPerIP. Default: 10m.
	AuthFailureWindow Duration `yaml:"auth_failure_window"`
	// MaxSessionsPerUser is how many sessions (resources) one account may have bound
	// at once, on all nodes. A bind past it is answered resource-constraint (RFC 6120
	// §7.6.2.1) and the stream is closed (policy-violation); binding a resource that
	// is already bound replaces it as always. Default: 10 (as ejabberd).
	MaxSessionsPerUser int `yaml:"max_sessions_per_user"`
	// ClientBytesPerSecond and ClientStanzasPerSecond shape what one client session
	// may send once bound (token buckets with a burst of ClientRateBurst seconds):
	// past them its stanzas are not read until the bucket refills, so TCP slows the
	// client down; nothing is dropped. Components are not shaped. 0: no limit.
	// Defaults: 262144 (256 KiB/s), 2000, and a burst of 2 seconds' worth.
	ClientBytesPerSecond   int      `yaml:"client_bytes_per_second"`
	ClientStanzasPerSecond int      `yaml:"client_stanzas_per_second"`
	ClientRateBurst        Duration `yaml:"client_rate_burst"`
}

// AccountsConfig configures user accounts (key `accounts`).
type AccountsConfig struct {
	// SCRAMIterations is the PBKDF2 iteration count for newly stored SCRAM
	// credentials; at least 4096. Default: 4096.
	SCRAMIterations int `yaml:"scram_iterations"`
	// MaxSCRAMIterations bounds the iterations of a stored credential that a login
	// may use: a credential in etcd with more is not used (its account cannot log in
	// until its password is set again), so no attempt costs more PBKDF2 work than
	// this. At least scram_iterations. Default: 100000.
	MaxSCRAMIterations int `yaml:"max_scram_iterations"`
}

// loopbackAddr reports whether host:port binds a loopback address only (an IP in
// 127.0.0.0/8 or ::1, or "localhost"); "0.0.0.0", an empty host or a name do not.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// AdminConfig configures the admin HTTP listener (key `admin`).
type AdminConfig struct {
	// PProf serves Go's profiles under /debug/pprof/ (CPU profiles, traces,
	// heap dumps: for load tests, not for production). Default: false.
	PProf bool `yaml:"pprof"`
}

// LogConfig configures logging (key `log`).
type LogConfig struct {
	// Level is the least severe level logged: "debug", "info", "warn" or
	// "error". Default: "info".
	Level string `yaml:"level"`
	// Format is "text" (slog text handler) or "json". Default: "text".
	Format string `yaml:"format"`
}

// SlogLevel returns Level as a slog.Level (info for an unknown level).
func (l LogConfig) SlogLevel() slog.Level {
	switch strings.ToLower(l.Level) {
	case LogLevelDebug:
		return slog.LevelDebug
	case LogLevelWarn:
		return slog.LevelWarn
	case LogLevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Default returns a configuration with every default filled in: one node for
// host "localhost" on loopback, with an embedded etcd under ./data.
func Default() *Config {
	id := DefaultNodeID
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \t\n/") {
		id = h
	}
	return &Config{
		Node: NodeConfig{ID: id, DataDir: "./data", GCHeadroomBytes: 32 << 20, DrainTimeout: Duration(10 * time.Second)},
		Listen: ListenConfig{
			C2S:       "127.0.0.1:5222",
			C2STLS:    "127.0.0.1:5223",
			Component: "127.0.0.1:5347",
			Admin:     "127.0.0.1:5280",
		},
		TLS: TLSConfig{Required: true},
		S2S: S2SConfig{RequireEncryption: true, Dialback: true, ConnectTimeout: Duration(10 * time.Second),
			MaxQueuedBytes: 1 << 20, MaxStreamsPerDomain: 4, BytesPerSecond: 4 << 20, StanzasPerSecond: 20000,
			IdleTimeout: Duration(5 * time.Minute)},
		Etcd: EtcdConfig{
			Endpoints:        []string{},
			Prefix:           "/switchboard",
			DialTimeout:      Duration(5 * time.Second),
			MaxResponseBytes: 32 << 20,
			Embedded:         EmbeddedEtcdConfig{Client: "127.0.0.1:2379", Peer: "127.0.0.1:2380"},
		},
		Cluster: ClusterConfig{
			Bind:           "127.0.0.1:7946",
			Remote:         "127.0.0.1:8946",
			Join:           []string{},
			ProbeInterval:  Duration(time.Second),
			SuspicionMult:  3,
			MaxQueuedBytes: 64 << 20,
		},
		Hosts:      []HostConfig{{Domain: "localhost"}},
		Components: []ComponentConfig{},
		Delegation: DelegationConfig{Timeout: Duration(30 * time.Second), StallAfter: Duration(time.Second)},
		Limits: LimitsConfig{
			MaxStanzaBytes:          262144,
			NegotiationTimeout:      Duration(30 * time.Second),
			IdleTimeout:             Duration(10 * time.Minute),
			ParkAfter:               Duration(5 * time.Second),
			WriteTimeout:            Duration(30 * time.Second),
			MaxAuthAttempts:         3,
			MaxSendQueueBytes:       8 << 20,
			CSIMaxHeldBytes:         64 << 10,
			SMResumeTimeout:         Duration(300 * time.Second),
			SMMaxUnacked:            500,
			SMMaxUnackedBytes:       1 << 20,
			OfflineMaxMessages:      100,
			OfflineMaxBytes:         256 << 10,
			MaxRosterItems:          1000,
			BlocklistMaxItems:       1000,
			MaxPendingWork:          64,
			MaxInflightIQs:          256,
			MaxEtcdRequests:         64,
			MaxUnauthenticated:      4096,
			MaxUnauthenticatedPerIP: 64,
			AuthFailuresPerIP:       10,
			AuthFailureWindow:       Duration(10 * time.Minute),
			MaxSessionsPerUser:      10,
			ClientBytesPerSecond:    262144,
			ClientStanzasPerSecond:  2000,
			ClientRateBurst:         Duration(2 * time.Second),
		},
		Accounts: AccountsConfig{SCRAMIterations: MinSCRAMIterations, MaxSCRAMIterations: 100000},
		Log:      LogConfig{Level: LogLevelInfo, Format: LogFormatText},
	}
}

// Load reads the YAML file at path on top of [Default], applies the
// SWITCHBOARD_* environment variables ([Config.ApplyEnv]) and validates the
// result ([Config.Validate]). An empty path means no file: defaults plus
// environment. Unknown keys in the file are errors. Every error names the file.
func Load(path string) (*Config, error) {
	return load(path, os.Environ())
}

func load(path string, environ []string) (*Config, error) {
	c := Default()
	src := "environment"
	if path != "" {
		src = path
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := c.decode(data); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := c.ApplyEnv(environ); err != nil {
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	if err := c.readSecretFiles(); err != nil {
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	return c, nil
}

// readSecretFiles fills components[].secret from components[].secret_file (read at
// every load, so a SIGHUP picks up a rotated secret). Surrounding whitespace is trimmed.
func (c *Config) readSecretFiles() error {
	for i := range c.Components {
		comp := &c.Components[i]
		if comp.SecretFile == "" {
			continue
		}
		key := fmt.Sprintf("components[%d].secret_file", i)
		if comp.Secret != "" {
			return &FieldError{Path: key, Problem: "set either secret or secret_file, not both"}
		}
		b, err := os.ReadFile(comp.SecretFile)
		if err != nil {
			return &FieldError{Path: key, Problem: err.Error()}
		}
		comp.Secret = strings.TrimSpace(string(b))
		if comp.Secret == "" {
			return &FieldError{Path: key, Problem: comp.SecretFile + " is empty"}
		}
	}
	return nil
}

// decode reads one YAML document onto c; keys absent from the document keep
// their current value.
func (c *Config) decode(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) { // empty file: defaults
			return nil
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return err
		}
		return fmt.Errorf("line %d: more than one YAML document", extra.Line)
	}
	return nil
}

// FieldError is one problem found by [Config.Validate].
type FieldError struct {
	// Path is the key path, e.g. "limits.max_stanza_bytes" or "hosts[1].domain".
	Path string
	// Problem says what is wrong, e.g. "must be > 0".
	Problem string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Problem }

// Validate checks the whole configuration and reports every problem at once,
// joined with errors.Join; each one is a *[FieldError] naming its key path.
// It first normalizes c: host domains, component JIDs, delegation JIDs and
// log settings are lowercased, and empty per-component settings
// (delegation_ns, balance) get their defaults.
func (c *Config) Validate() error {
	c.normalize()
	var v validator

	// node
	if c.Node.ID == "" {
		v.add("node.id", "must not be empty")
	} else if strings.ContainsAny(c.Node.ID, " \t\r\n/") {
		v.addf("node.id", "%q must not contain whitespace or \"/\"", c.Node.ID)
	}
	if c.Node.DataDir == "" {
		v.add("node.data_dir", "must not be empty")
	}

	// listen and other addresses; empty listen addresses are disabled listeners.
	addrs := addrSet{}
	v.addr(addrs, "listen.c2s", c.Listen.C2S, false)
	v.addr(addrs, "listen.c2s_tls", c.Listen.C2STLS, false)
	v.addr(addrs, "listen.component", c.Listen.Component, false)
	v.addr(addrs, "listen.admin", c.Listen.Admin, false)
	v.addr(addrs, "listen.s2s", c.Listen.S2S, false)
	v.positive("s2s.connect_timeout", int64(c.S2S.ConnectTimeout))
	v.positive("s2s.max_queued_bytes", int64(c.S2S.MaxQueuedBytes))
	v.positive("s2s.max_streams_per_domain", int64(c.S2S.MaxStreamsPerDomain))
	v.nonNegative("s2s.bytes_per_second", int64(c.S2S.BytesPerSecond), "0 = no limit")
	v.nonNegative("s2s.stanzas_per_second", int64(c.S2S.StanzasPerSecond), "0 = no limit")
	v.positive("s2s.idle_timeout", int64(c.S2S.IdleTimeout))
	for d, a := range c.S2S.StaticRoutes {
		v.addr(nil, "s2s.static_routes."+d, a, true)
	}
	if c.Cluster.Bind != "" {
		v.addr(addrs, "cluster.bind", c.Cluster.Bind, true)
		v.addr(addrs, "cluster.remote", c.Cluster.Remote, true)
		v.positive("cluster.probe_interval", int64(c.Cluster.ProbeInterval))
		v.positive("cluster.suspicion_mult", int64(c.Cluster.SuspicionMult))
		ct := c.Cluster.TLS
		if ct.Set() && (ct.Cert == "" || ct.Key == "" || ct.CA == "") {
			v.add("cluster.tls", "cert, key and ca go together")
		}
		secured := c.Cluster.SecretKeyFile != "" && ct.Cert != "" && ct.Key != "" && ct.CA != ""
		if !secured && !c.Cluster.Insecure {
			for _, a := range []struct{ key, addr string }{{"cluster.bind", c.Cluster.Bind}, {"cluster.remote", c.Cluster.Remote}} {
				if !loopbackAddr(a.addr) {
					v.addf(a.key, "%q is reachable off this machine: set cluster.secret_key_file and cluster.tls"+
						" (switchboard cluster secrets), or cluster.insecure: true to accept any peer", a.addr)
				}
			}
		}
	}
	if c.Cluster.RemoteAdvertise != "" {
		v.addr(nil, "cluster.remote_advertise", c.Cluster.RemoteAdvertise, true)
	}
	if c.Cluster.Advertise != "" {
		v.addr(nil, "cluster.advertise", c.Cluster.Advertise, true)
	}
	for i, j := range c.Cluster.Join {
		if strings.TrimSpace(j) == "" {
			v.add(fmt.Sprintf("cluster.join[%d]", i), "must not be empty")
		}
	}

	// tls
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		if c.TLS.Cert == "" {
			v.add("tls.cert", "must be set when tls.key is set (set both or neither)")
		} else {
			v.add("tls.key", "must be set when tls.cert is set (set both or neither)")
		}
	}

	// etcd
	for i, e := range c.Etcd.Endpoints {
		if strings.TrimSpace(e) == "" {
			v.add(fmt.Sprintf("etcd.endpoints[%d]", i), "must not be empty")
		}
	}
	switch p := c.Etcd.Prefix; {
	case !strings.HasPrefix(p, "/"):
		v.addf("etcd.prefix", "%q must start with \"/\"", p)
	case strings.HasSuffix(p, "/"):
		v.addf("etcd.prefix", "%q must not end with \"/\"", p)
	}
	v.positive("etcd.dial_timeout", int64(c.Etcd.DialTimeout))
	if c.EmbeddedEtcd() {
		v.addr(addrs, "etcd.embedded.client", c.Etcd.Embedded.Client, true)
		v.addr(addrs, "etcd.embedded.peer", c.Etcd.Embedded.Peer, true)
	}

	// hosts
	if len(c.Hosts) == 0 {
		v.add("hosts", "at least one host is required")
	}
	domains := map[string]bool{}
	for i, h := range c.Hosts {
		p := fmt.Sprintf("hosts[%d]", i)
		if msg := checkDomain(h.Domain); msg != "" {
			v.add(p+".domain", msg)
		} else if domains[h.Domain] {
			v.addf(p+".domain", "duplicate %q", h.Domain)
		}
		domains[h.Domain] = true
		for _, ns := range slices.Sorted(maps.Keys(h.Delegations)) {
			r := h.Delegations[ns]
			rp := fmt.Sprintf("%s.delegations[%q]", p, ns)
			switch ns {
			case "":
				v.add(rp, "namespace must not be empty")
			case DelegationNS2, DelegationNS1:
				v.addf(rp, "namespace %s cannot be delegated", ns)
			}
			if r.JID == "" {
				v.add(rp+".jid", "must not be empty")
			} else if strings.Contains(r.JID, "/") {
				v.addf(rp+".jid", "%q must be a bare JID (no \"/\")", r.JID)
			}
			for k, a := range r.Filtering {
				if strings.TrimSpace(a) == "" {
					v.add(fmt.Sprintf("%s.filtering[%d]", rp, k), "must not be empty")
				}
			}
		}
	}

	// components
	jids := map[string]bool{}
	for i, comp := range c.Components {
		p := fmt.Sprintf("components[%d]", i)
		switch {
		case comp.JID == "":
			v.add(p+".jid", "must not be empty")
		case strings.Contains(comp.JID, "@"):
			v.addf(p+".jid", "%q must be a domain (no \"@\")", comp.JID)
		case strings.Contains(comp.JID, "/"):
			v.addf(p+".jid", "%q must be a domain (no \"/\")", comp.JID)
		default:
			if msg := checkDomain(comp.JID); msg != "" {
				v.add(p+".jid", msg)
			} else if jids[comp.JID] {
				v.addf(p+".jid", "duplicate %q", comp.JID)
			} else if domains[comp.JID] {
				v.addf(p+".jid", "%q is also a host domain", comp.JID)
			}
		}
		jids[comp.JID] = true
		// A component's domain must not be a parent of a served host or of another
		// component: it would stand for their addresses (RFC 6120 trusts a component
		// with its whole domain).
		for _, h := range c.Hosts {
			if comp.JID != "" && strings.HasSuffix(h.Domain, "."+comp.JID) {
				v.addf(p+".jid", "%q is a parent of the host domain %q", comp.JID, h.Domain)
			}
		}
		for _, o := range c.Components {
			if comp.JID != "" && strings.HasSuffix(o.JID, "."+comp.JID) {
				v.addf(p+".jid", "%q is a parent of the component %q", comp.JID, o.JID)
			}
		}
		if comp.Secret == "" {
			v.add(p+".secret", "must not be empty")
		}
		if comp.DelegationNS != DelegationNS2 && comp.DelegationNS != DelegationNS1 {
			v.addf(p+".delegation_ns", "%q is not one of %s, %s", comp.DelegationNS, DelegationNS2, DelegationNS1)
		}
		switch comp.Balance {
		case BalanceRoundRobin, BalanceLeastPending, BalanceSender:
		default:
			v.addf(p+".balance", "%q is not one of %s, %s, %s",
				comp.Balance, BalanceRoundRobin, BalanceLeastPending, BalanceSender)
		}
		for _, e := range ValidatePrivileges(comp.Privileges) {
			v.add(p+".privileges."+e.Key, e.Problem)
		}
	}

	// delegation, limits, accounts
	v.positive("delegation.timeout", int64(c.Delegation.Timeout))
	v.nonNegative("delegation.stall_after", int64(c.Delegation.StallAfter), "0 = off")
	v.positive("limits.max_stanza_bytes", int64(c.Limits.MaxStanzaBytes))
	v.positive("limits.negotiation_timeout", int64(c.Limits.NegotiationTimeout))
	v.nonNegative("limits.park_after", int64(c.Limits.ParkAfter), "0 = never")
	v.nonNegative("node.gc_headroom_bytes", int64(c.Node.GCHeadroomBytes), "0 = GOGC alone")
	v.nonNegative("node.drain_timeout", int64(c.Node.DrainTimeout), "0 = close at once")
	v.nonNegative("limits.idle_timeout", int64(c.Limits.IdleTimeout), "0 = never")
	v.positive("limits.write_timeout", int64(c.Limits.WriteTimeout))
	v.positive("limits.max_auth_attempts", int64(c.Limits.MaxAuthAttempts))
	v.positive("limits.max_send_queue_bytes", int64(c.Limits.MaxSendQueueBytes))
	v.nonNegative("limits.csi_max_held_bytes", int64(c.Limits.CSIMaxHeldBytes), "0 = hold nothing")
	v.nonNegative("limits.sm_resume_timeout", int64(c.Limits.SMResumeTimeout), "0 = no resumption")
	v.positive("limits.sm_max_unacked", int64(c.Limits.SMMaxUnacked))
	v.positive("limits.sm_max_unacked_bytes", int64(c.Limits.SMMaxUnackedBytes))
	v.nonNegative("limits.offline_max_messages", int64(c.Limits.OfflineMaxMessages), "0 = store nothing")
	v.nonNegative("limits.offline_max_bytes", int64(c.Limits.OfflineMaxBytes), "0 = store nothing")
	v.positive("limits.max_roster_items", int64(c.Limits.MaxRosterItems))
	v.positive("limits.blocklist_max_items", int64(c.Limits.BlocklistMaxItems))
	v.positive("limits.max_pending_work", int64(c.Limits.MaxPendingWork))
	v.positive("limits.max_inflight_iqs", int64(c.Limits.MaxInflightIQs))
	v.positive("limits.max_etcd_requests", int64(c.Limits.MaxEtcdRequests))
	v.positive("cluster.max_queued_bytes", int64(c.Cluster.MaxQueuedBytes))
	v.positive("etcd.max_response_bytes", int64(c.Etcd.MaxResponseBytes))
	v.positive("limits.max_unauthenticated", int64(c.Limits.MaxUnauthenticated))
	v.positive("limits.max_unauthenticated_per_ip", int64(c.Limits.MaxUnauthenticatedPerIP))
	v.positive("limits.auth_failures_per_ip", int64(c.Limits.AuthFailuresPerIP))
	v.positive("limits.auth_failure_window", int64(c.Limits.AuthFailureWindow))
	v.positive("limits.max_sessions_per_user", int64(c.Limits.MaxSessionsPerUser))
	if c.Limits.ClientBytesPerSecond < 0 || c.Limits.ClientStanzasPerSecond < 0 {
		v.add("limits.client_bytes_per_second", "client rates must be >= 0 (0: no limit)")
	}
	if (c.Limits.ClientBytesPerSecond > 0 || c.Limits.ClientStanzasPerSecond > 0) && c.Limits.ClientRateBurst <= 0 {
		v.add("limits.client_rate_burst", "must be > 0 with a client rate")
	}
	if b := c.Limits.ClientBytesPerSecond; b > 0 && float64(b)*c.Limits.ClientRateBurst.D().Seconds() < float64(c.Limits.MaxStanzaBytes) {
		v.add("limits.client_bytes_per_second", "with limits.client_rate_burst, must let one stanza of limits.max_stanza_bytes through")
	}
	if c.Limits.MaxSendQueueBytes > 0 && c.Limits.MaxStanzaBytes > c.Limits.MaxSendQueueBytes {
		v.addf("limits.max_send_queue_bytes", "must be >= limits.max_stanza_bytes (%d)", c.Limits.MaxStanzaBytes)
	}
	if c.Accounts.MaxSCRAMIterations < c.Accounts.SCRAMIterations {
		v.addf("accounts.max_scram_iterations", "must be >= accounts.scram_iterations (%d)", c.Accounts.SCRAMIterations)
	}
	if c.Accounts.SCRAMIterations < MinSCRAMIterations {
		v.addf("accounts.scram_iterations", "must be >= %d", MinSCRAMIterations)
	}

	// log
	switch c.Log.Level {
	case LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError:
	default:
		v.addf("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case LogFormatText, LogFormatJSON:
	default:
		v.addf("log.format", "%q is not one of text, json", c.Log.Format)
	}
	return errors.Join(v.errs...)
}

// normalize lowercases case-insensitive values and fills per-entry defaults
// that decoding a list cannot keep (a decoded list starts from zero values).
func (c *Config) normalize() {
	for i := range c.Hosts {
		h := &c.Hosts[i]
		h.Domain = strings.ToLower(strings.TrimSpace(h.Domain))
		for ns, r := range h.Delegations {
			r.JID = strings.ToLower(strings.TrimSpace(r.JID))
			h.Delegations[ns] = r
		}
	}
	for i := range c.Components {
		comp := &c.Components[i]
		comp.JID = strings.ToLower(strings.TrimSpace(comp.JID))
		if comp.DelegationNS == "" {
			comp.DelegationNS = DelegationNS2
		}
		if comp.Balance == "" {
			comp.Balance = BalanceRoundRobin
		}
	}
	c.Log.Level = strings.ToLower(c.Log.Level)
	c.Log.Format = strings.ToLower(c.Log.Format)
}

// Host returns the host with the given domain (case-insensitive), or nil.
func (c *Config) Host(domain string) *HostConfig {
	for i := range c.Hosts {
		if strings.EqualFold(c.Hosts[i].Domain, domain) {
			return &c.Hosts[i]
		}
	}
	return nil
}

// Component returns the component with the given JID (case-insensitive), or nil.
func (c *Config) Component(jid string) *ComponentConfig {
	for i := range c.Components {
		if strings.EqualFold(c.Components[i].JID, jid) {
			return &c.Components[i]
		}
	}
	return nil
}

// EmbeddedEtcd reports whether the node runs an embedded etcd, which it does
// when no external etcd.endpoints are configured.
func (c *Config) EmbeddedEtcd() bool { return len(c.Etcd.Endpoints) == 0 }

type validator struct{ errs []error }

func (v *validator) add(path, problem string) {
	v.errs = append(v.errs, &FieldError{Path: path, Problem: problem})
}

func (v *validator) addf(path, format string, args ...any) {
	v.add(path, fmt.Sprintf(format, args...))
}

func (v *validator) positive(path string, n int64) {
	if n <= 0 {
		v.add(path, "must be > 0")
	}
}

// nonNegative refuses a negative value; zero means what zeroMeans says.
func (v *validator) nonNegative(path string, n int64, zeroMeans string) {
	if n < 0 {
		v.add(path, "must be >= 0 ("+zeroMeans+")")
	}
}

// addrSet remembers which key uses which fixed host:port, to catch two
// listeners configured on the same address. Port 0 (any free port) is exempt.
type addrSet map[string]string

// addr checks a host:port address; an empty one is an error only if required.
// With a non-nil seen it also reports an address already used by another key.
func (v *validator) addr(seen addrSet, path, addr string, required bool) {
	if addr == "" {
		if required {
			v.add(path, "must not be empty")
		}
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.addf(path, "%q is not a host:port address", addr)
		return
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		v.addf(path, "%q: port must be a number 0-65535", addr)
		return
	}
	if seen == nil || n == 0 {
		return
	}
	if other, ok := seen[addr]; ok {
		v.addf(path, "%q is already used by %s", addr, other)
		return
	}
	seen[addr] = path
}

// checkDomain returns what is wrong with a lowercased DNS domain name, or "".
func checkDomain(d string) string {
	if d == "" {
		return "must not be empty"
	}
	if len(d) > 253 {
		return fmt.Sprintf("%q is longer than 253 characters", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return fmt.Sprintf("%q is not a valid domain (empty label)", d)
		}
		if len(label) > 63 {
			return fmt.Sprintf("%q is not a valid domain (label longer than 63 characters)", d)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("%q is not a valid domain (label starts or ends with \"-\")", d)
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-') {
				return fmt.Sprintf("%q is not a valid domain (letters, digits, \"-\" and \".\" only; use the punycode form of an IDN)", d)
			}
		}
	}
	return ""
}
