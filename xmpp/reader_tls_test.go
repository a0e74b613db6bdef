package xmpp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// Over TLS the reader holds no buffer once an element leaves nothing unparsed, and reads
// what follows correctly however the records cut it: several stanzas in one record, one
// stanza over several records, a stanza bigger than the buffer.
func TestReaderLeanOverTLS(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	server := tls.Server(a, testTLSConfig(t))
	client := tls.Client(b, &tls.Config{InsecureSkipVerify: true})
	big := `<message><body>` + strings.Repeat("x", 3*readBufSize) + `</body></message>`
	st := append(append([]string{}, typicalStanzas...), `<presence type='unavailable'/>`, `<iq type='result' id='z'/>`)
	// Each string is one Write, so one TLS record (the big one too: records hold 16 KiB).
	writes := [][]string{
		{hdr},
		{st[0]},
		{st[1] + st[2]},
		{st[3][:7], st[3][7:20], st[3][20:]},
		{big},
		{st[4] + st[5][:10], st[5][10:]},
	}
	want := []string{st[0], st[1], st[2], st[3], big, st[4], st[5]}
	step := make(chan struct{})
	go func() {
		defer b.Close()
		for _, w := range writes {
			for _, part := range w {
				if _, err := client.Write([]byte(part)); err != nil {
					return
				}
			}
			if _, ok := <-step; !ok {
				return
			}
		}
	}()
	defer close(step)
	r := NewReader(server, 1<<16)
	if !r.lean {
		t.Fatal("a reader of a TLS connection is not lean")
	}
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	step <- struct{}{}
	got := 0
	for i := range writes[1:] {
		for got < len(want) {
			env, err := r.Next()
			if err != nil {
				t.Fatalf("stanza %d: %v", got, err)
			}
			if string(env.Raw) != want[got] {
				t.Fatalf("stanza %d: got %q, want %q", got, env.Raw, want[got])
			}
			got++
			if r.pos == r.w {
				break // this write is read
			}
		}
		if r.buf != nil {
			t.Fatalf("after write %d everything is parsed, but the reader keeps a %d-byte buffer", i+1, len(r.buf))
		}
		step <- struct{}{}
	}
	if got != len(want) {
		t.Fatalf("read %d stanzas, want %d", got, len(want))
	}
}
