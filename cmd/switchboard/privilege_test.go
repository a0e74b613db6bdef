package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrivilegeCLI runs set / ls / rm on the embedded default (no node running: each
// command starts the embedded etcd itself) with a config file granting privileges.
func TestPrivilegeCLI(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "switchboard.yaml")
	err := os.WriteFile(cfgFile, []byte(`hosts:
  - domain: localhost
  - domain: example.org
components:
  - jid: pubsub.localhost
    secret: s
    privileges: {roster: both, message: outgoing, iq: {"urn:example:b": set, "urn:example:a": get}}
  - {jid: plain.localhost, secret: s}
  - jid: archive.localhost
    secret: s
    privileges: {presence: managed_entity}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	e := storeEnv(t, dir)
	cfg := []string{"--config", cfgFile}
	pl := func(args ...string) []string { return append(append([]string{"privilege"}, args...), cfg...) }

	const header = "HOST COMPONENT ROSTER MESSAGE PRESENCE IQ SOURCE"
	sameLines(t, "ls of the config only", tableRows(run(t, e, "", pl("ls")...)), []string{
		header,
		"example.org archive.localhost none none managed_entity - config",
		"example.org pubsub.localhost both outgoing none urn:example:a=get,urn:example:b=set config",
		"localhost archive.localhost none none managed_entity - config",
		"localhost pubsub.localhost both outgoing none urn:example:a=get,urn:example:b=set config",
	})

	// Refusals, all before etcd is touched.
	for _, tc := range []struct {
		args []string
		want string
	}{
		// (The wording after the key is config.ValidatePrivileges'.)
		{[]string{"set", "localhost", "pubsub.localhost", "--roster", "all"}, `roster: "all"`},
		{[]string{"set", "localhost", "pubsub.localhost", "--message", "incoming"}, `message: "incoming"`},
		{[]string{"set", "localhost", "pubsub.localhost", "--presence", "all"}, `presence: "all"`},
		{[]string{"set", "localhost", "pubsub.localhost", "--iq", "urn:x=write"}, `iq.urn:x: "write"`},
		{[]string{"set", "localhost", "pubsub.localhost", "--iq", "urn:x"}, `--iq "urn:x": want NAMESPACE=TYPE`},
		{[]string{"set", "localhost", "pubsub.localhost", "--iq", "urn:x=get", "--iq", "urn:x=set"}, "namespace urn:x given twice"},
		{[]string{"set", "localhost", "pubsub.localhost/res"}, `component "pubsub.localhost/res" must be a domain`},
		{[]string{"set", "alice@localhost", "pubsub.localhost"}, `host "alice@localhost" must be a domain`},
		{[]string{"set", "nowhere.example", "pubsub.localhost", "--roster", "get"}, "nowhere.example is not a host in the configuration"},
	} {
		if out := failing(t, e, pl(tc.args...)...); !strings.Contains(out, tc.want) {
			t.Fatalf("%v: %s\nwant %q", tc.args, out, tc.want)
		}
	}

	// set: overrides the config's privileges on one host; the whole set is replaced.
	out := run(t, e, "", pl("set", "LocalHost", "PubSub.LocalHost", "--roster", "get", "--iq", "urn:example:c=both")...)
	if !strings.Contains(out, "set the privileges of pubsub.localhost on localhost: roster=get message=none presence=none iq=urn:example:c=both") ||
		!strings.Contains(out, "this overrides the config file's privileges of pubsub.localhost on localhost (roster=both message=outgoing presence=none iq=urn:example:a=get,urn:example:b=set)") {
		t.Fatalf("set: %s", out)
	}
	// A component with nothing in the config: nothing to override.
	if out := run(t, e, "", pl("set", "example.org", "plain.localhost", "--message", "outgoing", "--presence", "managed_entity")...); strings.TrimSpace(out) !=
		"set the privileges of plain.localhost on example.org: roster=none message=outgoing presence=managed_entity iq=-" {
		t.Fatalf("set: %q", out)
	}
	// A component the config does not know: stored, with a warning.
	if out := run(t, e, "", pl("set", "localhost", "new.localhost", "--roster", "both")...); !strings.Contains(out, "warning: new.localhost is not a component in the configuration") {
		t.Fatalf("set of an unknown component: %s", out)
	}

	sameLines(t, "ls", tableRows(run(t, e, "", pl("ls")...)), []string{
		header,
		"example.org archive.localhost none none managed_entity - config",
		"example.org plain.localhost none outgoing managed_entity - etcd",
		"example.org pubsub.localhost both outgoing none urn:example:a=get,urn:example:b=set config",
		"localhost archive.localhost none none managed_entity - config",
		"localhost new.localhost both none none - etcd",
		"localhost pubsub.localhost get none none urn:example:c=both etcd",
		"localhost pubsub.localhost both outgoing none urn:example:a=get,urn:example:b=set config (overridden)",
	})
	sameLines(t, "ls example.org", tableRows(run(t, e, "", pl("ls", "Example.org")...)), []string{
		header,
		"example.org archive.localhost none none managed_entity - config",
		"example.org plain.localhost none outgoing managed_entity - etcd",
		"example.org pubsub.localhost both outgoing none urn:example:a=get,urn:example:b=set config",
	})

	// rm: the etcd entry goes, the config's privileges apply again.
	out = run(t, e, "", pl("rm", "localhost", "pubsub.localhost")...)
	if !strings.Contains(out, "removed the privileges of pubsub.localhost on localhost from etcd") ||
		!strings.Contains(out, "the config file's privileges apply again (roster=both message=outgoing presence=none iq=urn:example:a=get,urn:example:b=set)") {
		t.Fatalf("rm: %s", out)
	}
	if out := failing(t, e, pl("rm", "localhost", "pubsub.localhost")...); !strings.Contains(out, "no privileges of pubsub.localhost on localhost in etcd") ||
		!strings.Contains(out, "config file "+cfgFile) {
		t.Fatalf("rm of config-only privileges: %s", out)
	}
	if out := failing(t, e, pl("rm", "localhost", "none.localhost")...); !strings.Contains(out, "no privileges of none.localhost on localhost in etcd") {
		t.Fatalf("rm of missing privileges: %s", out)
	}
	run(t, e, "", pl("rm", "example.org", "plain.localhost")...)
	run(t, e, "", pl("rm", "localhost", "new.localhost")...)
	sameLines(t, "ls after rm", tableRows(run(t, e, "", pl("ls")...)), []string{
		header,
		"example.org archive.localhost none none managed_entity - config",
		"example.org pubsub.localhost both outgoing none urn:example:a=get,urn:example:b=set config",
		"localhost archive.localhost none none managed_entity - config",
		"localhost pubsub.localhost both outgoing none urn:example:a=get,urn:example:b=set config",
	})
}

// TestPrivilegeCLIUnservedHost lists an entry of a host the config does not serve
// (written by another cluster's config, or left over), and removes it.
func TestPrivilegeCLIUnservedHost(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "switchboard.yaml")
	e := storeEnv(t, dir)
	write := func(hosts string) {
		if err := os.WriteFile(cfgFile, []byte("hosts:\n"+hosts), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("  - domain: localhost\n  - domain: old.example\n")
	run(t, e, "", "privilege", "set", "old.example", "comp.old.example", "--iq", "jabber:iq:roster=get", "--config", cfgFile)
	write("  - domain: localhost\n")
	sameLines(t, "ls", tableRows(run(t, e, "", "privilege", "ls", "--config", cfgFile)), []string{
		"HOST COMPONENT ROSTER MESSAGE PRESENCE IQ SOURCE",
		"old.example comp.old.example none none none jabber:iq:roster=get etcd (host not served)",
	})
	if out := run(t, e, "", "privilege", "rm", "old.example", "comp.old.example", "--config", cfgFile); strings.TrimSpace(out) !=
		"removed the privileges of comp.old.example on old.example from etcd" {
		t.Fatalf("rm: %q", out)
	}
}
