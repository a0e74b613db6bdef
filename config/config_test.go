package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// writeFile writes a config file into a fresh temporary directory.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "switchboard.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mustLoad loads with an explicit (empty unless given) environment, so the
// tests do not depend on the developer's SWITCHBOARD_* variables.
func mustLoad(t *testing.T, content string, environ ...string) *Config {
	t.Helper()
	c, err := load(writeFile(t, content), environ)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return c
}

func loadErr(t *testing.T, content string, environ ...string) (string, error) {
	t.Helper()
	p := writeFile(t, content)
	_, err := load(p, environ)
	if err == nil {
		t.Fatalf("load succeeded, want an error")
	}
	if !strings.Contains(err.Error(), p) {
		t.Errorf("error %q does not name the file %s", err, p)
	}
	return p, err
}

func TestDefaultValidates(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if c.Node.ID == "" || c.Node.DataDir != "./data" || c.Node.GCHeadroomBytes != 32<<20 {
		t.Errorf("node = %+v", c.Node)
	}
	if c.Listen != (ListenConfig{C2S: "127.0.0.1:5222", C2STLS: "127.0.0.1:5223", Component: "127.0.0.1:5347", Admin: "127.0.0.1:5280"}) {
		t.Errorf("listen = %+v", c.Listen)
	}
	if !c.TLS.Required || c.TLS.Cert != "" || c.TLS.Key != "" {
		t.Errorf("tls = %+v", c.TLS)
	}
	if !c.EmbeddedEtcd() || c.Etcd.Prefix != "/switchboard" || c.Etcd.DialTimeout.D() != 5*time.Second ||
		c.Etcd.Embedded != (EmbeddedEtcdConfig{Client: "127.0.0.1:2379", Peer: "127.0.0.1:2380"}) {
		t.Errorf("etcd = %+v", c.Etcd)
	}
	if c.Cluster.Bind != "127.0.0.1:7946" || c.Cluster.Remote != "127.0.0.1:8946" || c.Cluster.Advertise != "" || len(c.Cluster.Join) != 0 {
		t.Errorf("cluster = %+v", c.Cluster)
	}
	if len(c.Hosts) != 1 || c.Host("localhost") == nil || len(c.Components) != 0 {
		t.Errorf("hosts = %+v, components = %+v", c.Hosts, c.Components)
	}
	if c.Delegation.Timeout.D() != 30*time.Second {
		t.Errorf("delegation = %+v", c.Delegation)
	}
	want := LimitsConfig{
		MaxStanzaBytes: 262144, NegotiationTimeout: Duration(30 * time.Second),
		IdleTimeout: Duration(10 * time.Minute), ParkAfter: Duration(5 * time.Second), WriteTimeout: Duration(30 * time.Second),
		MaxAuthAttempts: 3, MaxSendQueueBytes: 8388608, CSIMaxHeldBytes: 65536, SMResumeTimeout: Duration(300 * time.Second), SMMaxUnacked: 500, SMMaxUnackedBytes: 1 << 20, OfflineMaxMessages: 100, OfflineMaxBytes: 262144, MaxRosterItems: 1000, BlocklistMaxItems: 1000, MaxPendingWork: 64, MaxInflightIQs: 256, MaxEtcdRequests: 64,
		MaxUnauthenticated: 4096, MaxUnauthenticatedPerIP: 64,
		AuthFailuresPerIP: 10, AuthFailureWindow: Duration(10 * time.Minute), MaxSessionsPerUser: 10,
		ClientBytesPerSecond: 262144, ClientStanzasPerSecond: 2000, ClientRateBurst: Duration(2 * time.Second),
	}
	if c.Limits != want {
		t.Errorf("limits = %+v, want %+v", c.Limits, want)
	}
	if c.Accounts.SCRAMIterations != 4096 || c.Log != (LogConfig{Level: "info", Format: "text"}) {
		t.Errorf("accounts = %+v, log = %+v", c.Accounts, c.Log)
	}
}

func TestLoadNoFile(t *testing.T) {
	c, err := load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	_ = d.Validate()
	if !reflect.DeepEqual(c, d) {
		t.Errorf("load(\"\") = %+v, want defaults %+v", c, d)
	}
	// The environment still applies without a file.
	c, err = load("", []string{"SWITCHBOARD_LISTEN_C2S=0.0.0.0:5222"})
	if err != nil || c.Listen.C2S != "0.0.0.0:5222" {
		t.Errorf("load(\"\", env) = %+v, %v", c, err)
	}
	_, err = load("", []string{"SWITCHBOARD_LIMITS_MAX_STANZA_BYTES=0"})
	if err == nil || !strings.Contains(err.Error(), "limits.max_stanza_bytes: must be > 0") {
		t.Errorf("invalid env without file: %v", err)
	}
}

