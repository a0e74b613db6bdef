package bench_test

import (
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/bench"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/internal/testca"
	"github.com/switchboard-im/switchboard/node"
)

// The s2s scenario between two federated nodes (a private CA, static routes): every
// message arrives, in order, both ways at once, and unpaced; a run within one domain is
// refused.
//
// (Its nodes take 5 s to stop: a node's Stop waits its 5 s at most for the incoming s2s
// stream, which the router does not end; hence t.Parallel.)
func TestS2SScenario(t *testing.T) {
	t.Parallel()
	ca := testca.New(t)
	domains := []string{"a.bench.test", "b.bench.test"}
	routes := map[string]string{}
	for i, d := range domains {
		addrs, err := etcdx.FreeAddrs("127.0.0."+string(rune('7'+i)), 1)
		if err != nil {
			t.Fatal(err)
		}
		routes[d] = addrs[0]
	}
	var nodes []*node.Node
	for _, d := range domains {
		cert, key := ca.Issue(d, false)
		nodes = append(nodes, startNodeFor(t, d, func(c *config.Config) {
			c.Listen.S2S = routes[d]
			c.TLS.Cert, c.TLS.Key = cert, key
			c.S2S.CAFile = ca.File
			c.S2S.StaticRoutes = routes
			c.S2S.ConnectTimeout = config.Duration(2 * time.Second)
		}))
	}
	opts := func() bench.Options {
		return bench.Options{
			Client:       bench.ClientConfig{Addr: nodes[0].Addrs.C2S, Domain: domains[0], Insecure: true},
			Target:       nodes[1].Addrs.C2S,
			TargetDomain: domains[1],
			Users:        users, Password: password,
			Conns: 2, Window: 20, Count: 200, Rate: 2000,
			Timeout: 5 * time.Second, MaxTime: 30 * time.Second,
		}
	}

	t.Run("both-ways", func(t *testing.T) {
		o := opts()
		o.Reverse = true
		res := run(t, bench.S2S, o)
		clean(t, res, 400)
		if len(res.Directions) != 2 || res.Directions[0].Ops != 200 || res.Directions[1].Ops != 200 ||
			res.Directions[0].From != domains[0] || res.Directions[1].From != domains[1] {
			t.Fatalf("directions: %+v", res.Directions)
		}
		if res.OutOfOrder != 0 {
			t.Fatalf("%d out of order", res.OutOfOrder)
		}
	})
	t.Run("unpaced-duration", func(t *testing.T) {
		o := opts()
		o.Rate, o.Count, o.Dur = 0, 0, 300*time.Millisecond
		res := run(t, bench.S2S, o)
		clean(t, res, res.Ops)
		if res.Ops == 0 || len(res.Directions) != 1 {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("same-domain-refused", func(t *testing.T) {
		o := opts()
		o.TargetDomain = domains[0]
		if _, err := bench.Run(t.Context(), bench.S2S, o); err == nil {
			t.Fatal("an s2s run within one domain must be refused")
		}
	})
}
