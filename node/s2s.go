package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/actors"
	"github.com/switchboard-im/switchboard/s2s"
	"github.com/switchboard-im/switchboard/xmpp"
)

// s2sState is the node's federation: the TLS material both ways and the incoming
// streams per remote domain (s2s.max_streams_per_domain).
type s2sState struct {
	roots    *x509.CertPool
	server   *tls.Config    // incoming: asks for the remote server's certificate
	client   *tls.Config    // outgoing: presents ours, checks theirs
	dialback *xmpp.Dialback // nil: s2s.dialback off

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
	if cfg.S2S.Dialback {
		secret, err := dialbackSecret(n.etcd, cfg.Etcd.Prefix)
		if err != nil {
			return actors.S2S{}, err
		}
		st.dialback = &xmpp.Dialback{Key: dialbackKey(secret), Verify: n.verifyDialback}
	}
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
	err = xmpp.NegotiateS2SOut(ctx, c, local, remote, n.s2sOutOptions())
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
		Verify:   func(domain string, cs tls.ConnectionState) error { return s2s.Verify(domain, cs, st.roots) },
		Dialback: st.dialback,
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

// dialbackSecret is the cluster's XEP-0185 secret, in etcd (<prefix>/s2s/dialback_secret):
// every node gives and checks the same keys, whichever node a stream or a db:verify
// reaches. The first node to need it makes it.
func dialbackSecret(cli *clientv3.Client, prefix string) ([]byte, error) {
	key := prefix + "/s2s/dialback_secret"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b [32]byte
	_, _ = rand.Read(b[:])
	fresh := hex.EncodeToString(b[:])
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, fresh)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, fmt.Errorf("s2s dialback secret: %w", err)
	}
	if resp.Succeeded {
		return []byte(fresh), nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, errors.New("s2s dialback secret: vanished")
	}
	return kvs[0].Value, nil
}

// dialbackKey is XEP-0185's key: HMAC-SHA256 over "receiving originating id" keyed with
// SHA-256 of the secret, in hex.
func dialbackKey(secret []byte) func(receiving, originating, id string) string {
	k := sha256.Sum256(secret)
	return func(receiving, originating, id string) string {
		m := hmac.New(sha256.New, k[:])
		m.Write([]byte(receiving + " " + originating + " " + id))
		return hex.EncodeToString(m.Sum(nil))
	}
}

// verifyDialback asks the server of originating, on a connection of its own, whether key
// is its key for the stream id it opened to receiving (XEP-0220 §2.1.3).
func (n *Node) verifyDialback(ctx context.Context, receiving, originating, id, key string) bool {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.S2S.ConnectTimeout.D())
	defer cancel()
	raw, err := s2s.Dial(ctx, originating, n.cfg.S2S.StaticRoutes)
	if err != nil {
		n.log.Debug("dialback: no connection to verify", "domain", originating, "err", err)
		return false
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	ok, err := xmpp.DialbackVerify(ctx, xmpp.NewConn(raw, 1<<16, false), receiving, originating, id, key, n.s2sOutOptions())
	if err != nil {
		n.log.Debug("dialback: verification failed", "domain", originating, "err", err)
	}
	return ok && err == nil
}

// s2sOutOptions are an outgoing stream's: the remote server's certificate is checked for
// its domain (with dialback on, one that does not verify leaves dialback to authenticate).
func (n *Node) s2sOutOptions() *xmpp.S2SOutOptions {
	st := &n.s2s
	return &xmpp.S2SOutOptions{TLS: st.client, RequireTLS: n.cfg.S2S.RequireEncryption, Dialback: st.dialback,
		VerifyServer: func(domain string, cs tls.ConnectionState) error { return s2s.Verify(domain, cs, st.roots) }}
}