func TestLoadEmptyFileGivesDefaults(t *testing.T) {
	c := mustLoad(t, "# nothing here\n")
	if c.Listen.C2S != "127.0.0.1:5222" || len(c.Hosts) != 1 {
		t.Errorf("empty file: %+v", c)
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(p)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), p) {
		t.Errorf("Load(missing) = %v", err)
	}
}

const fullYAML = `
node: {id: node1, data_dir: /var/lib/switchboard, gc_headroom_bytes: 0, drain_timeout: 3s}
listen: {c2s: 0.0.0.0:5222, c2s_tls: "", component: 10.0.0.1:5347,
         admin: 127.0.0.1:5280}
tls: {cert: /etc/sb/cert.pem, key: /etc/sb/key.pem}
etcd: {endpoints: [http://etcd1:2379, http://etcd2:2379], prefix: /sb/prod, dial_timeout: 2s,
       embedded: {client: 127.0.0.1:2379, peer: 127.0.0.1:2380}}
cluster: {bind: 0.0.0.0:7946, advertise: 10.0.0.1:7946, remote: 0.0.0.0:8946, join: [node2.sb, "node3.sb:7946"],
          secret_key_file: /etc/sb/gossip.key, tls: {cert: /etc/sb/node1.pem, key: /etc/sb/node1.key, ca: /etc/sb/ca.pem}}
hosts:
  - domain: Localhost
    delegations:
      "urn:xmpp:mam:2": {jid: pubsub.localhost, filtering: [node]}
      "urn:xmpp:bookmarks:1": {jid: legacy.localhost}
  - domain: example.com
components:
  - {jid: pubsub.localhost, secret: "change-me"}
  - jid: legacy.localhost
    secret: "change-me"
    delegation_ns: "urn:xmpp:delegation:1"  # ejabberd-style component
    balance: least-pending
delegation: {timeout: 45s}
limits: {max_stanza_bytes: 65536, idle_timeout: 0s}
accounts: {scram_iterations: 10000}
log: {level: debug, format: json}
`

func TestLoadFull(t *testing.T) {
	c := mustLoad(t, fullYAML)
	if c.Node != (NodeConfig{ID: "node1", DataDir: "/var/lib/switchboard", DrainTimeout: Duration(3 * time.Second)}) {
		t.Errorf("node = %+v", c.Node)
	}
	if c.Listen != (ListenConfig{C2S: "0.0.0.0:5222", C2STLS: "", Component: "10.0.0.1:5347", Admin: "127.0.0.1:5280"}) {
		t.Errorf("listen = %+v", c.Listen)
	}
	if c.TLS != (TLSConfig{Cert: "/etc/sb/cert.pem", Key: "/etc/sb/key.pem", Required: true}) {
		t.Errorf("tls = %+v", c.TLS)
	}
	if c.EmbeddedEtcd() || !slices.Equal(c.Etcd.Endpoints, []string{"http://etcd1:2379", "http://etcd2:2379"}) ||
		c.Etcd.Prefix != "/sb/prod" || c.Etcd.DialTimeout.D() != 2*time.Second {
		t.Errorf("etcd = %+v", c.Etcd)
	}
	if c.Cluster.Advertise != "10.0.0.1:7946" || !slices.Equal(c.Cluster.Join, []string{"node2.sb", "node3.sb:7946"}) ||
		c.Cluster.SecretKeyFile != "/etc/sb/gossip.key" || c.Cluster.Insecure ||
		c.Cluster.TLS != (ClusterTLS{Cert: "/etc/sb/node1.pem", Key: "/etc/sb/node1.key", CA: "/etc/sb/ca.pem"}) {
		t.Errorf("cluster = %+v", c.Cluster)
	}
	if len(c.Hosts) != 2 {
		t.Fatalf("hosts = %+v", c.Hosts)
	}
	h := c.Host("localhost")
	if h == nil || h.Domain != "localhost" {
		t.Fatalf("Host(localhost) = %+v (domain must be lowercased)", h)
	}
	if r := h.Delegations["urn:xmpp:mam:2"]; r.JID != "pubsub.localhost" || !slices.Equal(r.Filtering, []string{"node"}) {
		t.Errorf("mam rule = %+v", r)
	}
	if r := h.Delegations["urn:xmpp:bookmarks:1"]; r.JID != "legacy.localhost" || len(r.Filtering) != 0 {
		t.Errorf("bookmarks rule = %+v", r)
	}
	if c.Host("EXAMPLE.com") == nil || c.Host("other.org") != nil {
		t.Errorf("Host lookups wrong")
	}
	p := c.Component("pubsub.localhost")
	if p == nil || p.Secret != "change-me" || p.DelegationNS != DelegationNS2 || p.Balance != BalanceRoundRobin {
		t.Errorf("pubsub component (defaults filled) = %+v", p)
	}
	l := c.Component("Legacy.Localhost")
	if l == nil || l.DelegationNS != DelegationNS1 || l.Balance != BalanceLeastPending {
		t.Errorf("legacy component = %+v", l)
	}
	if c.Component("localhost") != nil {
		t.Errorf("Component(localhost) should be nil")
	}
	if c.Delegation.Timeout.D() != 45*time.Second {
		t.Errorf("delegation = %+v", c.Delegation)
	}
	// Keys set in the file change; keys left out keep their defaults.
	if c.Limits.MaxStanzaBytes != 65536 || c.Limits.IdleTimeout != 0 ||
		c.Limits.NegotiationTimeout.D() != 30*time.Second || c.Limits.MaxAuthAttempts != 3 ||
		c.Limits.MaxSendQueueBytes != 8388608 {
		t.Errorf("limits = %+v", c.Limits)
	}
	if c.Accounts.SCRAMIterations != 10000 || c.Log.Level != "debug" || c.Log.Format != "json" {
		t.Errorf("accounts = %+v, log = %+v", c.Accounts, c.Log)
	}
	if c.Log.SlogLevel().String() != "DEBUG" {
		t.Errorf("SlogLevel = %v", c.Log.SlogLevel())
	}
}

