package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeys(t *testing.T) {
	a, b := NewKey(), NewKey()
	keys, err := ParseKeys([]byte("# primary first\n" + a + "\n\n  " + b + "  \n"))
	if err != nil || len(keys) != 2 || len(keys[0]) != KeySize {
		t.Fatalf("ParseKeys = %d keys, %v", len(keys), err)
	}
	for _, bad := range []string{"", "# only a comment\n", "not base64!", "c2hvcnQ=", a + "\nAAAA"} {
		if _, err := ParseKeys([]byte(bad)); err == nil {
			t.Errorf("ParseKeys(%q): no error", bad)
		}
	}
}

// Rotation: the keyring follows the file, the first key used to encrypt, keys no longer
// listed gone.
func TestSetKeys(t *testing.T) {
	k1, _ := ParseKeys([]byte(NewKey()))
	k2, _ := ParseKeys([]byte(NewKey()))
	c := New(Config{NodeID: "n1", Bind: "127.0.0.1:0", Keys: k1}, slog.New(slog.DiscardHandler))
	if err := c.Start(context.Background(), nopListener{}); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(context.Background())
	if err := c.SetKeys([][]byte{k1[0], k2[0]}); err != nil || !bytes.Equal(c.keyring.GetPrimaryKey(), k1[0]) ||
		len(c.keyring.GetKeys()) != 2 {
		t.Fatalf("add: %v, %d keys", err, len(c.keyring.GetKeys()))
	}
	if err := c.SetKeys([][]byte{k2[0], k1[0]}); err != nil || !bytes.Equal(c.keyring.GetPrimaryKey(), k2[0]) {
		t.Fatalf("use: %v", err)
	}
	if err := c.SetKeys(k2); err != nil || len(c.keyring.GetKeys()) != 1 {
		t.Fatalf("drop: %v, %d keys", err, len(c.keyring.GetKeys()))
	}
	plain := New(Config{NodeID: "n2", Bind: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err := plain.SetKeys(k1); err == nil {
		t.Fatal("keys set on a node started without encryption")
	}
}

type nopListener struct{}

func (nopListener) ComponentsChanged(added, removed []ComponentEntry) {}
func (nopListener) MembersChanged(members []Member, left []string)    {}
func (nopListener) NodeDraining(string, []ComponentEntry)             {}
func (nopListener) NodeRestarted(string, int64)                       {}

// Mutual TLS between nodes: both sides need a certificate the same CA signed.
func TestTLSConfigs(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	if err := WriteSecrets(dir, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecrets(other, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecrets(dir, []string{"a"}); err == nil {
		t.Fatal("WriteSecrets overwrote existing secrets")
	}
	load := func(d, name string) (*tls.Config, *tls.Config) {
		s, c, err := TLSConfigs(filepath.Join(d, name+".pem"), filepath.Join(d, name+".key"), filepath.Join(d, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return s, c
	}
	serverA, _ := load(dir, "a")
	_, clientB := load(dir, "b")
	_, clientX := load(other, "x")
	handshake := func(client *tls.Config) error {
		l, err := tls.Listen("tcp", "127.0.0.1:0", serverA)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		done := make(chan error, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			_, err = c.Write([]byte("ok"))
			if err == nil {
				err = c.(*tls.Conn).Handshake()
			}
			done <- err
		}()
		c, err := tls.Dial("tcp", l.Addr().String(), client)
		if err == nil {
			_, err = io.ReadFull(c, make([]byte, 2))
			c.Close()
		}
		if serr := <-done; err == nil {
			err = serr
		}
		return err
	}
	if err := handshake(clientB); err != nil {
		t.Fatalf("two nodes of one cluster: %v", err)
	}
	if err := handshake(clientX); err == nil {
		t.Fatal("a node of another cluster was accepted")
	}
	noCert := clientB.Clone()
	noCert.Certificates = nil
	if err := handshake(noCert); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	if _, _, err := TLSConfigs(filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key"), filepath.Join(dir, "a.key")); err == nil ||
		!strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a CA file without a certificate: %v", err)
	}
}
