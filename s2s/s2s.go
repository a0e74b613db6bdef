// Package s2s is what federation needs below the XMPP stream: finding the server of a
// remote domain (static routes, DNS SRV, then the domain itself on 5269) and checking a
// peer's certificate for a domain (XEP-0178). Stream negotiation is in xmpp/, the
// streams themselves in actors/.
package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
)

// DefaultPort is the server-to-server port (RFC 6120 §14.7).
const DefaultPort = 5269

// ErrNotFound: no server of the domain could be found or reached.
var ErrNotFound = errors.New("remote server not found")

// Dial connects to the XMPP server of domain: its static route if it has one, else the
// targets of DNS SRV _xmpp-server._tcp in order, else the domain's own A/AAAA addresses
// on 5269. A context deadline surfaces as context.DeadlineExceeded; anything else that
// leaves no connection wraps ErrNotFound.
func Dial(ctx context.Context, domain string, static map[string]string) (net.Conn, error) {
	var d net.Dialer
	if addr, ok := static[domain]; ok {
		c, err := d.DialContext(ctx, "tcp", addr)
		return c, classify(ctx, err)
	}
	var targets []string
	if _, srvs, err := net.DefaultResolver.LookupSRV(ctx, "xmpp-server", "tcp", domain); err == nil {
		for _, s := range srvs {
			if s.Target == "." { // RFC 2782: the service is decidedly not available
				return nil, fmt.Errorf("%w: %s has no XMPP service (SRV '.')", ErrNotFound, domain)
			}
			targets = append(targets, net.JoinHostPort(s.Target, strconv.Itoa(int(s.Port))))
		}
	}
	if len(targets) == 0 {
		targets = []string{net.JoinHostPort(domain, strconv.Itoa(DefaultPort))}
	}
	var last error
	for _, t := range targets {
		c, err := d.DialContext(ctx, "tcp", t)
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, classify(ctx, last)
}

func classify(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return context.DeadlineExceeded
	default:
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
}

// Roots are the system's roots plus the certificates of caFile ("" : none).
func Roots(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("s2s.ca_file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("s2s.ca_file: no certificate in %s", caFile)
	}
	return pool, nil
}

// Verify reports whether the certificate chain a TLS peer presented is valid for domain
// under roots (XEP-0178: the domain as a DNS name of the certificate; any key usage, as
// a server's certificate also authenticates it as a client).
func Verify(domain string, cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: domain, Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}