func TestLoadPartialSectionKeepsDefaults(t *testing.T) {
	c := mustLoad(t, "listen: {c2s: 0.0.0.0:5222}\netcd: {embedded: {peer: 127.0.0.1:12380}}\n")
	if c.Listen.C2S != "0.0.0.0:5222" || c.Listen.C2STLS != "127.0.0.1:5223" || c.Listen.Admin != "127.0.0.1:5280" {
		t.Errorf("listen = %+v", c.Listen)
	}
	if c.Etcd.Embedded.Client != "127.0.0.1:2379" || c.Etcd.Embedded.Peer != "127.0.0.1:12380" || c.Etcd.Prefix != "/switchboard" {
		t.Errorf("etcd = %+v", c.Etcd)
	}
}

func TestTLSRequiredFalseHonoured(t *testing.T) {
	c := mustLoad(t, "tls: {required: false}\n")
	if c.TLS.Required {
		t.Errorf("explicit tls.required: false was replaced by the default")
	}
	c = mustLoad(t, "tls: {cert: \"\"}\n")
	if !c.TLS.Required {
		t.Errorf("tls.required left out should default to true")
	}
	c = mustLoad(t, "tls: {required: false}\n", "SWITCHBOARD_TLS_REQUIRED=true")
	if !c.TLS.Required {
		t.Errorf("environment should override the file")
	}
}

func TestPrivilegesValidation(t *testing.T) {
	c := mustLoad(t, "components: [{jid: a.localhost, secret: s, privileges: {message: outgoing, roster: both, presence: managed_entity, iq: {\"urn:x\": get}}}]\n")
	if pr := c.Components[0].Privileges; pr.Message != "outgoing" || pr.Roster != "both" || pr.Presence != "managed_entity" || pr.IQ["urn:x"] != "get" {
		t.Fatalf("privileges %+v", pr)
	}
	for yaml, want := range map[string]string{
		"components: [{jid: a.localhost, secret: s, privileges: {message: all}}]\n":          "components[0].privileges.message",
		"components: [{jid: a.localhost, secret: s, privileges: {roster: all}}]\n":           "components[0].privileges.roster: \"all\" is not one of",
		"components: [{jid: a.localhost, secret: s, privileges: {presence: roster}}]\n":      "components[0].privileges.presence: roster needs roster: get or both",
		"components: [{jid: a.localhost, secret: s, privileges: {presence: everyone}}]\n":    "components[0].privileges.presence",
		"components: [{jid: a.localhost, secret: s, privileges: {iq: {\"urn:x\": read}}}]\n": "components[0].privileges.iq.urn:x",
	} {
		if _, err := loadErr(t, yaml); !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v does not say %q", yaml, err, want)
		}
	}
}

func TestLoadUnknownKeys(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"listen: {c2z: 127.0.0.1:5222}\n", "c2z"},
		{"limit: {max_stanza_bytes: 1}\n", "limit"},
		{"hosts: [{domain: localhost, delegation: {}}]\n", "delegation"},
		{"components: [{jid: a.localhost, secret: s, privileges: {rooster: both}}]\n", "rooster"},
	} {
		_, err := loadErr(t, tc.yaml)
		if !strings.Contains(err.Error(), "field "+tc.key+" not found") {
			t.Errorf("%q: error %q does not name key %q", tc.yaml, err, tc.key)
		}
	}
}

