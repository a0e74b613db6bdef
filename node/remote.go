package node

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"

	"github.com/asynkron/protoactor-go/remote"

	"github.com/switchboard-im/switchboard/cluster"
)

// startRemote starts protoactor remoting on cluster.remote (announcing
// cluster.remote_advertise if set).
func (n *Node) startRemote() (err error) {
	host, portS, err := net.SplitHostPort(n.cfg.Cluster.Remote)
	if err != nil {
		return fmt.Errorf("cluster.remote: %w", err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return fmt.Errorf("cluster.remote: %w", err)
	}
	if port == 0 {
		// remote announces the address it listens on; pick the port now so that the
		// announced one is real.
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return fmt.Errorf("cluster.remote: %w", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	// Mutual TLS between nodes when cluster.tls is set (config validation demands it,
	// with the gossip key, for addresses reachable off this machine).
	var serverTLS, clientTLS *tls.Config
	if ct := n.cfg.Cluster.TLS; ct.Set() {
		if serverTLS, clientTLS, err = cluster.TLSConfigs(ct.Cert, ct.Key, ct.CA); err != nil {
			return err
		}
	}
	opts := []remote.ConfigOption{
		remote.WithDialOptions(cluster.RemoteDialOptions(clientTLS)...),
		remote.WithCallOptions(cluster.RemoteCallOptions()...),
		remote.WithServerOptions(cluster.RemoteServerOptions(serverTLS)...),
	}
	if a := n.cfg.Cluster.RemoteAdvertise; a != "" {
		opts = append(opts, remote.WithAdvertisedHost(a))
	}
	r := remote.NewRemote(n.sys, remote.Configure(host, port, opts...))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cluster.remote %s: %v", n.cfg.Cluster.Remote, p)
		}
	}()
	r.Start()
	n.remote = r
	n.Addrs.Remote = n.sys.Address()
	return nil
}
