// Package etcdx starts an in-process etcd (the single-node default of `switchboard serve`)
// and dials etcd clusters with the settings Switchboard needs: quiet logs, a reachability
// check at dial time, and keepalives so that watches notice a dead server.
package etcdx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// DefaultStartTimeout bounds StartEmbedded when ctx has no deadline: a single member
// that is not ready by then will not become ready (bad data dir, port clash, ...).
const DefaultStartTimeout = 60 * time.Second

// DefaultDialTimeout is used by Connect when dialTimeout is zero.
const DefaultDialTimeout = 5 * time.Second

// EmbeddedConfig describes a single-member embedded etcd.
type EmbeddedConfig struct {
	// Dir holds the etcd data (created if missing). Reusing it keeps the data.
	Dir string
	// ClientAddr and PeerAddr are host:port pairs served over plain http and advertised
	// as they are. A port of 0 is replaced by a free port chosen with FreeAddr, because
	// etcd would otherwise advertise port 0 to itself and to clients.
	ClientAddr string
	PeerAddr   string
	// Name is the member name (default "default").
	Name string
}

// Embedded is a running embedded etcd.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string
	log       *slog.Logger
	stopping  *atomic.Bool
	stopOnce  sync.Once
}

// StartEmbedded starts etcd and waits until it serves clients, ctx is done, or
// DefaultStartTimeout passes (when ctx has no deadline). etcd's own logs (error level
// only) and our progress (debug) go to log; nothing is written to stdout.
func StartEmbedded(ctx context.Context, c EmbeddedConfig, log *slog.Logger) (*Embedded, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if c.Dir == "" {
		return nil, errors.New("etcdx: embedded etcd needs a data dir")
	}
	clientAddr, err := resolvePort(c.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("etcdx: client address %q: %w", c.ClientAddr, err)
	}
	peerAddr, err := resolvePort(c.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("etcdx: peer address %q: %w", c.PeerAddr, err)
	}
	clientURL := url.URL{Scheme: "http", Host: clientAddr}
	peerURL := url.URL{Scheme: "http", Host: peerAddr}

	cfg := embed.NewConfig()
	if c.Name != "" {
		cfg.Name = c.Name
	}
	cfg.Dir = c.Dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// etcd logs through zap; keep it at error level and send it to our slog logger
	// rather than etcd's default JSON on stderr (see slogCore).
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	stopping := new(atomic.Bool)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(log, stopping))
	// No metrics listener or other extras: the node exposes its own /metrics.
	// Switchboard and its CLI speak gRPC only. The HTTP/JSON gateway is off, no CORS
	// headers are sent and HTTP requests must name this address or loopback in Host: a
	// web page in an operator's browser must not be able to read or write the store
	// (etcd's defaults allow any origin and any Host).
	cfg.EnableGRPCGateway = false
	cfg.CORS = map[string]struct{}{clientURL.String(): {}} // etcd reads an empty set as "any origin"
	host, _, _ := net.SplitHostPort(clientAddr)
	cfg.HostWhitelist = map[string]struct{}{host: {}, clientAddr: {}, "localhost": {}, "127.0.0.1": {}, "::1": {}}

	log.Debug("starting embedded etcd", "dir", c.Dir, "client", clientURL.String(), "peer", peerURL.String())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdx: start embedded etcd in %s: %w", c.Dir, err)
	}

	wait := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stopping.Store(true)
		e.Close()
		if err == nil {
			err = errors.New("stopped before it was ready")
		}
		return nil, fmt.Errorf("etcdx: embedded etcd in %s: %w", c.Dir, err)
	case <-wait.Done():
		stopping.Store(true)
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcdx: embedded etcd in %s not ready: %w", c.Dir, wait.Err())
	}

	em := &Embedded{etcd: e, log: log, stopping: stopping}
	for _, l := range e.Clients {
		em.endpoints = append(em.endpoints, "http://"+l.Addr().String())
	}
	log.Debug("embedded etcd ready", "endpoints", em.endpoints)
	return em, nil
}

// Endpoints are the client URLs the embedded etcd actually listens on.
func (e *Embedded) Endpoints() []string {
	return append([]string(nil), e.endpoints...)
}

// Stop shuts etcd down and returns once it has stopped (or ctx is done). Safe to call
// more than once.
func (e *Embedded) Stop(ctx context.Context) error {
	e.stopOnce.Do(func() {
		e.stopping.Store(true)
		e.etcd.Close()
	})
	select {
	case <-e.etcd.Server.StopNotify():
		e.log.Debug("embedded etcd stopped")
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// FreeAddr returns host:port with a port that was free a moment ago (it listens on port 0
// and closes again). Tests use it to give an embedded etcd random ports; StartEmbedded uses
// it for addresses with port 0. Another process may take the port in between; that race
// is accepted.
func FreeAddr(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("etcdx: free port on %s: %w", host, err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("etcdx: free port on %s: %w", host, err)
	}
	return addr, nil
}

// FreeAddrs is FreeAddr for n distinct addresses: every listener is held until all n
// are picked, since a port closed before the next is asked for can be handed out again.
func FreeAddrs(host string, n int) ([]string, error) {
	var out []string
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("etcdx: free port on %s: %w", host, err)
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out, nil
}

func resolvePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", errors.New("empty host (etcd advertises this address, give an IP or name)")
	}
	if port == "0" {
		return FreeAddr(host)
	}
	return addr, nil
}

// DefaultMaxResponse bounds one response from etcd unless MaxResponse says otherwise
// (etcd's client would take up to 2 GiB).
const DefaultMaxResponse = 32 << 20

// Option changes how Connect connects.
type Option func(*clientv3.Config)

// MaxResponse bounds one response from etcd to n bytes (etcd.max_response_bytes).
func MaxResponse(n int) Option {
	return func(c *clientv3.Config) {
		if n > 0 {
			c.MaxCallRecvMsgSize = n
		}
	}
}

// Connect dials endpoints and checks that the cluster answers a read within
// dialTimeout (DefaultDialTimeout if zero), so a wrong address fails now with a clear
// error rather than at the first read. Endpoints may be URLs or host:port.
func Connect(ctx context.Context, endpoints []string, dialTimeout time.Duration, opts ...Option) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcdx: no etcd endpoints")
	}
	if dialTimeout <= 0 {
		dialTimeout = DefaultDialTimeout
	}
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: dialTimeout,
		// Keepalives let long-lived watches notice a server that vanished without a FIN.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		MaxCallRecvMsgSize:   DefaultMaxResponse,
		Logger:               zap.NewNop(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdx: connect to etcd at %s: %w", strings.Join(endpoints, ","), err)
	}
	// Like `etcdctl endpoint health`: a linearizable read needs a reachable member and a
	// leader, which is what every caller needs next. The balancer tries all endpoints.
	pctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, "health", clientv3.WithCountOnly()); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("etcdx: etcd unreachable at %s (timeout %s): %w",
			strings.Join(endpoints, ","), dialTimeout, err)
	}
	return cli, nil
}
