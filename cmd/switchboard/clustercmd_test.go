package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-im/switchboard/cluster"
)

// `switchboard cluster secrets` writes a usable set (the key parses, every node's pair
// loads against the CA), private keys unreadable by others; it never overwrites; `cluster
// key` prints a key the key file accepts.
func TestClusterSecretsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	out := run(t, nil, "", "cluster", "secrets", "--out", dir, "--nodes", "n1,n2")
	if !strings.Contains(out, "2 node certificates") {
		t.Fatalf("output: %s", out)
	}
	if _, err := cluster.ReadKeys(filepath.Join(dir, "gossip.key")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2"} {
		if _, _, err := cluster.TLSConfigs(filepath.Join(dir, n+".pem"), filepath.Join(dir, n+".key"), filepath.Join(dir, "ca.pem")); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	for _, f := range []string{"gossip.key", "ca.key", "n1.key", "n2.key"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v %v", f, fi.Mode(), err)
		}
	}
	if out, err := command(nil, "", "cluster", "secrets", "--out", dir, "--nodes", "n3").CombinedOutput(); err == nil {
		t.Fatalf("secrets over existing ones: %s", out)
	}
	key := strings.TrimSpace(run(t, nil, "", "cluster", "key"))
	if _, err := cluster.ParseKeys([]byte(key)); err != nil {
		t.Fatalf("cluster key printed %q: %v", key, err)
	}
}
