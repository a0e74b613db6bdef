package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

// TestReloadAndGracefulStop: SIGHUP applies a changed config file (components and their
// secrets, delegations) without dropping client connections; SIGTERM answers pending
// delegated IQs, then ends streams with system-shutdown.
func TestReloadAndGracefulStop(t *testing.T) {
	dir := t.TempDir()
	c2s, comp, admin := freeAddr(t), freeAddr(t), freeAddr(t)
	cfgFile := filepath.Join(dir, "switchboard.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := `node: {id: reload, data_dir: ` + dir + `}
listen: {c2s: ` + c2s + `, c2s_tls: "", component: ` + comp + `, admin: ` + admin + `}
etcd: {embedded: {client: ` + freeAddr(t) + `, peer: ` + freeAddr(t) + `}}
cluster: {bind: ""}
`
	write(base + `components:
  - {jid: old.localhost, secret: one}
`)
	e := env{}
	run(t, e, "pw\n", "user", "add", "alice@localhost", "--password-stdin", "--config", cfgFile)
	cmd := command(e, "", "serve", "--config", cfgFile)
	var logs xmpptest.LockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	xmpptest.WaitFor(t, 60*time.Second, "ready", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	alice, err := xmpptest.DialClient(t, c2s, "alice", "pw", "", sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	old, err := xmpptest.DialComponent(t, comp, "old.localhost", "one")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xmpptest.DialComponent(t, comp, "new.localhost", "two"); err == nil {
		t.Fatal("unconfigured component accepted")
	}

	// Reload: old.localhost removed, new.localhost added with a delegation.
	write(base + `hosts:
  - domain: localhost
    delegations:
      "urn:example:reload": {jid: new.localhost}
components:
  - {jid: new.localhost, secret: two}
`)
	_ = cmd.Process.Signal(syscall.SIGHUP)
	select {
	case _, ok := <-old.In:
		if ok {
			t.Fatal("removed component still receives")
		}
		if err := <-old.Errc; err == nil || !strings.Contains(err.Error(), "policy-violation") {
			t.Fatalf("removed component ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("removed component not disconnected; logs:\n%s", logs.String())
	}
	m := xmpptest.NewManaging(t, comp, "new.localhost", "two", nil)
	if ad := m.NextAd(xmpptest.Wait); len(ad) != 1 {
		t.Fatalf("advertisement %v", ad)
	}
	// The client connection survived the reload and its IQs are delegated now.
	alice.Send(`<iq type='get' id='r1' to='localhost'><query xmlns='urn:example:reload'/></iq>`)
	f := m.NextForward(xmpptest.Wait)
	m.Answer(f, "")
	if r := alice.Next(xmpptest.Wait); r.Attr("type") != "result" || r.Attr("id") != "r1" {
		t.Fatalf("after reload: %s", r)
	}
	// A broken file is refused and the running config kept.
	write("limits: {max_stanza_bytes: -5}\n")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	xmpptest.WaitFor(t, 10*time.Second, "the refusal logged", func() bool {
		return strings.Contains(logs.String(), "configuration refused")
	})

	// SIGTERM with an IQ pending at the component: the node drains (node.drain_timeout),
	// so the component's answer, given after the signal, still reaches alice; then
	// system-shutdown.
	alice.Send(`<iq type='get' id='r2' to='localhost'><query xmlns='urn:example:reload'/></iq>`)
	f = m.NextForward(xmpptest.Wait)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	xmpptest.WaitFor(t, 10*time.Second, "the drain begun", func() bool {
		return strings.Contains(logs.String(), "component connections withdrawn")
	})
	m.Answer(f, "")
	if r := alice.Next(xmpptest.Wait); r.Attr("id") != "r2" || r.Attr("type") != "result" {
		t.Fatalf("pending IQ at shutdown: %s", r)
	}
	select {
	case _, ok := <-alice.In:
		if ok {
			t.Fatal("expected the stream to end")
		}
		if err := <-alice.Errc; err == nil || !strings.Contains(err.Error(), "system-shutdown") {
			t.Fatalf("ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no system-shutdown")
	}
}
