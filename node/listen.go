package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/switchboard-im/switchboard/xmpp"
)

// startListeners opens the client and component ports; stopping them closes the ports
// (connections already accepted go on until the router ends them).
func (n *Node) startListeners() error {
	n.started("listeners", func(context.Context) error { n.closeListeners(); return nil })
	cfg := n.cfg
	if err := n.listen(cfg.Listen.C2S, &n.Addrs.C2S, func(c net.Conn, ip string, done func()) { n.serveC2S(c, false, ip, done) }); err != nil {
		return err
	}
	if err := n.listen(cfg.Listen.C2STLS, &n.Addrs.C2STLS, func(c net.Conn, ip string, done func()) { n.serveC2S(c, true, ip, done) }); err != nil {
		return err
	}
	if err := n.listen(cfg.Listen.S2S, &n.Addrs.S2S, n.serveS2S); err != nil {
		return err
	}
	return n.listen(cfg.Listen.Component, &n.Addrs.Component, n.serveComponent)
}

// closeListeners stops accepting connections (those being served go on).
func (n *Node) closeListeners() {
	for _, l := range n.listeners {
		_ = l.Close()
	}
	n.listeners = nil
}

// listen accepts connections on addr and serves each on a goroutine of its own, with the
// peer's address (ip). serve calls negotiated once the peer has authenticated or failed
// to (it is called again, harmlessly, when serve returns): until then the connection
// counts against the caps on unauthenticated connections (preauth.go). Accept errors (out of file descriptors)
// back off from 5 ms to 1 s instead of spinning.
func (n *Node) listen(addr string, bound *string, serve func(c net.Conn, ip string, negotiated func())) error {
	if addr == "" {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	n.listeners = append(n.listeners, l)
	*bound = l.Addr().String()
	go func() {
		var backoff time.Duration
		for {
			c, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				n.log.Warn("accept failed", "addr", addr, "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			backoff = 0
			lim := n.live.Load().Limits
			ip, ok := n.preauth.admit(c, lim.MaxUnauthenticated, lim.MaxUnauthenticatedPerIP)
			if !ok {
				n.metrics.refused.Inc()
				_ = c.Close()
				continue
			}
			n.conns.Add(1)
			go func() {
				var once sync.Once
				negotiated := func() { once.Do(func() { n.preauth.release(ip) }) }
				defer n.conns.Done()
				defer negotiated()
				defer func() {
					if r := recover(); r != nil {
						n.log.Error("connection handler panicked", "panic", r, "remote", c.RemoteAddr().String())
						_ = c.Close()
					}
				}()
				serve(c, ip, negotiated)
			}()
		}
	}()
	return nil
}

func (n *Node) serveC2S(raw net.Conn, direct bool, ip string, negotiated func()) {
	live := n.live.Load()
	lim := live.Limits
	var nc net.Conn = raw
	if direct {
		nc = tls.Server(raw, n.tls)
	}
	c := xmpp.NewConn(nc, lim.MaxStanzaBytes, direct)
	c.Deadline(lim.NegotiationTimeout.D())
	ctx, cancel := context.WithTimeout(context.Background(), lim.NegotiationTimeout.D())
	defer cancel()
	if direct {
		if err := nc.(*tls.Conn).HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return
		}
	}
	window := lim.AuthFailureWindow.D()
	err := xmpp.NegotiateC2S(ctx, c, &xmpp.C2SOptions{
		TLS:             n.tls,
		RequireTLS:      live.TLS.Required,
		IsHost:          n.router.IsHost,
		DefaultHost:     n.cfg.Hosts[0].Domain,
		Auth:            limitedAuth{c: n.accounts, limit: &n.authLimit, ip: ip, max: lim.AuthFailuresPerIP, window: window},
		MaxAuthAttempts: lim.MaxAuthAttempts,
		Log:             n.log,
		AuthFailed:      func() { n.authLimit.failed(ip, window) },
	})
	negotiated()
	if err != nil {
		n.log.Debug("c2s negotiation failed", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	n.metrics.conns.WithLabelValues("c2s").Inc()
	// The session's long life goes on in a fresh goroutine: this one's stack grew for
	// the TLS handshake and SASL and would stay that size for as long as the session
	// idles (most sessions mostly idle).
	n.conns.Add(1)
	go n.router.ServeC2S(c, func() {
		n.metrics.conns.WithLabelValues("c2s").Dec()
		n.conns.Done()
	})
}

func (n *Node) serveComponent(raw net.Conn, ip string, negotiated func()) {
	live := n.live.Load()
	lim := live.Limits
	c := xmpp.NewConn(raw, lim.MaxStanzaBytes, false)
	c.Deadline(lim.NegotiationTimeout.D())
	window := lim.AuthFailureWindow.D()
	if n.authLimit.blocked(ip, lim.AuthFailuresPerIP, window) {
		// Throttled: no handshake is checked from this address for now.
		n.log.Debug("component connection refused: too many failed handshakes from its address", "remote", raw.RemoteAddr().String())
		c.Fail(&xmpp.StreamError{Condition: "policy-violation", Text: "too many failed attempts"}, "")
		return
	}
	err := xmpp.NegotiateComponent(c, &xmpp.ComponentOptions{Secret: func(domain string) (string, bool) {
		if cc := live.Component(domain); cc != nil {
			return cc.Secret, true
		}
		return "", false
	}})
	negotiated()
	if err != nil {
		n.authLimit.failed(ip, window)
		// Debug, as for clients: a peer guessing secrets must not fill the log.
		n.log.Debug("component handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	c.Deadline(0)
	n.metrics.conns.WithLabelValues("component").Inc()
	defer n.metrics.conns.WithLabelValues("component").Dec()
	n.router.ServeComponent(c)
}

func remoteIP(c net.Conn) string {
	ip := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		return host
	}
	return ip
}
