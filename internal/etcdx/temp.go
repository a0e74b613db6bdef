package etcdx

import (
	"context"
	"log/slog"
	"os"
	"time"
)

// StartTemp starts a throw-away single-member etcd on free loopback ports in a fresh
// temporary directory (for tests: one per test binary, each test on its own key prefix).
// stop shuts it down and removes the directory.
func StartTemp(name string, log *slog.Logger) (endpoints []string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "sb-"+name+"-etcd-*")
	if err != nil {
		return nil, nil, err
	}
	addrs, err := FreeAddrs("127.0.0.1", 2)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var emb *Embedded
		emb, err = StartEmbedded(ctx, EmbeddedConfig{Dir: dir, ClientAddr: addrs[0], PeerAddr: addrs[1], Name: name}, log)
		cancel()
		if err == nil {
			return emb.Endpoints(), func() { _ = emb.Stop(context.Background()); _ = os.RemoveAll(dir) }, nil
		}
	}
	_ = os.RemoveAll(dir)
	return nil, nil, err
}
