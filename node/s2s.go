package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"time"

	"github.com/switchboard-im/switchboard/actors"
	"github.com/switchboard-im/switchboard/s2s"
	"github.com/switchboard-im/switchboard/xmpp"
)

// s2sState is the node's federation: the TLS material both ways and the incoming
// streams per remote domain (s2s.max_streams_per_domain).
type s2sState struct {
	roots  *x509.CertPool
	server *tls.Config // incoming: asks for the remote server's certificate
	client *tls.Config // outgoing: presents ours, checks theirs

	mu       sync.Mutex
	incoming map[string]int
}

// setupS2S prepares federation when listen.s2s is set: the router's S2S (nil Dial: none).
func (n *Node) setupS2S() (actors.S2S, error) {
	cfg := n.cfg
	if cfg.Listen.S2S == "" {
		return actors.S2S{}, nil
	}
	roots, err := s2s.Roots(cfg.S2S.CAFile)
	if err != nil {
		return actors.S2S{}, err
	}
	st := &n.s2s
	st.roots = roots
	st.server = n.tls.Clone()
	st.server.ClientAuth = tls.RequestClientCert
	st.client = &tls.Config{Certificates: n.tls.Certificates, RootCAs: roots, MinVersion: tls.VersionTLS12}
	return actors.S2S{Dial: n.dialS2S, ConnectTimeout: cfg.S2S.ConnectTimeout.D(), MaxQueuedBytes: cfg.S2S.MaxQueuedBytes,
		IdleTimeout: cfg.S2S.IdleTimeout.D()}, nil
}

// dialS2S opens an authenticated stream from local to the server of remote.
func (n *Node) dialS2S(ctx context.Context, local, remote string) (*xmpp.Conn, error) {
	raw, err := s2s.Dial(ctx, remote, n.cfg.S2S.StaticRoutes)
	if err != nil {
		return nil, err
	}
	c := xmpp.NewConn(raw, n.live.Load().Limits.MaxStanzaBytes, false)
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	err = xmpp.NegotiateS2SOut(ctx, c, local, remote, &xmpp.S2SOutOptions{TLS: n.s2s.client, RequireTLS: n.cfg.S2S.RequireEncryption})
	if err != nil {
		_ = c.Close()
		// The connection's deadline is the context's: it may fire first.
		if dl, ok := ctx.Deadline(); ctx.Err() != nil || (ok && !time.Now().Before(dl)) {
			return nil, context.DeadlineExceeded
		}
		return nil, err
	}
	_ = c.Conn.SetDeadline(time.Time{})
	return c, nil
}

// serveS2S negotiates an incoming server stream and hands it to the router.
func (n *Node) serveS2S(raw net.Conn, ip string, negotiated func()) {
	live := n.live.Load()
	lim := live.Limits
	c := xmpp.NewConn(raw, lim.MaxStanzaBytes, false)
	c.Deadline(lim.NegotiationTimeout.D())
	ctx, cancel := context.WithTimeout(context.Background(), lim.NegotiationTimeout.D())
	defer cancel()
	st := &n.s2s
	remote, err := xmpp.NegotiateS2SIn(ctx, c, &xmpp.S2SInOptions{
		TLS: st.server, RequireTLS: n.cfg.S2S.RequireEncryption, IsHost: n.router.IsHost,
		Verify: func(domain string, cs tls.ConnectionState) error { return s2s.Verify(domain, cs, st.roots) },
	})
	negotiated()
	if err != nil {
		n.log.Debug("s2s negotiation failed", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	st.mu.Lock()
	if st.incoming == nil {
		st.incoming = make(map[string]int)
	}
	if st.incoming[remote] >= live.S2S.MaxStreamsPerDomain {
		st.mu.Unlock()
		c.Fail(&xmpp.StreamError{Condition: "policy-violation", Text: "too many streams from " + remote}, c.Host)
		return
	}
	st.incoming[remote]++
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		if st.incoming[remote]--; st.incoming[remote] <= 0 {
			delete(st.incoming, remote)
		}
		st.mu.Unlock()
	}()
	n.log.Info("s2s: incoming stream", "from", remote, "to", c.Host)
	c.Deadline(0)
	n.metrics.conns.WithLabelValues("s2s").Inc()
	defer n.metrics.conns.WithLabelValues("s2s").Dec()
	n.router.ServeS2S(c, remote)
}