func TestLoadBadValues(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"delegation: {timeout: 30}\n", `invalid duration "30"`},
		{"delegation: {timeout: soon}\n", `invalid duration "soon"`},
		{"delegation: {timeout: [1]}\n", "a duration must be a string"},
		{"limits: {max_stanza_bytes: lots}\n", "lots"},
		{"tls: {required: maybe}\n", "maybe"},
		{"node: {id: a}\n---\nnode: {id: b}\n", "more than one YAML document"},
		{"listen: [1, 2]\n", "cannot unmarshal"},
	} {
		_, err := loadErr(t, tc.yaml)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"node id", func(c *Config) { c.Node.ID = "" }, "node.id: must not be empty"},
		{"node id slash", func(c *Config) { c.Node.ID = "a/b" }, "node.id: "},
		{"data dir", func(c *Config) { c.Node.DataDir = "" }, "node.data_dir: must not be empty"},
		{"listen addr", func(c *Config) { c.Listen.C2S = "localhost" }, `listen.c2s: "localhost" is not a host:port`},
		{"listen port", func(c *Config) { c.Listen.Admin = "127.0.0.1:http" }, "listen.admin: "},
		{"listen clash", func(c *Config) { c.Listen.C2STLS = c.Listen.C2S }, "listen.c2s_tls: \"127.0.0.1:5222\" is already used by listen.c2s"},
		{"cluster bind", func(c *Config) { c.Cluster.Bind = "nope" }, "cluster.bind: "},
		{"cluster remote empty", func(c *Config) { c.Cluster.Remote = "" }, "cluster.remote: must not be empty"},
		{"probe interval", func(c *Config) { c.Cluster.ProbeInterval = 0 }, "cluster.probe_interval: must be > 0"},
		{"cluster remote", func(c *Config) { c.Cluster.Remote = "x" }, "cluster.remote: "},
		{"cluster advertise", func(c *Config) { c.Cluster.Advertise = "10.0.0.1" }, "cluster.advertise: "},
		{"cluster join", func(c *Config) { c.Cluster.Join = []string{"a", " "} }, "cluster.join[1]: must not be empty"},
		{"tls key only", func(c *Config) { c.TLS.Key = "k.pem" }, "tls.cert: must be set when tls.key is set"},
		{"tls cert only", func(c *Config) { c.TLS.Cert = "c.pem" }, "tls.key: must be set when tls.cert is set"},
		{"etcd endpoint", func(c *Config) { c.Etcd.Endpoints = []string{""} }, "etcd.endpoints[0]: must not be empty"},
		{"etcd prefix start", func(c *Config) { c.Etcd.Prefix = "switchboard" }, `etcd.prefix: "switchboard" must start with "/"`},
		{"etcd prefix end", func(c *Config) { c.Etcd.Prefix = "/switchboard/" }, `etcd.prefix: "/switchboard/" must not end with "/"`},
		{"etcd prefix empty", func(c *Config) { c.Etcd.Prefix = "" }, "etcd.prefix: "},
		{"etcd dial", func(c *Config) { c.Etcd.DialTimeout = 0 }, "etcd.dial_timeout: must be > 0"},
		{"embedded client", func(c *Config) { c.Etcd.Embedded.Client = "" }, "etcd.embedded.client: must not be empty"},
		{"embedded peer", func(c *Config) { c.Etcd.Embedded.Peer = "nope" }, "etcd.embedded.peer: "},
		{"no hosts", func(c *Config) { c.Hosts = nil }, "hosts: at least one host is required"},
		{"host empty", func(c *Config) { c.Hosts[0].Domain = "" }, "hosts[0].domain: must not be empty"},
		{"host invalid", func(c *Config) { c.Hosts[0].Domain = "exa mple.com" }, `hosts[0].domain: "exa mple.com" is not a valid domain`},
		{"host label", func(c *Config) { c.Hosts[0].Domain = "example..com" }, "hosts[0].domain: "},
		{"host duplicate", func(c *Config) {
			c.Hosts = append(c.Hosts, HostConfig{Domain: "example.com"}, HostConfig{Domain: "Example.COM"})
		}, `hosts[2].domain: duplicate "example.com"`},
		{"delegate ns2", func(c *Config) {
			c.Hosts[0].Delegations = map[string]DelegationRule{DelegationNS2: {JID: "a.localhost"}}
		}, `hosts[0].delegations["urn:xmpp:delegation:2"]: namespace urn:xmpp:delegation:2 cannot be delegated`},
		{"delegate ns1", func(c *Config) {
			c.Hosts[0].Delegations = map[string]DelegationRule{DelegationNS1: {JID: "a.localhost"}}
		}, `hosts[0].delegations["urn:xmpp:delegation:1"]: namespace urn:xmpp:delegation:1 cannot be delegated`},
		{"delegate empty ns", func(c *Config) {
			c.Hosts[0].Delegations = map[string]DelegationRule{"": {JID: "a.localhost"}}
		}, `hosts[0].delegations[""]: namespace must not be empty`},
		{"delegate no jid", func(c *Config) {
			c.Hosts[0].Delegations = map[string]DelegationRule{"urn:xmpp:mam:2": {}}
		}, `hosts[0].delegations["urn:xmpp:mam:2"].jid: must not be empty`},
		{"delegate full jid", func(c *Config) {
			c.Hosts[0].Delegations = map[string]DelegationRule{"urn:xmpp:mam:2": {JID: "a.localhost/r"}}
		}, `hosts[0].delegations["urn:xmpp:mam:2"].jid: "a.localhost/r" must be a bare JID`},
		{"delegate filtering", func(c *Config) {
			c.Hosts[0].Delegations = map[string]DelegationRule{"urn:xmpp:mam:2": {JID: "a.localhost", Filtering: []string{"node", ""}}}
		}, `hosts[0].delegations["urn:xmpp:mam:2"].filtering[1]: must not be empty`},
		{"component jid empty", func(c *Config) {
			c.Components = []ComponentConfig{{Secret: "s"}}
		}, "components[0].jid: must not be empty"},
		{"component jid at", func(c *Config) {
			c.Components = []ComponentConfig{{JID: "user@a.localhost", Secret: "s"}}
		}, `components[0].jid: "user@a.localhost" must be a domain (no "@")`},
		{"component jid slash", func(c *Config) {
			c.Components = []ComponentConfig{{JID: "a.localhost/res", Secret: "s"}}
		}, `components[0].jid: "a.localhost/res" must be a domain (no "/")`},
		{"component jid invalid", func(c *Config) {
			c.Components = []ComponentConfig{{JID: "a_b.localhost", Secret: "s"}}
		}, "components[0].jid: "},
		{"component duplicate", func(c *Config) {
			c.Components = []ComponentConfig{{JID: "a.localhost", Secret: "s"}, {JID: "A.localhost", Secret: "t"}}
		}, `components[1].jid: duplicate "a.localhost"`},
		{"component is host", func(c *Config) {
			c.Components = []ComponentConfig{{JID: "localhost", Secret: "s"}}
		}, `components[0].jid: "localhost" is also a host domain`},
		{"cluster off loopback without secrets", func(c *Config) {
			c.Cluster.Bind, c.Cluster.Remote = "0.0.0.0:7946", "10.0.0.1:8946"
		}, `cluster.bind: "0.0.0.0:7946" is reachable off this machine`},
		{"cluster remote off loopback without secrets", func(c *Config) {
			c.Cluster.Remote = "[::]:8946"
		}, `cluster.remote: "[::]:8946" is reachable off this machine`},
		{"cluster off loopback with the key only", func(c *Config) {
			c.Cluster.Bind, c.Cluster.SecretKeyFile = "10.0.0.1:7946", "/k"
		}, `cluster.bind: "10.0.0.1:7946" is reachable off this machine`},
		{"cluster tls incomplete", func(c *Config) {
			c.Cluster.TLS = ClusterTLS{Cert: "/c.pem", Key: "/c.key"}
		}, "cluster.tls: cert, key and ca go together"},
		{"component parent of a host", func(c *Config) {
			c.Hosts = []HostConfig{{Domain: "chat.example.test"}}
			c.Components = []ComponentConfig{{JID: "example.test", Secret: "s"}}
		}, `components[0].jid: "example.test" is a parent of the host domain "chat.example.test"`},
		{"component parent of a component", func(c *Config) {
			c.Components = []ComponentConfig{{JID: "pubsub.localhost", Secret: "s"}, {JID: "a.pubsub.localhost", Secret: "t"}}
		}, `components[0].jid: "pubsub.localhost" is a parent of the component "a.pubsub.localhost"`},
		{"component secret", func(c *Config) {
			c.Components = []ComponentConfig{{JID: "a.localhost"}}
		}, "components[0].secret: must not be empty"},
		{"component ns", func(c *Config) {
			c.Components = []ComponentConfig{{JID: "a.localhost", Secret: "s", DelegationNS: "urn:xmpp:delegation:3"}}
		}, `components[0].delegation_ns: "urn:xmpp:delegation:3" is not one of`},
		{"component balance", func(c *Config) {
			c.Components = []ComponentConfig{{JID: "a.localhost", Secret: "s", Balance: "random"}}
		}, `components[0].balance: "random" is not one of`},
		{"delegation timeout", func(c *Config) { c.Delegation.Timeout = 0 }, "delegation.timeout: must be > 0"},
		{"max stanza", func(c *Config) { c.Limits.MaxStanzaBytes = 0 }, "limits.max_stanza_bytes: must be > 0"},
		{"negotiation", func(c *Config) { c.Limits.NegotiationTimeout = -1 }, "limits.negotiation_timeout: must be > 0"},
		{"idle negative", func(c *Config) { c.Limits.IdleTimeout = Duration(-time.Second) }, "limits.idle_timeout: must be >= 0"},
		{"park negative", func(c *Config) { c.Limits.ParkAfter = Duration(-time.Second) }, "limits.park_after: must be >= 0"},
		{"gc headroom negative", func(c *Config) { c.Node.GCHeadroomBytes = -1 }, "node.gc_headroom_bytes: must be >= 0"},
		{"drain timeout negative", func(c *Config) { c.Node.DrainTimeout = -1 }, "node.drain_timeout: must be >= 0"},
		{"stall negative", func(c *Config) { c.Delegation.StallAfter = -1 }, "delegation.stall_after: must be >= 0"},
		{"write timeout", func(c *Config) { c.Limits.WriteTimeout = 0 }, "limits.write_timeout: must be > 0"},
		{"auth attempts", func(c *Config) { c.Limits.MaxAuthAttempts = 0 }, "limits.max_auth_attempts: must be > 0"},
		{"send queue", func(c *Config) { c.Limits.MaxSendQueueBytes = -5 }, "limits.max_send_queue_bytes: must be > 0"},
		{"csi negative", func(c *Config) { c.Limits.CSIMaxHeldBytes = -1 }, "limits.csi_max_held_bytes: must be >= 0"},
		{"send queue < stanza", func(c *Config) { c.Limits.MaxSendQueueBytes = 1000 }, "limits.max_send_queue_bytes: must be >= limits.max_stanza_bytes"},
		{"scram", func(c *Config) { c.Accounts.SCRAMIterations = 4095 }, "accounts.scram_iterations: must be >= 4096"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, `log.level: "verbose" is not one of`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format: "xml" is not one of`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %q, want it to contain %q", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(tc.want, fe.Path+":") {
				t.Errorf("errors.As FieldError = %+v, want path from %q", fe, tc.want)
			}
		})
	}
}

func TestValidateDisabledListenersAndPortZero(t *testing.T) {
	c := Default()
	c.Listen = ListenConfig{C2S: "127.0.0.1:0", C2STLS: "", Component: "127.0.0.1:0", Admin: ""}
	c.Cluster.Bind, c.Cluster.Remote = "127.0.0.1:0", "127.0.0.1:0"
	c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
	c.Etcd.Embedded = EmbeddedEtcdConfig{} // unused with external endpoints
	c.Limits.IdleTimeout = 0
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
}

func TestValidateCollectsAll(t *testing.T) {
	c := Default()
	c.Limits.MaxStanzaBytes = 0
	c.Hosts = append(c.Hosts, HostConfig{Domain: "localhost"})
	c.Log.Format = "xml"
	err := c.Validate()
	for _, want := range []string{
		"limits.max_stanza_bytes: must be > 0",
		`hosts[1].domain: duplicate "localhost"`,
		`log.format: "xml"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}

