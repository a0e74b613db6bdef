package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// failing runs the CLI and expects it to fail; it returns the combined output.
func failing(t *testing.T, e env, args ...string) string {
	t.Helper()
	out, err := command(e, "", args...).CombinedOutput()
	if err == nil {
		t.Fatalf("switchboard %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

// tableRows returns the lines of a tabwriter table with each run of blanks collapsed.
func tableRows(out string) []string {
	var rows []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	return rows
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDelegationCLI runs set / ls / rm on the embedded default (no node running: each
// command starts the embedded etcd itself) with a config file holding static rules.
func TestDelegationCLI(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "switchboard.yaml")
	err := os.WriteFile(cfgFile, []byte(`hosts:
  - domain: localhost
    delegations:
      "urn:xmpp:mam:2": {jid: archive.localhost}
      "http://jabber.org/protocol/pubsub#owner": {jid: pubsub.localhost, filtering: [node]}
  - domain: example.org
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	e := storeEnv(t, dir)
	cfg := []string{"--config", cfgFile}
	dl := func(args ...string) []string { return append(append([]string{"delegation"}, args...), cfg...) }

	const owner = "http://jabber.org/protocol/pubsub#owner"
	if out := run(t, e, "", dl("ls")...); !slices.Equal(tableRows(out), []string{
		"HOST NAMESPACE JID FILTERING SOURCE",
		"localhost " + owner + " pubsub.localhost node config",
		"localhost urn:xmpp:mam:2 archive.localhost - config",
	}) {
		t.Fatalf("ls of the config only:\n%s", out)
	}

	out := run(t, e, "", dl("set", "LocalHost", owner, "PubSub2.localhost", "--filter", "node", "--filter", "type")...)
	if !strings.Contains(out, "delegated "+owner+" of localhost to pubsub2.localhost (filtering: node, type)") ||
		!strings.Contains(out, "overrides the config file's rule (to pubsub.localhost)") {
		t.Fatalf("set: %s", out)
	}
	if out := run(t, e, "", dl("set", "example.org", "urn:example:x", "comp.example.org")...); strings.TrimSpace(out) != "delegated urn:example:x of example.org to comp.example.org" {
		t.Fatalf("set: %q", out)
	}

	sameLines(t, "ls", tableRows(run(t, e, "", dl("ls")...)), []string{
		"HOST NAMESPACE JID FILTERING SOURCE",
		"example.org urn:example:x comp.example.org - etcd",
		"localhost " + owner + " pubsub2.localhost node,type etcd",
		"localhost " + owner + " pubsub.localhost node config (overridden)",
		"localhost urn:xmpp:mam:2 archive.localhost - config",
	})
	sameLines(t, "ls example.org", tableRows(run(t, e, "", dl("ls", "example.org")...)), []string{
		"HOST NAMESPACE JID FILTERING SOURCE",
		"example.org urn:example:x comp.example.org - etcd",
	})

	// Refusals: the delegation namespace itself, a host not in the config.
	if out := failing(t, e, dl("set", "localhost", "urn:xmpp:delegation:2", "comp.localhost")...); !strings.Contains(out, "cannot be delegated") {
		t.Fatalf("forbidden namespace: %s", out)
	}
	if out := failing(t, e, dl("set", "nowhere.example", "urn:example:x", "comp.localhost")...); !strings.Contains(out, "nowhere.example is not a host in the configuration") {
		t.Fatalf("unknown host: %s", out)
	}
	if out := failing(t, e, dl("set", "localhost", "urn:example:x", "comp.localhost/res")...); !strings.Contains(out, "bare JID") {
		t.Fatalf("full JID: %s", out)
	}

	// rm: the etcd rule goes, the config one applies again; a config-only rule can't go.
	out = run(t, e, "", dl("rm", "localhost", owner)...)
	if !strings.Contains(out, "removed the delegation of "+owner+" of localhost") || !strings.Contains(out, "config file's rule applies again (to pubsub.localhost)") {
		t.Fatalf("rm: %s", out)
	}
	if out := failing(t, e, dl("rm", "localhost", "urn:xmpp:mam:2")...); !strings.Contains(out, "config file "+cfgFile) || !strings.Contains(out, "not in etcd") {
		t.Fatalf("rm of a config rule: %s", out)
	}
	if out := failing(t, e, dl("rm", "localhost", "urn:example:none")...); !strings.Contains(out, "no delegation of urn:example:none of localhost in etcd") {
		t.Fatalf("rm of a missing rule: %s", out)
	}
	run(t, e, "", dl("rm", "example.org", "urn:example:x")...)
	sameLines(t, "ls after rm", tableRows(run(t, e, "", dl("ls")...)), []string{
		"HOST NAMESPACE JID FILTERING SOURCE",
		"localhost " + owner + " pubsub.localhost node config",
		"localhost urn:xmpp:mam:2 archive.localhost - config",
	})
}
