// Package archtest checks the import rules of ARCHITECTURE.md: which of this module's
// packages each package may import.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/switchboard-im/switchboard/"

// allowed lists, per package, the module packages it may import. Packages not listed
// (cmd/switchboard, internal/*) may import anything; nothing may import cmd/.
var allowed = map[string][]string{
	"xmpp":           {},
	"config":         {},
	"roster":         {},
	"offline":        {},
	"blocking":       {"internal/etcdx"},
	"s2s":            {},
	"cluster":        {},
	"accounts":       {"internal/etcdx"},
	"delegation":     {"xmpp", "internal/etcdx"},
	"privileges":     {"config", "xmpp", "internal/etcdx"},
	"nodelink/pb":    {},
	"nodelink":       {"cluster", "delegation", "nodelink/pb"},
	"directory":      {"config"},
	"actors":         {"blocking", "cluster", "config", "delegation", "directory", "nodelink", "nodelink/pb", "offline", "privileges", "roster", "xmpp"},
	"node":           {"accounts", "actors", "blocking", "cluster", "config", "delegation", "nodelink", "offline", "privileges", "roster", "s2s", "xmpp", "internal/etcdx"},
	"internal/etcdx": {},
}

func TestImports(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok {
			continue
		}
		seen[pkg] = true
		rules, listed := allowed[pkg]
		for _, imp := range f[1:] {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			if strings.HasPrefix(dep, "cmd/") {
				t.Errorf("%s imports %s: nothing imports cmd/", pkg, dep)
			}
			if listed && !contains(rules, dep) {
				t.Errorf("%s imports %s, which ARCHITECTURE.md does not allow", pkg, dep)
			}
		}
	}
	for pkg := range allowed {
		if !seen[pkg] {
			t.Errorf("rule for %s, which go list did not show", pkg)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
