package chaos

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A short chaos run against the real binary: no IQ is lost or answered twice whatever
// happens; only a node killed, or a component connection dropped, fails IQs (those that
// were waiting there) and only right after the event; a graceful stop, a restart, a
// hung node, etcd away and a rolling restart of every node fail none.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of node processes")
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	build := exec.Command("go", "build", "-o", bin, "./cmd/switchboard")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{
		Bin: bin, Dir: dir, Rate: 200, Clients: 4, Settle: 1500 * time.Millisecond,
		Events:   []string{"kill:3", "start:3", "stop:2", "start:2", "drop-component:3", "pause:3", "etcd-down", "rolling"},
		EtcdDown: 5 * time.Second, PauseFor: 2 * time.Second, ComponentDelay: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out testWriter
	res.WriteText(&out)
	t.Logf("\n%s", out)
	failing := map[string]bool{"kill:3": true, "drop-component:3": true}
	for _, e := range res.Events {
		if e.Lost+e.Duplicated > 0 {
			t.Errorf("%s: %d lost, %d answered twice", e.Event, e.Lost, e.Duplicated)
		}
		if e.Note != "" {
			t.Errorf("%s: %s", e.Event, e.Note)
		}
		switch {
		case failing[e.Event] && e.ErrorWindowMS > 1000:
			t.Errorf("%s: errors for %.0f ms", e.Event, e.ErrorWindowMS)
		case !failing[e.Event] && e.Failed > 0:
			t.Errorf("%s: %d IQs failed %v", e.Event, e.Failed, e.Conditions)
		}
		if e.Event == "rolling" && e.Resent == 0 {
			t.Errorf("rolling: no client was moved by a system-shutdown")
		}
	}
	if t.Failed() {
		for _, n := range []string{"node1", "node2", "node3"} {
			b, _ := os.ReadFile(filepath.Join(dir, n+".log"))
			t.Logf("---- %s ----\n%s", n, b)
		}
	}
}

type testWriter []byte

func (w *testWriter) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }
func (w testWriter) String() string               { return string(w) }
