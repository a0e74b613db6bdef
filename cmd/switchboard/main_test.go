package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/internal/xmpptest"
)

// The test binary doubles as the switchboard binary, so these tests run the real
// command line (flags, config loading, embedded etcd, signals) as a subprocess.
func TestMain(m *testing.M) {
	if os.Getenv("SB_RUN_MAIN") == "1" {
		os.Args = append([]string{"switchboard"}, strings.Fields(os.Getenv("SB_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type env []string

// freeAddr returns a free loopback address that no earlier call in this test binary
// returned: the OS can hand a just-closed port out again, and two listeners of one node
// on one port fail its start (seen in CI).
func freeAddr(t *testing.T) string {
	givenMu.Lock()
	defer givenMu.Unlock()
	for range 100 {
		a := freeAddrs(t, 1)[0]
		if !given[a] {
			given[a] = true
			return a
		}
	}
	t.Fatal("no fresh free port")
	return ""
}

var (
	givenMu sync.Mutex
	given   = map[string]bool{}
)

// storeEnv is the environment of store commands run on the embedded default: its data
// (the embedded etcd) under dir, on ports of its own.
func storeEnv(t *testing.T, dir string) env {
	return env{
		"SWITCHBOARD_NODE_DATA_DIR=" + filepath.Join(dir, "data"),
		"SWITCHBOARD_ETCD_EMBEDDED_CLIENT=" + freeAddr(t),
		"SWITCHBOARD_ETCD_EMBEDDED_PEER=" + freeAddr(t),
	}
}

// freeAddrs returns n distinct free loopback addresses (see etcdx.FreeAddrs).
func freeAddrs(t *testing.T, n int) []string {
	a, err := etcdx.FreeAddrs("127.0.0.1", n)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func command(e env, stdin string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SB_RUN_MAIN=1", "SB_ARGS="+strings.Join(args, " "))
	cmd.Env = append(cmd.Env, e...)
	cmd.Stdin = strings.NewReader(stdin)
	return cmd
}

func run(t *testing.T, e env, stdin string, args ...string) string {
	t.Helper()
	out, err := command(e, stdin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("switchboard %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestNewcomerPath does what the README's quick start says, on the embedded defaults
// (only ports and the data directory moved so the test can run anywhere): add two users
// with the CLI before the node runs, start `serve` with no config, log in with two real
// clients that exchange a message, then list and remove users while the node runs.
func TestNewcomerPath(t *testing.T) {
	dir := t.TempDir()
	a := freeAddrs(t, 8)
	c2s, admin := a[0], a[1]
	e := env{
		"SWITCHBOARD_NODE_DATA_DIR=" + dir,
		"SWITCHBOARD_LISTEN_C2S=" + c2s,
		"SWITCHBOARD_LISTEN_C2S_TLS=" + a[2],
		"SWITCHBOARD_LISTEN_COMPONENT=" + a[3],
		"SWITCHBOARD_LISTEN_ADMIN=" + admin,
		"SWITCHBOARD_ETCD_EMBEDDED_CLIENT=" + a[4],
		"SWITCHBOARD_ETCD_EMBEDDED_PEER=" + a[5],
		"SWITCHBOARD_CLUSTER_BIND=" + a[6],
		"SWITCHBOARD_CLUSTER_REMOTE=" + a[7],
		"SWITCHBOARD_NODE_ID=solo",
		"SWITCHBOARD_NODE_GC_HEADROOM_BYTES=67108864",
	}
	if out := run(t, e, "alice-pw\n", "user", "add", "alice@localhost", "--password-stdin"); !strings.Contains(out, "added alice@localhost") {
		t.Fatalf("user add: %s", out)
	}
	cmd := command(e, "", "serve")
	var logs xmpptest.LockedBuffer
	cmd.Stderr, cmd.Stdout = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready; logs:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "self-signed") {
		t.Errorf("the log does not say where the self-signed certificate went:\n%s", logs.String())
	}
	// serve runs with the smallest initial goroutine stacks (smallStacks), same process.
	if environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid)); err == nil &&
		!strings.Contains(string(environ), "adaptivestackstart=0") {
		t.Errorf("the node runs without GODEBUG=adaptivestackstart=0")
	}
	// The collector keeps node.gc_headroom_bytes (64 MiB here) of headroom: the node's
	// next GC is that far off, not at twice its few MiB of live heap.
	if next := gcGoal(t, admin); next < 64<<20 {
		t.Errorf("next GC at %.0f bytes, want at least 64 MiB", next)
	}
	// A second user added while the node runs (the CLI talks to the node's embedded etcd).
	run(t, e, "bob-pw\n", "user", "add", "bob@localhost", "--password-stdin")
	if out := run(t, e, "", "user", "ls", "localhost"); out != "alice@localhost\nbob@localhost\n" {
		t.Fatalf("user ls: %q", out)
	}

	if out := run(t, e, "", "health", "--ready", "--admin", admin); out != "ok\n" {
		t.Fatalf("health: %q", out)
	}
	if out, err := command(e, "", "health", "--admin", freeAddr(t)).CombinedOutput(); err == nil {
		t.Fatalf("health of nothing succeeded: %s", out)
	}
	// A one-node cluster: members lists it with its sessions.
	if out := run(t, e, "", "members", "--admin", admin); !strings.Contains(out, "solo") || !strings.Contains(out, "alive") {
		t.Fatalf("members: %s", out)
	}

	alice := login(t, c2s, "alice", "alice-pw")
	var bob *xmpp.Session
	deadline = time.Now().Add(10 * time.Second)
	for {
		var err error
		if bob, err = tryLogin(c2s, "bob", "bob-pw"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob cannot log in: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer bob.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bob.Send(ctx, tokens(`<presence/>`)); err != nil {
		t.Fatal(err)
	}
	// trace follows bob's stanzas on every node (one here) while alice writes to him.
	tracer := command(e, "", "trace", "bob@localhost", "--admin", admin, "--for", "3s")
	var traced xmpptest.LockedBuffer
	tracer.Stdout, tracer.Stderr = &traced, &traced
	if err := tracer.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the trace is on
	msg := `<message to='` + bob.LocalAddr().String() + `' type='chat' id='hello'><body>hi bob</body></message>`
	if err := alice.Send(ctx, tokens(msg)); err != nil {
		t.Fatal(err)
	}
	got := readUntil(t, bob, "hi bob")
	if err := tracer.Wait(); err != nil || !strings.Contains(traced.String(), "solo message alice@localhost/") ||
		!strings.Contains(traced.String(), "-> "+bob.LocalAddr().String()+" routed") || !strings.Contains(traced.String(), "hi bob") {
		t.Fatalf("trace (%v):\n%s", err, traced.String())
	}
	if !strings.Contains(got, "from=\""+alice.LocalAddr().String()+"\"") && !strings.Contains(got, "from='"+alice.LocalAddr().String()+"'") {
		t.Fatalf("bob got %s", got)
	}

	// What bob leaves behind goes with his account: his blocklist, his offline messages.
	if err := bob.Send(ctx, tokens(`<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='carol@localhost'/></block></iq>`)); err != nil {
		t.Fatal(err)
	}
	readUntil(t, bob, "blk")
	_ = bob.Close()
	time.Sleep(200 * time.Millisecond)
	if err := alice.Send(ctx, tokens(`<message to='bob@localhost' type='chat' id='kept'><body>for-bob</body></message>`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // stored
	run(t, e, "", "user", "rm", "bob@localhost")
	if out := run(t, e, "", "user", "ls", "localhost"); out != "alice@localhost\n" {
		t.Fatalf("user ls after rm: %q", out)
	}
	run(t, e, "bob-pw\n", "user", "add", "bob@localhost", "--password-stdin")
	var bob2 *xmpp.Session
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if bob2, err = tryLogin(c2s, "bob", "bob-pw"); err == nil || time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("the new bob cannot log in: %v", err)
			}
			break
		}
	}
	for _, st := range []string{`<presence/>`, `<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>`} {
		if err := bob2.Send(ctx, tokens(st)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // offline messages, if any, are given after the presence
	if err := bob2.Send(ctx, tokens(`<iq type='get' id='last' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)); err != nil {
		t.Fatal(err)
	}
	if got := readUntil(t, bob2, "last"); strings.Contains(got, "carol") || strings.Contains(got, "for-bob") || !strings.Contains(got, "blocklist") {
		t.Fatalf("the new bob got the old one's blocklist or offline message: %s", got)
	}
	_ = bob2.Close()
	run(t, e, "", "user", "rm", "bob@localhost")
	if out, err := command(e, "", "user", "rm", "bob@localhost").CombinedOutput(); err == nil {
		t.Fatalf("removing a missing user succeeded: %s", out)
	}

	// SIGTERM: clients see system-shutdown, the process exits cleanly.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if got := readUntil(t, alice, "system-shutdown"); got == "" {
		t.Fatal("no system-shutdown")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}

func TestVersionAndBadConfig(t *testing.T) {
	if out := run(t, nil, "", "version"); !strings.HasPrefix(out, "switchboard ") {
		t.Fatalf("version: %q", out)
	}
	f := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(f, []byte("limits:\n  max_stanza_bytez: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := command(nil, "", "serve", "--config", f).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "max_stanza_bytez") {
		t.Fatalf("mistyped key: err=%v out=%s", err, out)
	}
	if err := os.WriteFile(f, []byte("limits:\n  max_stanza_bytes: -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = command(nil, "", "serve", "--config", f).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "limits.max_stanza_bytes") {
		t.Fatalf("bad value: err=%v out=%s", err, out)
	}
}

func tryLogin(addr, user, pw string) (*xmpp.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	s, err := xmpp.NewClientSession(ctx, jid.MustParse(user+"@localhost"), conn,
		xmpp.StartTLS(&tls.Config{ServerName: "localhost", InsecureSkipVerify: true}),
		xmpp.SASL("", pw, sasl.ScramSha256), xmpp.BindResource())
	if err != nil {
		_ = conn.Close()
	}
	return s, err
}

func login(t *testing.T, addr, user, pw string) *xmpp.Session {
	t.Helper()
	s, err := tryLogin(addr, user, pw)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// readUntil reads raw tokens from the session until the text appears (in any element).
func readUntil(t *testing.T, s *xmpp.Session, want string) string {
	t.Helper()
	var b bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := s.TokenReader()
		defer r.Close()
		enc := newEncoder(&b)
		for {
			tok, err := r.Token()
			if err != nil {
				b.WriteString(err.Error())
				return
			}
			enc(tok)
			if strings.Contains(b.String(), want) {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.Conn().Close()
		<-done
	}
	if !strings.Contains(b.String(), want) {
		t.Fatalf("never saw %q; got %s", want, b.String())
	}
	return b.String()
}

func tokens(s string) xml.TokenReader { return xml.NewDecoder(strings.NewReader(s)) }

// newEncoder renders tokens as text with single-quoted attributes (enough to search in).
func newEncoder(b *bytes.Buffer) func(xml.Token) {
	return func(tok xml.Token) {
		switch t := tok.(type) {
		case xml.StartElement:
			fmt.Fprintf(b, "<%s", t.Name.Local)
			for _, a := range t.Attr {
				fmt.Fprintf(b, " %s='%s'", a.Name.Local, a.Value)
			}
			b.WriteString(">")
		case xml.EndElement:
			fmt.Fprintf(b, "</%s>", t.Name.Local)
		case xml.CharData:
			b.Write(t)
		}
	}
}

// gcGoal reads go_memstats_next_gc_bytes from a node's /metrics.
func gcGoal(t *testing.T, admin string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_next_gc_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no go_memstats_next_gc_bytes in /metrics")
	return 0
}
