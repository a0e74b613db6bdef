package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// The cluster plane's secrets: a gossip keyring (memberlist encrypts and authenticates
// every gossip packet with it: a node without a key in it can neither join nor read
// what members say) and mutual TLS on the actor remote (a node must present a
// certificate signed by the cluster's CA to send or receive stanzas).

// KeySize is the size of a gossip key: AES-256.
const KeySize = 32

// NewKey returns a fresh gossip key, base64 as the key file holds it.
func NewKey() string {
	k := make([]byte, KeySize)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// ParseKeys reads a gossip key file: one base64 key of KeySize bytes per line, the
// first the one this node encrypts with, the others also accepted (rotation: add the
// new key on every node, then make it first, then drop the old one). Blank lines and
// lines starting with # are ignored.
func ParseKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64: %w", i+1, err)
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("line %d: a key is %d bytes, not %d", i+1, KeySize, len(k))
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key")
	}
	return keys, nil
}

// ReadKeys reads and parses a gossip key file.
func ReadKeys(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	return memberlist.NewKeyring(keys[1:], keys[0])
}

// SetKeys installs a new set of gossip keys (a SIGHUP after the key file changed): keys
// new to the ring are added, the first becomes the one used to encrypt, and keys no
// longer listed are removed. Without a keyring (started without keys) it is an error:
// encryption cannot be switched on in a running cluster.
func (c *Cluster) SetKeys(keys [][]byte) error {
	if c.keyring == nil {
		return errors.New("gossip encryption is off: it needs a restart to switch on")
	}
	if len(keys) == 0 {
		return errors.New("no key")
	}
	for _, k := range keys {
		if err := c.keyring.AddKey(k); err != nil {
			return err
		}
	}
	if err := c.keyring.UseKey(keys[0]); err != nil {
		return err
	}
	for _, old := range c.keyring.GetKeys() {
		keep := false
		for _, k := range keys {
			keep = keep || bytes.Equal(k, old)
		}
		if !keep {
			if err := c.keyring.RemoveKey(old); err != nil {
				return err
			}
		}
	}
	return nil
}

// TLSConfigs loads a node's certificate and the cluster CA for mutual TLS on the actor
// remote: the server config demands a client certificate signed by the CA, the client
// config presents the node's certificate and accepts only a server whose certificate the
// CA signed. Names are not checked: nodes dial each other by address, and membership is
// what the CA's signature says.
func TLSConfigs(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster.tls: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster.tls.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("cluster.tls.ca: %s: no PEM certificate", caFile)
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		NextProtos:   []string{"h2"},
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// The chain is verified below, against the cluster CA only, without a name.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs, pool)
		},
		NextProtos: []string{"h2"},
	}
	return server, client, nil
}

func verifyPeer(cs tls.ConnectionState, pool *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("cluster tls: the peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return fmt.Errorf("cluster tls: %w", err)
	}
	return nil
}

// WriteSecrets writes a new cluster's secrets to dir: gossip.key, the CA (ca.pem,
// ca.key) and, for each node name, NAME.pem and NAME.key, a certificate the CA signed
// (valid for 10 years; for client and server use). Private keys are written 0600. It
// refuses to overwrite.
func WriteSecrets(dir string, nodes []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	write := func(name string, data []byte, mode os.FileMode) error {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}
	if err := write("gossip.key", []byte(NewKey()+"\n"), 0o600); err != nil {
		return err
	}
	// issue makes a key and a certificate of tmpl signed by parent (itself if nil) and
	// writes them as NAME.pem and NAME.key.
	issue := func(name string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			return nil, nil, err
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		if err := write(name+".pem", pemOf("CERTIFICATE", der), 0o644); err != nil {
			return nil, nil, err
		}
		return cert, key, write(name+".key", pemOf("EC PRIVATE KEY", keyDER), 0o600)
	}
	now := time.Now()
	ca, caKey, err := issue("ca", &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Switchboard cluster CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil, nil)
	if err != nil {
		return err
	}
	for _, name := range nodes {
		if _, _, err := issue(name, &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: name},
			DNSNames:     []string{name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.AddDate(10, 0, 0),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}, ca, caKey); err != nil {
			return err
		}
	}
	return nil
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}
