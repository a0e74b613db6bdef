package node

import (
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
	opts := []remote.ConfigOption{
		remote.WithDialOptions(cluster.RemoteDialOptions()...),
		remote.WithCallOptions(cluster.RemoteCallOptions()...),
		remote.WithServerOptions(cluster.RemoteServerOptions()...),
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
