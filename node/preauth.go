package node

import (
	"net"
	"sync"
)

// preauth counts the connections that have not finished negotiating (TLS, SASL and bind,
// or the component handshake): at most limits.max_unauthenticated in all and
// limits.max_unauthenticated_per_ip from one address. One that would pass either is
// closed at once, before a byte is read, so a peer that opens connections and never
// authenticates cannot take the node's file descriptors, memory or negotiation time from
// the users who do.
type preauth struct {
	mu    sync.Mutex
	total int
	perIP map[string]int
}

// admit counts c in if the caps allow it and returns its key for release ("" and false
// if refused).
func (p *preauth) admit(c net.Conn, max, perIP int) (string, bool) {
	ip := remoteIP(c)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.perIP == nil {
		p.perIP = make(map[string]int)
	}
	if (max > 0 && p.total >= max) || (perIP > 0 && p.perIP[ip] >= perIP) {
		return "", false
	}
	p.total++
	p.perIP[ip]++
	return ip, true
}

// release counts a connection out once its negotiation has ended, either way.
func (p *preauth) release(ip string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if p.perIP[ip]--; p.perIP[ip] <= 0 {
		delete(p.perIP, ip)
	}
}

// count is how many connections are negotiating.
func (p *preauth) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}