func TestLoadValidationErrorNamesFileAndKey(t *testing.T) {
	_, err := loadErr(t, "hosts:\n  - domain: example.com\n  - domain: example.com\n")
	if !strings.Contains(err.Error(), `hosts[1].domain: duplicate "example.com"`) {
		t.Errorf("error = %q", err)
	}
	_, err = loadErr(t, "hosts:\n  - domain: localhost\n    delegations:\n      \"urn:xmpp:delegation:2\": {jid: a.localhost}\n")
	if !strings.Contains(err.Error(), "urn:xmpp:delegation:2 cannot be delegated") {
		t.Errorf("error = %q", err)
	}
}

func TestApplyEnv(t *testing.T) {
	c := Default()
	err := c.ApplyEnv([]string{
		"PATH=/usr/bin",
		"SWITCHBOARD_NODE_ID=n7",
		"SWITCHBOARD_NODE_DATA_DIR=/srv/sb",
		"SWITCHBOARD_NODE_GC_HEADROOM_BYTES=67108864",
		"SWITCHBOARD_LISTEN_C2S=0.0.0.0:5222",
		"SWITCHBOARD_LISTEN_C2S_TLS=", // disables the listener
		"SWITCHBOARD_TLS_REQUIRED=false",
		"SWITCHBOARD_TLS_CERT=/c.pem",
		"SWITCHBOARD_ETCD_ENDPOINTS=http://e1:2379, http://e2:2379,,",
		"SWITCHBOARD_ETCD_PREFIX=/x",
		"SWITCHBOARD_ETCD_DIAL_TIMEOUT=1m30s",
		"SWITCHBOARD_ETCD_EMBEDDED_CLIENT=127.0.0.1:12379",
		"SWITCHBOARD_CLUSTER_JOIN=a:7946,b",
		"SWITCHBOARD_CLUSTER_ADVERTISE=10.1.1.1:7946",
		"SWITCHBOARD_DELEGATION_TIMEOUT=5s",
		"SWITCHBOARD_LIMITS_MAX_STANZA_BYTES=1024",
		"SWITCHBOARD_LIMITS_IDLE_TIMEOUT=0",
		"SWITCHBOARD_LIMITS_MAX_AUTH_ATTEMPTS=5",
		"SWITCHBOARD_ACCOUNTS_SCRAM_ITERATIONS=8192",
		"SWITCHBOARD_LOG_LEVEL=debug",
		"SWITCHBOARD_LOG_FORMAT=text",
		"SWITCHBOARD_LOG_FORMAT=json",     // later wins
		"SWITCHBOARD_CONFIG=/etc/sb.yaml", // not a key: ignored
	})
	if err != nil {
		t.Fatalf("ApplyEnv: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"node.id", c.Node.ID, "n7"},
		{"node.data_dir", c.Node.DataDir, "/srv/sb"},
		{"node.gc_headroom_bytes", c.Node.GCHeadroomBytes, int64(64 << 20)},
		{"listen.c2s", c.Listen.C2S, "0.0.0.0:5222"},
		{"listen.c2s_tls", c.Listen.C2STLS, ""},
		{"listen.component", c.Listen.Component, "127.0.0.1:5347"},
		{"tls.required", c.TLS.Required, false},
		{"tls.cert", c.TLS.Cert, "/c.pem"},
		{"etcd.endpoints", c.Etcd.Endpoints, []string{"http://e1:2379", "http://e2:2379"}},
		{"etcd.prefix", c.Etcd.Prefix, "/x"},
		{"etcd.dial_timeout", c.Etcd.DialTimeout.D(), 90 * time.Second},
		{"etcd.embedded.client", c.Etcd.Embedded.Client, "127.0.0.1:12379"},
		{"etcd.embedded.peer", c.Etcd.Embedded.Peer, "127.0.0.1:2380"},
		{"cluster.join", c.Cluster.Join, []string{"a:7946", "b"}},
		{"cluster.advertise", c.Cluster.Advertise, "10.1.1.1:7946"},
		{"delegation.timeout", c.Delegation.Timeout.D(), 5 * time.Second},
		{"limits.max_stanza_bytes", c.Limits.MaxStanzaBytes, 1024},
		{"limits.idle_timeout", c.Limits.IdleTimeout.D(), time.Duration(0)},
		{"limits.max_auth_attempts", c.Limits.MaxAuthAttempts, 5},
		{"accounts.scram_iterations", c.Accounts.SCRAMIterations, 8192},
		{"log.level", c.Log.Level, "debug"},
		{"log.format", c.Log.Format, "json"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
	if c.EmbeddedEtcd() {
		t.Errorf("EmbeddedEtcd() with endpoints from env")
	}

	// An empty list variable clears the list.
	if err := c.ApplyEnv([]string{"SWITCHBOARD_ETCD_ENDPOINTS="}); err != nil || !c.EmbeddedEtcd() {
		t.Errorf("clearing endpoints: %v, %v", err, c.Etcd.Endpoints)
	}
}

func TestApplyEnvBadValues(t *testing.T) {
	c := Default()
	err := c.ApplyEnv([]string{
		"SWITCHBOARD_LIMITS_MAX_STANZA_BYTES=big",
		"SWITCHBOARD_TLS_REQUIRED=perhaps",
		"SWITCHBOARD_DELEGATION_TIMEOUT=30",
		"SWITCHBOARD_HOSTS=example.com",
	})
	if err == nil {
		t.Fatal("ApplyEnv accepted bad values")
	}
	for _, want := range []string{
		`SWITCHBOARD_LIMITS_MAX_STANZA_BYTES: invalid integer "big"`,
		`SWITCHBOARD_TLS_REQUIRED: invalid boolean "perhaps"`,
		`SWITCHBOARD_DELEGATION_TIMEOUT: invalid duration "30"`,
		"SWITCHBOARD_HOSTS: cannot be set from the environment",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if c.Limits.MaxStanzaBytes != 262144 || !c.TLS.Required || len(c.Hosts) != 1 {
		t.Errorf("bad values changed the config: %+v", c)
	}

	// Through Load the error also names the file.
	_, err = loadErr(t, "log: {level: warn}\n", "SWITCHBOARD_LIMITS_WRITE_TIMEOUT=fast")
	if !strings.Contains(err.Error(), "SWITCHBOARD_LIMITS_WRITE_TIMEOUT") {
		t.Errorf("error = %q", err)
	}
}

// TestEnvReachesEveryScalar checks that every scalar or string-list key of
// Config has a working variable, so new keys get one without extra code.
func TestEnvReachesEveryScalar(t *testing.T) {
	var walk func(t reflect.Type, yamlPath, envName string)
	n := 0
	walk = func(typ reflect.Type, yamlPath, envName string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			p, e := strings.TrimPrefix(yamlPath+"."+tag, "."), envName+"_"+strings.ToUpper(tag)
			switch {
			case f.Type == reflect.TypeFor[Duration]():
				checkEnv(t, p, e, "7s", func(c *Config) any { return lookup(c, p).Interface() }, Duration(7*time.Second))
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, p, e)
				continue
			case f.Type.Kind() == reflect.String:
				checkEnv(t, p, e, "zz", func(c *Config) any { return lookup(c, p).Interface() }, "zz")
			case f.Type.Kind() == reflect.Int:
				checkEnv(t, p, e, "77", func(c *Config) any { return lookup(c, p).Interface() }, 77)
			case f.Type.Kind() == reflect.Bool:
				checkEnv(t, p, e, "false", func(c *Config) any { return lookup(c, p).Interface() }, false)
			case f.Type == reflect.TypeFor[[]string]():
				checkEnv(t, p, e, "x,y", func(c *Config) any { return lookup(c, p).Interface() }, []string{"x", "y"})
			default:
				continue // hosts, components
			}
			n++
		}
	}
	walk(reflect.TypeFor[Config](), "", "SWITCHBOARD")
	if n != 72 {
		t.Errorf("checked %d keys, want 72 (update this test when adding keys)", n)
	}
}

func checkEnv(t *testing.T, path, name, value string, get func(*Config) any, want any) {
	t.Helper()
	c := Default()
	if err := c.ApplyEnv([]string{name + "=" + value}); err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if got := get(c); !reflect.DeepEqual(got, want) {
		t.Errorf("%s=%s: %s = %#v, want %#v", name, value, path, got, want)
	}
}

// lookup finds a field by its dotted yaml path.
func lookup(c *Config, path string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for part := range strings.SplitSeq(path, ".") {
		for i := range v.NumField() {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if tag == part {
				v = v.Field(i)
				break
			}
		}
	}
	return v
}

func TestDurationYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1h30m\n"), &v); err != nil || v.D.D() != 90*time.Minute {
		t.Fatalf("unmarshal: %v, %v", err, v.D)
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "d: 1h30m0s\n" {
		t.Errorf("marshal = %q, %v", out, err)
	}
	if err := yaml.Unmarshal([]byte("d: 0\n"), &v); err != nil || v.D != 0 {
		t.Errorf("d: 0 = %v, %v", v.D, err)
	}
}

// A marshalled config loads back to the same value.
func TestMarshalRoundTrip(t *testing.T) {
	c := mustLoad(t, fullYAML)
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back := mustLoad(t, string(out))
	if !reflect.DeepEqual(c, back) {
		t.Errorf("round trip differs:\n%s\n%+v\n%+v", out, c, back)
	}
	d := Default()
	out, err = yaml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	back = mustLoad(t, string(out))
	if !reflect.DeepEqual(d, back) {
		t.Errorf("defaults round trip differs:\n%s", out)
	}
}

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "secret")
	if err := os.WriteFile(f, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, "components: [{jid: a.localhost, secret_file: "+f+"}]\n")
	if c.Components[0].Secret != "s3cret" {
		t.Fatalf("secret %q", c.Components[0].Secret)
	}
	for yaml, want := range map[string]string{
		"components: [{jid: a.localhost, secret: x, secret_file: " + f + "}]\n":             "components[0].secret_file: set either secret or secret_file",
		"components: [{jid: a.localhost, secret_file: " + filepath.Join(dir, "no") + "}]\n": "components[0].secret_file: open",
	} {
		if _, err := loadErr(t, yaml); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v does not say %q", yaml, err, want)
		}
	}
}

// cluster.insecure: true is the explicit way to bind the cluster ports off loopback
// without secrets; with both secrets configured no flag is needed.
func TestValidateClusterSecuredOrInsecure(t *testing.T) {
	c := Default()
	c.Cluster.Bind, c.Cluster.Remote = "0.0.0.0:7946", "0.0.0.0:8946"
	c.Cluster.Insecure = true
	if err := c.Validate(); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	c.Cluster.Insecure = false
	c.Cluster.SecretKeyFile = "/etc/sb/gossip.key"
	c.Cluster.TLS = ClusterTLS{Cert: "/etc/sb/n.pem", Key: "/etc/sb/n.key", CA: "/etc/sb/ca.pem"}
	if err := c.Validate(); err != nil {
		t.Fatalf("secured: %v", err)
	}
}
